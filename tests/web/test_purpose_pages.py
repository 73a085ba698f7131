"""The purposes page, the wizard's optional purposes and the text editor per purpose,
through the real WSGI app on SQLite and PostgreSQL (the ``host`` fixture)."""

from __future__ import annotations

import re

import pytest
from hostkit import TestHost, staff
from sqlalchemy import select
from test_practice_pages import WHEN, P, Pages, html, set_up, snapshot

from samtycke_plugin import consent, practices, purpose_catalogue
from samtycke_plugin.models import Purpose, TextVersion
from samtycke_plugin.purposes import list_purposes
from samtycke_plugin.rules import Status


def _purposes(host: TestHost, tenant: str, archived: bool = False) -> dict[str, Purpose]:
    host.session().rollback()
    query = (
        select(Purpose)
        .where(Purpose.tenant_ref == tenant)
        .execution_options(populate_existing=True)
    )
    return {p.key: p for p in host.session().scalars(query) if archived or p.archived_at is None}


def _texts(host: TestHost, tenant: str, key: str) -> list[tuple[str, int, int, str]]:
    host.session().rollback()
    query = (
        select(TextVersion)
        .where(TextVersion.tenant_ref == tenant, TextVersion.purpose_key == key)
        .order_by(TextVersion.major, TextVersion.minor, TextVersion.language)
    )
    return [(v.language, v.major, v.minor, v.body) for v in host.session().scalars(query)]


def _form(page: str) -> dict[str, str]:
    """The add form's prefilled fields as the browser would post them."""
    fields = dict(re.findall(r'<input type="text" id="[^"]+" name="([^"]+)"[^>]*value="([^"]*)"',
                             page))
    for name, body in re.findall(r'<textarea[^>]*name="(text_[a-z]+)"[^>]*>\n(.*?)</textarea>',
                                 page, re.S):
        fields[name] = body.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    fields = {k: v.replace("&amp;", "&").replace("&#39;", "'").replace("&#34;", '"')
              if not k.startswith("text_") else v for k, v in fields.items()}
    checked = re.search(r'name="required" value="(yes|no)" checked', page)
    fields["required"] = checked.group(1) if checked else ""
    fields["validity_days"] = re.search(r'name="validity_days"[^>]*value="([^"]*)"', page).group(1)
    return fields


def _add_newsletter(host: TestHost, tenant: str, pages: Pages, **changes: str) -> None:
    page = html(pages.get("/purposes/add?from=newsletter"))
    form = {**_form(page), **changes}
    saved = pages.post("/purposes/add", form)
    assert saved.status_code == 303, saved.get_data(as_text=True)[-800:]


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_the_purposes_page_lists_each_purpose(host: TestHost, lang: str) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=WHEN, note=None)
    host.session().commit()
    body = html(Pages(host, tenant).get("/purposes", lang=lang))
    assert ("Ändamål" if lang == "sv" else "Purposes") in body
    care = purpose_catalogue.CARE.name.get(lang)
    assert care in body and "<code>care</code>" in body
    row = body.split('data-purpose="care"', 1)[1].split("</tr>", 1)[0]
    assert "1.0" in row and "<td>1</td>" in row  # current version, one client with consent
    assert "Stop asking" not in row and "Sluta fråga" not in row  # the default stays
    for entry in purpose_catalogue.OPTIONAL:
        assert f"from={entry.key}" in body  # offered, not yet added


def test_adding_from_the_catalogue_creates_the_purpose_with_its_texts(host: TestHost) -> None:
    tenant = set_up(host)
    pages = Pages(host, tenant)
    page = html(pages.get("/purposes/add?from=newsletter"))
    form = _form(page)
    assert form["key"] == "newsletter" and form["name_sv"] == "Nyhetsbrev"
    assert form["validity_days"] == "730" and form["required"] == "no"
    assert "Kliniken Lugn & Ro" in form["text_sv"] and "$practice" not in form["text_en"]
    form["name_sv"] = "Vårt nyhetsbrev"  # edited before saving
    saved = pages.post("/purposes/add", form)
    assert saved.status_code == 303 and saved.headers["Location"].endswith(
        "/purposes?done=purpose_added"
    )
    row = _purposes(host, tenant)["newsletter"]
    assert row.names["sv"] == "Vårt nyhetsbrev" and row.names["en"] == "Newsletter"
    assert row.validity_days == 730 and not row.required and row.current_major == 1
    assert "GDPR" in row.legal_basis["sv"]
    texts = _texts(host, tenant, "newsletter")
    assert [(lang, major, minor) for lang, major, minor, _ in texts] == [
        ("en", 1, 0), ("sv", 1, 0)
    ]
    assert all("Kliniken Lugn & Ro" in body for *_, body in texts)
    listing = html(pages.get("/purposes"))
    assert "Vårt nyhetsbrev" in listing and "from=newsletter" not in listing
    again = pages.post("/purposes/add", form)  # the key is taken: shown, nothing saved
    assert again.status_code == 400 and len(_texts(host, tenant, "newsletter")) == 2


def test_a_custom_purpose_and_its_errors(host: TestHost) -> None:
    tenant = set_up(host)
    pages = Pages(host, tenant)
    bad = pages.post("/purposes/add", {"key": "Bad Key", "name_sv": "", "name_en": "",
                                       "required": "maybe", "validity_days": "0",
                                       "text_sv": "kort", "text_en": ""}, lang="en")
    body = html(bad)
    assert bad.status_code == 400
    for field in ("key", "name_sv", "required", "validity_days"):
        assert f'id="{field}-error"' in body, field
    assert set(_purposes(host, tenant)) == {"care"}
    good = pages.post("/purposes/add", {
        "key": "insurer", "name_sv": "Delning med försäkringsbolag", "name_en": "",
        "legal_sv": "Samtycke", "legal_en": "", "required": "yes", "validity_days": "",
        "text_sv": "Vi delar dina uppgifter med ditt försäkringsbolag när du ber om det.",
        "text_en": "",
    })
    assert good.status_code == 303
    row = _purposes(host, tenant)["insurer"]
    assert row.required and row.validity_days is None and row.names == {
        "sv": "Delning med försäkringsbolag"
    }
    assert [t[0] for t in _texts(host, tenant, "insurer")] == ["sv"]


def test_edit_and_archive(host: TestHost) -> None:
    tenant = set_up(host)
    pages = Pages(host, tenant)
    _add_newsletter(host, tenant, pages)
    edit = html(pages.get("/purposes/edit?key=newsletter"))
    assert 'value="Nyhetsbrev"' in edit
    saved = pages.post("/purposes/edit", {
        "key": "newsletter", "name_sv": "Nyheter", "name_en": "News", "legal_sv": "Samtycke",
        "legal_en": "Consent", "required": "yes", "validity_days": "365",
    })
    assert saved.status_code == 303
    row = _purposes(host, tenant)["newsletter"]
    assert (row.names, row.required, row.validity_days) == (
        {"sv": "Nyheter", "en": "News"}, True, 365
    )
    # The default purpose's requirement and lifetime stay the settings' own.
    care_before = _purposes(host, tenant)["care"]
    before = (care_before.required, care_before.validity_days)
    edited = pages.post("/purposes/edit", {"key": "care", "name_sv": "Vård", "name_en": "Care",
                                           "required": "yes", "validity_days": "5"})
    assert edited.status_code == 303, edited.get_data(as_text=True)[-1500:]
    care = _purposes(host, tenant)["care"]
    assert care.names == {"sv": "Vård", "en": "Care"}
    assert (care.required, care.validity_days) == before
    refused = pages.post("/purposes", {"action": "archive", "key": "care"})
    assert refused.status_code == 400 and "care" in _purposes(host, tenant)
    archived = pages.post("/purposes", {"action": "archive", "key": "newsletter"})
    assert archived.status_code == 303
    assert "newsletter" not in _purposes(host, tenant)
    assert _purposes(host, tenant, archived=True)["newsletter"].archived_at is not None
    assert pages.get("/purposes/edit?key=newsletter").status_code == 404
    assert pages.get("/text?purpose=newsletter").status_code == 404
    assert "from=newsletter" not in html(pages.get("/purposes"))  # a key is never reused


def test_another_practices_purpose_is_not_found_and_posts_need_csrf(host: TestHost) -> None:
    a, b = set_up(host), set_up(host, name="Annan klinik")
    _add_newsletter(host, b, Pages(host, b))
    pages = Pages(host, a)
    before = snapshot(host, b), _purposes(host, b)["newsletter"].names
    assert pages.get("/purposes/edit?key=newsletter").status_code == 404
    assert pages.get("/text?purpose=newsletter").status_code == 404
    assert pages.post("/purposes", {"action": "archive", "key": "newsletter"}).status_code == 404
    assert pages.post("/purposes/edit", {"key": "newsletter", "name_sv": "X", "required": "no",
                                         "validity_days": ""}).status_code == 404
    for path in ("/purposes", "/purposes/add", "/purposes/edit"):
        assert Pages(host, b).post(path, {"key": "newsletter", "action": "archive"},
                                   token=None).status_code == 403
    assert (snapshot(host, b), _purposes(host, b)["newsletter"].names) == before
    assert _purposes(host, b)["newsletter"].archived_at is None


def test_the_wizard_offers_the_optional_purposes(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant("Kliniken Lugn & Ro")
    host.activate(hooks, tenant)  # set-up not finished
    pages = Pages(host, tenant)
    step = html(pages.get("/setup?step=2", lang="en"))
    for entry in purpose_catalogue.OPTIONAL:
        assert f"from={entry.key}&amp;back=setup" in step
    page = html(pages.get("/purposes/add?from=newsletter&back=setup", lang="en"))
    assert "Skip this purpose" in page and "/setup?step=2" in page
    saved = pages.post("/purposes/add", {**_form(page), "back": "setup"})
    assert saved.status_code == 303
    assert saved.headers["Location"].endswith("/setup?step=2&done=purpose_added")
    step = html(pages.get("/setup?step=2", lang="en"))
    assert "from=newsletter" not in step and "purposes/edit?key=newsletter" in step


def test_a_change_of_content_of_one_purpose_outdates_only_that_purpose(host: TestHost) -> None:
    tenant = set_up(host)
    pages = Pages(host, tenant)
    _add_newsletter(host, tenant, pages)
    client = host.new_client(tenant)
    for purpose in ("care", "newsletter"):
        consent.record_manual(host, tenant, client, staff(), method="paper", given_at=WHEN,
                              note=None, purpose=purpose)
    host.session().commit()
    editor = html(pages.get("/text?purpose=newsletter", lang="en"))
    assert 'name="purpose" value="newsletter"' in editor and "Newsletter" in editor
    [(_, _, _, sv_body)] = [t for t in _texts(host, tenant, "newsletter") if t[0] == "sv"]
    [(_, _, _, en_body)] = [t for t in _texts(host, tenant, "newsletter") if t[0] == "en"]
    form = {"purpose": "newsletter", "expected_major": "1", "text_sv": sv_body + "\nVarje månad.\n",
            "text_en": en_body}
    preview = html(pages.post("/text", {**form, "action": "preview"}, lang="en"))
    assert "1 client who has consented now will need to consent again." in preview
    assert "Purpose: Newsletter" in preview and 'name="purpose" value="newsletter"' in preview
    saved = pages.post("/text", {**form, "action": "save", "kind": "content", "reason": "Oftare"})
    assert saved.status_code == 303
    assert "purpose=newsletter" in saved.headers["Location"]
    message = html(pages.get(saved.headers["Location"].removeprefix(P), lang="en"))
    assert "1 client who had consented must consent again" in message
    assert "This concerns only the purpose “Newsletter”" in message
    assert consent.client_status(host, tenant, client, "newsletter").status == Status.OUTDATED
    assert consent.client_status(host, tenant, client).status == Status.VALID
    assert [(t[0], t[1]) for t in _texts(host, tenant, "newsletter")] == [
        ("en", 1), ("sv", 1), ("en", 2), ("sv", 2)
    ]
    host.session().rollback()
    practice = practices.require_practice(host.session(), tenant)
    assert practice.current_major == 1  # the default purpose's text is untouched
    names = [p.key for p in list_purposes(host.session(), tenant)]
    assert names == ["care", "newsletter"]


def test_staff_record_consent_for_a_chosen_purpose_and_history_names_it(host: TestHost) -> None:
    tenant = set_up(host)
    pages = Pages(host, tenant)
    _add_newsletter(host, tenant, pages)
    client = host.new_client(tenant)
    page = html(pages.get(f"/clients/{client}/obtain?purpose=newsletter", lang="en"))
    assert 'name="purpose" value="newsletter"' in page and "Purpose: Newsletter" in page
    seen = re.search(r'name="seen_seq" value="(\d+)"', page).group(1)
    saved = pages.post(f"/clients/{client}/obtain", {
        "action": "record", "purpose": "newsletter", "method": "paper",
        "given_on": "2026-11-01", "note": "", "seen_seq": seen,
    })
    assert saved.status_code == 303 and "purpose=newsletter" in saved.headers["Location"]
    assert consent.client_status(host, tenant, client, "newsletter").status == Status.VALID
    assert consent.client_status(host, tenant, client).status != Status.VALID
    other = set_up(host, name="Annan klinik")
    assert pages.post(f"/clients/{client}/obtain", {
        "action": "record", "purpose": "photos", "method": "paper", "given_on": "2026-11-01",
    }).status_code == 404  # not a purpose of this practice
    assert Pages(host, other).get("/purposes/edit?key=newsletter").status_code == 404
    history = html(pages.get(f"/clients/{client}/history", lang="en"))
    assert '<dd data-purpose="newsletter">Newsletter</dd>' in history


def test_exports_name_the_purpose_of_each_event_and_row(host: TestHost) -> None:
    import csv
    import io
    import json
    import zipfile

    from samtycke_plugin import export
    from samtycke_plugin.access_log import Viewer

    tenant = set_up(host)
    pages = Pages(host, tenant)
    _add_newsletter(host, tenant, pages)
    client = host.new_client(tenant)
    for purpose in ("care", "newsletter"):
        consent.record_manual(host, tenant, client, staff(), method="paper", given_at=WHEN,
                              note=None, purpose=purpose)
    host.session().commit()
    reader = Viewer.staff(staff())
    rows = list(csv.DictReader(io.StringIO(
        export.client_history_csv(host, tenant, client, by=reader))))
    assert [(r["purpose"], r["purpose_name"]) for r in rows] == [
        ("care", "Hälsouppgifter för din behandling"), ("newsletter", "Nyhetsbrev")]
    status = list(csv.DictReader(io.StringIO(
        "".join(export.practice_status_csv(host, tenant, by=reader)))))
    assert sorted((r["client_ref"], r["purpose"], r["status"]) for r in status) == [
        (client, "care", "valid"), (client, "newsletter", "valid")]
    refs_only = list(csv.DictReader(io.StringIO(
        "".join(export.practice_status_csv(host, tenant, by=reader, from_host=False)))))
    assert [(r["purpose"], r["status"]) for r in refs_only] == [
        ("care", "valid"), ("newsletter", "valid")]
    assert export.practice_status_count(host, tenant) == 2
    bundle = zipfile.ZipFile(io.BytesIO(export.proof_bundle(host, tenant, client, by=reader)))
    data = json.loads(bundle.read("history.json"))
    assert [e["purpose"] for e in data["events"]] == ["care", "newsletter"]
    assert {t["purpose"] for t in data["texts"]} == {"care", "newsletter"}
    page = export.client_history_html(host, tenant, client, by=reader, locale="en")
    assert "Purpose: Newsletter" in page and "Purpose: Health information" in page

"""Bad input gives a clear error, never a crash or a silent change: numbers in other
scripts' digits, ids no table can hold, NUL and broken encodings in text, line breaks
in a redirect target, and addresses mail cannot reach.  Each case answers 400 (or 404
for an id that cannot exist) with a sentence naming the field, in Swedish and English,
and writes nothing — on the app's pages, through its hooks and service, and on the
example platform's own pages, on SQLite and PostgreSQL.

The expected sentences are written out here (not imported), so the tests also run,
and fail, against code that does not have them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import test_example_host
from flask import Flask
from hostkit import TestHost, staff
from markupsafe import escape
from reliability_support import dump
from sqlalchemy import func, select, update
from test_example_host import free_slot, practice_with_samtycke, query, signed_in, token
from test_practice_pages import Pages, set_up

from examples.host_app.models import Booking, Client, DevMail
from examples.host_app.security import safe_next
from examples.host_app.testing import csrf_from
from samtycke_plugin import common, consent, practices
from samtycke_plugin.email import addresses
from samtycke_plugin.email import batch as batch_requests
from samtycke_plugin.errors import InputError, SettingsError
from samtycke_plugin.models import ConsentEvent, ConsentRequest, OutboxMessage, Practice

#: The example platform (module-scoped, seeded), once on SQLite and once on PostgreSQL.
app = test_example_host.app
database_url = test_example_host.database_url

ODD_DIGITS = ["²", "٣", "３", "1²"]  # isdigit() is true for each; int() fails or reads 3
HUGE_ID = "9" * 20  # no INTEGER or BIGINT column holds it


def says(body: str, sentence: str) -> bool:
    """The page shows ``sentence`` (as the template escaped it)."""
    return str(escape(sentence)) in body


# -- the app's pages ----------------------------------------------------------------------


VALIDITY = (
    "Skriv giltighetstiden som ett helt antal dagar från 1 till 3650",
    "Write the validity as a whole number of days from 1 to 3650",
)
PAUSE = (
    "Skriv hur många dagar du vill vänta innan en klient som sagt nej tillfrågas igen",
    "Write how many days to wait before asking a client who said no again",
)
LINK_DAYS = (
    "Skriv hur många dagar en mejlad länk ska gälla",
    "Write how many days an e-mailed link works",
)


@pytest.mark.parametrize("raw", ODD_DIGITS)
@pytest.mark.parametrize("lang", ["sv", "en"])
def test_setup_numbers_in_other_digits_are_refused_naming_the_field(
    host: TestHost, raw: str, lang: str
) -> None:
    tenant = set_up(host)
    pages = Pages(host, tenant)
    before = dump(host.engine, [tenant])
    form = {"step": "3", "require_consent_for_online_booking": "no"}
    validity = pages.post("/setup", {**form, "request_link_days": "14", "validity_days": raw},
                          lang=lang)
    assert validity.status_code == 400
    assert VALIDITY[lang == "en"] in validity.text
    link_days = pages.post("/setup", {**form, "request_link_days": raw}, lang=lang)
    assert link_days.status_code == 400
    assert LINK_DAYS[lang == "en"] in link_days.text
    pause = pages.post("/setup", {**form, "request_link_days": "14", "pause_days": raw},
                       lang=lang)
    assert pause.status_code == 400
    assert PAUSE[lang == "en"] in pause.text
    assert dump(host.engine, [tenant]) == before


DAMAGED = (
    "Formuläret var skadat: dess fält ”{}” måste vara ett heltal skrivet med siffrorna 0–9.",
    "The form was damaged: its field “{}” must be a whole number written with the digits 0-9.",
)


@pytest.mark.parametrize("raw", ODD_DIGITS)
def test_hidden_numbers_in_other_digits_are_a_400_naming_the_field(
    host: TestHost, raw: str
) -> None:
    """``expected_major`` and ``seen_seq`` only a damaged or forged form gets wrong."""
    tenant = set_up(host)
    client = host.new_client(tenant)
    pages = Pages(host, tenant)
    before = dump(host.engine, [tenant])
    posts = [
        ("/text", {"action": "preview", "expected_major": raw, "text_sv": "Ny text " * 5},
         "expected_major"),
        (f"/clients/{client}/obtain", {"action": "record", "method": "paper",
                                       "given_on": "2026-11-20", "seen_seq": raw}, "seen_seq"),
        (f"/clients/{client}/withdraw", {"action": "withdraw", "seen_seq": raw}, "seen_seq"),
    ]
    for lang in ("sv", "en"):
        for path, form, field in posts:
            response = pages.post(path, form, lang=lang)
            assert response.status_code == 400, (path, response.status_code)
            assert says(response.text, DAMAGED[lang == "en"].format(field)), path
    assert dump(host.engine, [tenant]) == before
    # The wizard's text step (before set-up is complete) posts the same hidden field.
    wizard = set_up(host, ask_new_clients=True)
    host.session().execute(update(Practice).where(Practice.tenant_ref == wizard)
                           .values(setup_complete=False))
    host.session().commit()
    before = dump(host.engine, [wizard])
    for lang in ("sv", "en"):
        response = Pages(host, wizard).post("/setup", {
            "step": "2", "action": "save", "expected_major": raw, "text_sv": "Ny text " * 5,
        }, lang=lang)
        assert response.status_code == 400
        assert says(response.text, DAMAGED[lang == "en"].format("expected_major"))
    assert dump(host.engine, [wizard]) == before


NOTE_CONTROL = (
    "Anteckningen innehåller ett styrtecken (till exempel NUL) som inte kan sparas.",
    "The note contains a control character (such as NUL), which cannot be saved.",
)
NOTE_BROKEN = (
    "Anteckningen innehåller tecken som inte gick att läsa",
    "The note contains characters that could not be read",
)
REASON_CONTROL = (
    "Anledningen innehåller ett styrtecken (till exempel NUL) som inte kan sparas.",
    "The reason contains a control character (such as NUL), which cannot be saved.",
)


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_a_note_with_nul_is_refused_on_every_page_not_changed(host: TestHost, lang: str) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    consent.record_manual(host, tenant, client, staff(), method="paper",
                          given_at=host.now(), note=None)
    host.session().commit()
    pages = Pages(host, tenant)
    before = dump(host.engine, [tenant])
    for note in ("Papper i\x00pärmen", "Ring\x07"):
        record = pages.post(f"/clients/{client}/obtain", {
            "action": "record", "method": "paper", "given_on": "2026-11-20", "note": note,
        }, lang=lang)
        assert record.status_code == 400
        assert NOTE_CONTROL[lang == "en"] in record.text
        for action in ("withdraw", "revoke"):
            withdraw = pages.post(f"/clients/{client}/withdraw",
                                  {"action": action, "note": note}, lang=lang)
            assert withdraw.status_code == 400
            assert NOTE_CONTROL[lang == "en"] in withdraw.text
    body = "Ny och ändrad text om hur vi sparar dina uppgifter.\n"
    reason = pages.post("/text", {"action": "save", "expected_major": "1", "text_sv": body,
                                  "kind": "correction", "reason": "Stavfel\x00"}, lang=lang)
    assert reason.status_code == 400
    assert REASON_CONTROL[lang == "en"] in reason.text
    assert dump(host.engine, [tenant]) == before


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_a_note_in_a_broken_encoding_is_refused_not_changed(host: TestHost, lang: str) -> None:
    """Bytes that are not UTF-8 reach the handler as U+FFFD (Werkzeug's decoder): the
    practitioner is asked to retype the note instead of it being stored changed."""
    tenant = set_up(host)
    client = host.new_client(tenant)
    pages = Pages(host, tenant)
    before = dump(host.engine, [tenant])
    raw = (f"csrf_token={quote(pages.token)}&action=record&method=paper&given_on=2026-11-20"
           "&note=Papper+i+p%E4rmen").encode("ascii")  # "ä" as Latin-1: not UTF-8
    response = pages.client.post(
        f"{common.MOUNT_PREFIX}/clients/{client}/obtain", data=raw,
        content_type="application/x-www-form-urlencoded", headers={"Accept-Language": lang})
    assert response.status_code == 400
    assert NOTE_BROKEN[lang == "en"] in response.text
    assert dump(host.engine, [tenant]) == before


@pytest.mark.parametrize("note", ["a\x00b", "\x1b[31m", "Papper i p\ufffdrmen", "x\ud800"])
def test_the_service_refuses_such_notes_naming_the_field(host: TestHost, note: str) -> None:
    """Hosts calling the service directly get the same answer as the pages."""
    tenant = set_up(host)
    client = host.new_client(tenant)
    given = host.new_client(tenant)
    consent.record_manual(host, tenant, given, staff(), method="paper", given_at=host.now(),
                          note=None)
    host.session().commit()
    before = dump(host.engine, [tenant])
    with pytest.raises(InputError) as err:
        consent.record_manual(host, tenant, client, staff(), method="paper",
                              given_at=host.now(), note=note)
    host.session().rollback()
    assert err.value.field == "note"
    assert "control character" in str(err.value) or "could not be read" in str(err.value)
    with pytest.raises(InputError) as err:
        consent.withdraw(host, tenant, given, actor="staff:s1", channel="practitioner",
                         method="reported_by_staff", by_client=True, note=note)
    host.session().rollback()
    assert err.value.field == "note"
    assert dump(host.engine, [tenant]) == before


@pytest.mark.parametrize("path", ["/texts/٣", "/texts/²", f"/texts/{HUGE_ID}", "/texts/0"])
def test_text_version_ids_that_cannot_exist_are_404(host: TestHost, path: str) -> None:
    tenant = set_up(host)
    response = Pages(host, tenant).get(quote(path))
    assert response.status_code == 404
    assert "Sidan hittades inte." in response.text


@pytest.mark.parametrize("raw", ODD_DIGITS)
def test_settings_through_the_activation_hook_take_ascii_digits_only(
    host: TestHost, raw: str
) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    with pytest.raises(SettingsError) as err:
        host.activate(hooks, tenant, validity_days=raw)
    host.session().rollback()
    assert "validity_days" in str(err.value)
    assert practices.get_practice(host.session(), tenant) is None


# -- addresses mail cannot reach -------------------------------------------------------------

NON_ASCII = (
    "Klientens e-postadress har en annan bokstav än a till z före @ (till exempel ñ eller å)",
    "The client's e-mail address has a letter other than a to z before the @ (such as ñ or å)",
)


def _mail_rows(host: TestHost, tenant: str) -> tuple[int, int, int]:
    host.session().rollback()
    return tuple(  # type: ignore[return-value]
        host.session().scalar(select(func.count()).select_from(model)
                              .where(model.tenant_ref == tenant))
        for model in (ConsentEvent, ConsentRequest, OutboxMessage))


def test_a_non_ascii_local_part_is_refused_where_the_address_enters(host: TestHost) -> None:
    """Neither the built-in transport nor a host's mailer offers SMTPUTF8: such an
    address is refused with the reason, on the request page, in the batch and after a
    client is created — never queued to fail later with another reason."""
    with pytest.raises(InputError) as err:
        addresses.normalise_address("ñoño@example.org")
    assert err.value.field == "email" and "before the @" in str(err.value)
    assert addresses.normalise_address("jorg@exämple.de") == "jorg@exämple.de"  # IDN domain

    tenant = set_up(host, email_request_to_new_clients=True, ask_new_clients=True)
    client = host.new_client(tenant, email="ñoño@example.org")
    before = _mail_rows(host, tenant)
    pages = Pages(host, tenant)
    for lang in ("sv", "en"):
        sent = pages.post(f"/clients/{client}/obtain", {"action": "send"}, lang=lang)
        assert sent.status_code == 400
        assert says(sent.text, NON_ASCII[lang == "en"])
    assert _mail_rows(host, tenant) == before

    result = batch_requests.request_batch(host, tenant, actor="staff:s1")
    host.session().commit()
    assert (result.asked, result.skipped_no_email) == (0, 1)
    assert _mail_rows(host, tenant) == before

    hooks = host.hooks()
    created = client  # the creation trigger asks by e-mail when the practice chose so
    hooks.client_created(service_created(tenant, created, host))
    host.session().commit()
    assert _mail_rows(host, tenant) == before


def service_created(tenant: str, client: str, host: TestHost) -> Any:
    from hookspecs.types import ClientCreated, ClientRef, TenantRef

    return ClientCreated(tenant=TenantRef(tenant), client=ClientRef(client), created_by="staff",
                         at=host.now())


# -- the example platform's own pages -------------------------------------------------------


def _host_rows(app: Flask, practice_id: int) -> tuple[Any, ...]:
    counts = [
        query(app, select(func.count()).select_from(model)
              .where(model.practice_id == practice_id))[0][0]
        for model in (Client, Booking, DevMail)
    ]
    tenant = str(practice_id)
    app_rows = [
        query(app, select(func.count()).select_from(model)
              .where(model.tenant_ref == tenant))[0][0]
        for model in (ConsentEvent, ConsentRequest, OutboxMessage)
    ]
    return (*counts, *app_rows)


def _english(browser: Any) -> None:
    browser.post("/language", data={"lang": "en", "csrf_token": token(browser)})


def _new_client(app: Flask, browser: Any, email: str = "anna@example.org") -> int:
    response = browser.post("/clients/new", data={
        "name": "Anna Svensson", "email": email, "locale": "sv",
        "csrf_token": token(browser, "/clients/new")})
    assert response.status_code == 302, response.text
    return int(response.location.rsplit("/", 1)[1])


def test_ids_that_cannot_exist_are_404_on_every_page(app: Flask) -> None:
    """A 20-digit id overflows SQLite's INTEGER and PostgreSQL's; another script's
    digits are not an id; neither reaches a query."""
    practice = practice_with_samtycke(app)
    browser = signed_in(app, practice["emails"][0], practice["password"])
    cid = _new_client(app, browser)
    before = _host_rows(app, practice["id"])
    for bad in (HUGE_ID, str(2**31), str(2**63), "٣", "²", f"{cid}\x00"):
        for path in (f"/clients/{bad}", f"/clients/{bad}/erase", f"/clients/{bad}/consent.csv",
                     f"/clients/{bad}/consent.zip", f"/dev/mailbox/{bad}",
                     f"/apps/samtycke/clients/{bad}/history",
                     f"/apps/samtycke/clients/{bad}/obtain"):
            response = browser.get(quote(path))
            assert response.status_code == 404, (path, response.status_code)
            assert "Traceback" not in response.text
        for path in (f"/clients/{bad}/erase", f"/clients/{bad}/bookings"):
            response = browser.post(quote(path), data={"confirm": "yes",
                                                       "csrf_token": token(browser)})
            assert response.status_code == 404, path
    assert browser.get(f"/clients/{cid}").status_code == 200  # the real one still opens
    assert _host_rows(app, practice["id"]) == before


def test_a_nul_in_a_path_is_404(app: Flask) -> None:
    practice = practice_with_samtycke(app)
    browser = app.test_client()
    for path in ("/book/%00", f"/book/{practice['slug']}%00", "/book/%00/booked"):
        response = browser.get(path)
        assert response.status_code == 404, path
        assert "Sidan finns inte." in response.text
    response = browser.post("/book/%00", data={"csrf_token": token(browser)})
    assert response.status_code == 404


FIELD = (
    "Fältet ”{}” innehåller en radbrytning, ett styrtecken (till exempel NUL) eller tecken som "
    "inte gick att läsa",
    "The field “{}” contains a line break, a control character (such as NUL) or characters "
    "that could not be read",
)


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_nul_in_a_client_field_is_a_400_naming_it_and_nothing_is_written(
    app: Flask, lang: str
) -> None:
    practice = practice_with_samtycke(app)
    browser = signed_in(app, practice["emails"][0], practice["password"])
    if lang == "en":
        _english(browser)
    before = _host_rows(app, practice["id"])
    good = {"name": "Anna Svensson", "email": "anna@example.org", "locale": "sv",
            "phone": "070-123 45 67", "notes": "Första besöket.\r\nAllergisk mot nötter."}
    labels = {"notes": ("Anteckningar", "Notes"), "phone": ("Telefon", "Phone"),
              "name": ("Namn", "Name"), "email": ("E-post", "E-mail")}
    for field, (sv, en) in labels.items():
        for bad in ("\x00", "\ufffd"):
            data = {**good, field: good[field][:5] + bad + good[field][5:],
                    "csrf_token": token(browser, "/clients/new")}
            response = browser.post("/clients/new", data=data)
            assert response.status_code == 400, (field, response.status_code)
            assert says(response.text, FIELD[lang == "en"].format(sv if lang == "sv" else en))
    search = browser.get("/clients?q=Anna%00")
    assert search.status_code == 400
    assert says(search.text, FIELD[lang == "en"].format(
        "Sök på namn eller e-post" if lang == "sv" else "Search by name or e-mail"))
    mailbox = browser.get("/dev/mailbox?to=a%00@example.org")
    assert mailbox.status_code == 400
    assert _host_rows(app, practice["id"]) == before
    # Line breaks in the notes are what a textarea sends: kept.
    saved = browser.post("/clients/new", data={**good, "csrf_token": token(browser)})
    assert saved.status_code == 302
    [(notes,)] = query(app, select(Client.notes).where(Client.practice_id == practice["id"]))
    assert notes == good["notes"]


def test_a_client_field_in_a_broken_encoding_is_a_400_not_stored_changed(app: Flask) -> None:
    """Werkzeug writes bytes that are not UTF-8 back as text ("%E4") in a url-encoded
    form; the platform refuses the field instead of storing what nobody typed."""
    practice = practice_with_samtycke(app)
    browser = signed_in(app, practice["emails"][0], practice["password"])
    before = _host_rows(app, practice["id"])
    raw = (f"csrf_token={quote(token(browser, '/clients/new'))}&name=Anna&locale=sv"
           "&notes=Allergisk+mot+n%F6tter").encode("ascii")  # "ö" as Latin-1
    response = browser.post("/clients/new", data=raw,
                            content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert says(response.text, FIELD[0].format("Anteckningar"))
    assert _host_rows(app, practice["id"]) == before


@pytest.mark.parametrize("next_", ["/clients\r\nSet-Cookie: x=1", "/clients\n", "/x%0d%0ay"])
def test_a_line_break_in_the_sign_in_next_is_a_400_not_a_500(app: Flask, next_: str) -> None:
    practice = practice_with_samtycke(app)
    browser = app.test_client()
    page = browser.get("/login")
    response = browser.post(f"/login?next={quote(next_, safe='/%')}", data={
        "email": practice["emails"][0], "password": practice["password"],
        "csrf_token": csrf_from(page.text)})
    assert response.status_code == 400, response.status_code
    assert says(response.text, FIELD[0].format("next"))
    assert "Set-Cookie: x" not in str(response.headers)
    assert browser.get("/clients").status_code == 302  # not signed in
    assert browser.get(f"/login?next={quote(next_, safe='/%')}").status_code == 400
    # the redirect helper itself never returns such a target
    assert safe_next(next_.replace("%0d%0a", "\r\n"), "/dashboard") == "/dashboard"


NON_ASCII_HOST = (
    "E-post kan inte levereras härifrån till en adress med en annan bokstav än a till z före @",
    "E-mail cannot be delivered from here to an address with a letter other than a to z "
    "before the @",
)


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_a_non_ascii_local_part_is_refused_on_the_platform_forms(app: Flask, lang: str) -> None:
    practice = practice_with_samtycke(app, ask_new_clients=True,
                                      require_consent_for_online_booking=False)
    browser = signed_in(app, practice["emails"][0], practice["password"])
    if lang == "en":
        _english(browser)
    before = _host_rows(app, practice["id"])
    staff_form = browser.post("/clients/new", data={
        "name": "Ñoño", "email": "ñoño@example.org", "locale": "sv",
        "csrf_token": token(browser, "/clients/new")})
    assert staff_form.status_code == 400
    assert says(staff_form.text, NON_ASCII_HOST[lang == "en"])

    visitor = app.test_client()
    if lang == "en":
        _english(visitor)
    service_id, slot = free_slot(visitor, practice["slug"])
    online = visitor.post(f"/book/{practice['slug']}", data={
        "name": "Ñoño", "email": "ñoño@example.org", "service": service_id, "slot": slot,
        "csrf_token": token(visitor, f"/book/{practice['slug']}")})
    assert online.status_code == 400
    assert says(online.text, NON_ASCII_HOST[lang == "en"])
    assert _host_rows(app, practice["id"]) == before


@pytest.mark.parametrize("raw", ["٣", "²", HUGE_ID])
def test_a_service_id_in_other_digits_is_refused_not_read(app: Flask, raw: str) -> None:
    practice = practice_with_samtycke(app, require_consent_for_online_booking=False)
    visitor = app.test_client()
    _service_id, slot = free_slot(visitor, practice["slug"])
    before = _host_rows(app, practice["id"])
    response = visitor.post(f"/book/{practice['slug']}", data={
        "name": "Anna", "email": "anna@example.org", "service": raw, "slot": slot,
        "csrf_token": token(visitor, f"/book/{practice['slug']}")})
    assert response.status_code == 400
    assert "Välj vad du vill boka." in response.text
    browser = signed_in(app, practice["emails"][0], practice["password"])
    cid = _new_client(app, browser)
    before = _host_rows(app, practice["id"])
    staff_booking = browser.post(f"/clients/{cid}/bookings", data={
        "service": raw, "slot": slot, "csrf_token": token(browser)})
    assert staff_booking.status_code == 302  # back to the form, with the message flashed
    assert "Välj en tjänst och en av de lediga tiderna" in browser.get(f"/clients/{cid}").text
    for path in ("/clients?page=" + quote(raw), "/dashboard?week=" + quote(raw),
                 "/dashboard?week=-" + quote(raw)):
        assert browser.get(path).status_code == 200, path  # a display choice: the default
    assert _host_rows(app, practice["id"]) == before

"""The batch page: its preview lists exactly who is left out and why and writes nothing;
only a confirmation carrying the key issued with a preview starts the job, once."""

from __future__ import annotations

import re

from batch_support import practice_of_every_kind, rows
from hostkit import TestHost
from markupsafe import escape
from test_practice_pages import P, Pages, confirm_key, html

from samtycke_plugin.email import jobs
from samtycke_plugin.email.batch import Reason
from samtycke_plugin.i18n import t
from samtycke_plugin.web.batch_page import STALE_PREVIEW


def _section(page: str, reason: Reason) -> str:
    found = re.search(rf'<details id="left-out-{reason.value}".*?</details>', page, re.S)
    assert found, f"no list of the clients left out as {reason.value}"
    return found.group(0)


def test_the_preview_lists_who_is_left_out_and_why_and_the_get_writes_nothing(
    batch_host: TestHost,
) -> None:
    host = batch_host
    tenant, kinds = practice_of_every_kind(host)
    names = {ref: info.name for (t_, ref), info in host.clients.items() if t_ == tenant}
    pages = Pages(host, tenant)
    before = rows(host, tenant)
    page = html(pages.get("/batch"))
    en = html(pages.get("/batch", lang="en"))
    assert rows(host, tenant) == before  # two GETs: nothing written, nothing queued
    assert 'data-preview-asked="2"' in page
    assert "2 klienter får en förfrågan via e-post." in page
    assert "2 clients will get a request by e-mail." in en
    for reason, refs in kinds.items():
        if reason is None:
            for ref in refs:  # those mailed are not listed as left out
                assert f"/clients/{ref}/history" not in page
            continue
        section = _section(page, reason)
        listed = set(re.findall(r'/clients/([^/"]+)/history', section))
        assert listed == refs, reason
        for ref in refs:
            assert str(escape(names[ref])) in section
    assert "Har återkallat sitt samtycke (1)" in page and "Ingen användbar e-postadress (1)" in page
    assert "Declined to consent (1)" in en and "Already have valid consent (1)" in en
    assert "Högst 200 klienter visas per skäl" in page
    # The mail as a client will get it: the real request mail's subject and body.
    assert "Kliniken Lugn &amp; Ro" in page and 'id="mail-preview"' in page
    assert "/samtycke/c/example" in page
    assert "Bekräfta: skicka 2 förfrågningar" in page


def test_nothing_is_queued_before_the_confirmation_and_a_double_confirm_is_one_job(
    batch_host: TestHost,
) -> None:
    host = batch_host
    tenant, _kinds = practice_of_every_kind(host)
    pages = Pages(host, tenant)
    before = rows(host, tenant)
    key = confirm_key(pages)
    assert rows(host, tenant) == before and before["jobs"] == 0
    first = pages.post("/batch", key)
    assert first.status_code == 303
    location = first.headers["Location"]
    assert re.fullmatch(rf"{P}/batch/jobs/\d+", location)
    second = pages.post("/batch", key)  # a double click
    assert second.status_code == 303 and second.headers["Location"] == location
    assert rows(host, tenant)["jobs"] == 1
    assert rows(host, tenant)["outbox"] == before["outbox"]  # the job queues, later
    assert jobs.run_pending(host, tenant=tenant) == 1
    done = html(pages.get(location.removeprefix(P)))
    assert "Skickade förfrågningar: 2." in done
    # The same confirmation posted again once the job is done (a replay, a stale tab)
    # starts nothing and says what to do.
    replay = pages.post("/batch", key)
    assert replay.status_code == 409
    assert str(escape(t("sv", STALE_PREVIEW))) in html(replay)
    assert rows(host, tenant)["jobs"] == 1


def test_a_confirmation_without_a_key_of_this_preview_is_refused_and_says_what_to_do(
    host: TestHost,
) -> None:
    tenant, _kinds = practice_of_every_kind(host)
    pages = Pages(host, tenant)
    before = rows(host, tenant)
    good = confirm_key(pages)["confirm_key"]
    issued, latest, mac = good.split(".")
    other_session = Pages(host, tenant, session="sign-in-2")
    refused = {
        "no key": pages.post("/batch", {}),
        "empty": pages.post("/batch", {"confirm_key": ""}),
        "garbage": pages.post("/batch", {"confirm_key": "x" * 300}),
        "forged job": pages.post("/batch", {"confirm_key": f"{issued}.{int(latest) + 1}.{mac}"}),
        "forged time": pages.post("/batch", {"confirm_key": f"{int(issued) + 1}.{latest}.{mac}"}),
        "other session": other_session.post("/batch", {"confirm_key": good}),
    }
    for why, response in refused.items():
        assert response.status_code == 409, why
        body = html(response)
        assert str(escape(t("sv", STALE_PREVIEW))) in body, why
        assert 'name="confirm_key"' in body, why  # a fresh preview to confirm instead
    english = pages.post("/batch", {}, lang="en")
    assert "Nothing was sent: this preview is out of date" in html(english)
    assert "confirm again" in html(english)
    host.advance(hours=2)  # a tab left open: its preview is too old to confirm
    assert pages.post("/batch", {"confirm_key": good}).status_code == 409
    assert rows(host, tenant) == before  # nothing started, nothing queued
    fresh = confirm_key(pages)
    assert pages.post("/batch", fresh).status_code == 303
    assert rows(host, tenant)["jobs"] == 1


def test_a_batch_for_one_purpose_previews_and_confirms_that_purpose(host: TestHost) -> None:
    """With two purposes the page offers a choice; the preview and the job are for the
    purpose chosen, and a key issued for one purpose does not confirm another."""
    from samtycke_plugin import consent, practice_texts, practices, purposes

    tenant = host.new_tenant()
    host.activate(host.hooks(), tenant, ask_clients_without_consent=True)
    purposes.add(
        host.session(), tenant, key="newsletter", names={"sv": "Nyhetsbrev", "en": "Newsletter"},
        legal_basis={}, required=False, validity_days=None,
        bodies={"sv": "Vi skickar vårt nyhetsbrev ungefär en gång i månaden.\n"},
        actor="staff:s1", now=host.now(),
    )
    asked = host.new_client(tenant, name="Ny Klient", email="ny@example.org")
    declined = host.new_client(tenant, name="Nej Tack", email="nej@example.org")
    session = host.session()
    practice = practices.require_practice(session, tenant)
    news = practice_texts.current_text(session, practice, "sv", "newsletter")
    consent.refuse(session, tenant, declined, news,
                   consent.How(channel="email_link", method="button", actor="client"),
                   now=host.now(), purpose="newsletter")
    session.commit()
    pages = Pages(host, tenant)
    care_page = html(pages.get("/batch"))
    assert '<option value="newsletter">Nyhetsbrev</option>' in care_page
    assert 'data-preview-asked="2"' in care_page  # care: nobody declined it
    news_page = html(pages.get("/batch?purpose=newsletter"))
    assert 'data-preview-asked="1"' in news_page and "Ändamål: Nyhetsbrev" in news_page
    assert f"/clients/{declined}/history" in _section(news_page, Reason.REFUSED)
    assert pages.get("/batch?purpose=nope").status_code == 400
    care_key = confirm_key(pages, care_page)
    refused = pages.post("/batch", {**care_key, "purpose": "newsletter"})
    assert refused.status_code == 409 and rows(host, tenant)["jobs"] == 0
    started = pages.post("/batch", {**confirm_key(pages, news_page), "purpose": "newsletter"})
    assert started.status_code == 303
    assert jobs.run_pending(host, tenant=tenant) == 1
    job = jobs.job_progress(host, tenant, jobs.latest_job(host, tenant))
    assert job is not None and job.purpose == "newsletter"
    assert (job.asked, job.skipped_refused) == (1, 1)
    assert asked != declined


def _stat(page: str, label: str) -> str:
    found = re.search(rf"<dt>{re.escape(label)}</dt><dd>([^<]*)</dd>", page)
    assert found, f"no count {label!r} on the page"
    return found.group(1)


def test_the_counts_and_the_rule_for_a_no_are_those_of_the_purpose_asked(host: TestHost) -> None:
    """A newsletter batch counts newsletter consent (not the default purpose's), and the
    page says that a "no" leaves a client out only within the pause."""
    from samtycke_plugin import consent, practice_texts, practices, purposes

    tenant = host.new_tenant()
    host.activate(host.hooks(), tenant, ask_clients_without_consent=True)
    purposes.add(
        host.session(), tenant, key="newsletter", names={"sv": "Nyhetsbrev", "en": "Newsletter"},
        legal_basis={}, required=False, validity_days=None,
        bodies={"sv": "Vi skickar vårt nyhetsbrev ungefär en gång i månaden.\n"},
        actor="staff:s1", now=host.now(),
    )
    cared = host.new_client(tenant, name="Med Samtycke", email="med@example.org")
    host.new_client(tenant, name="Utan Samtycke", email="utan@example.org")
    session = host.session()
    practice = practices.require_practice(session, tenant)
    how = consent.How(channel="email_link", method="button", actor="client")
    consent.grant(session, tenant, cared, practice_texts.current_text(session, practice, "sv"), how,
                  now=host.now(), validity_days=None)
    session.commit()
    pages = Pages(host, tenant)
    care_page = html(pages.get("/batch"))
    assert _stat(care_page, "Klienter med giltigt samtycke") == "1"
    assert _stat(care_page, "Klienter utan giltigt samtycke") == "1"
    news_page = html(pages.get("/batch?purpose=newsletter"))
    assert _stat(news_page, "Klienter") == "2"
    assert _stat(news_page, "Klienter med giltigt samtycke") == "0"
    assert _stat(news_page, "Klienter utan giltigt samtycke") == "2"
    assert 'data-preview-asked="2"' in news_page
    assert "inom den paus som är vald i inställningarna hoppas också över" in news_page

"""E-mailed requests per purpose, on SQLite and PostgreSQL with a real SMTP server.

* A request for two purposes: the mail names both, the consent page gives each its own
  text and its own choice (no single "accept all"), and records one event per purpose
  against that purpose's text version; the receipt names the purpose accepted and its
  withdrawal link withdraws it.
* A batch for the newsletter mails only clients without valid newsletter consent, and
  leaves out a client who declined the newsletter within the pause; its preview says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hostkit import TestHost
from smtp_support import Browser, SmtpServer, form_fields, path_of, running_server
from sqlalchemy import select

from samtycke_plugin import consent, practice_texts, practices, purposes
from samtycke_plugin.email import batch as batch_requests
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.email.batch import Reason
from samtycke_plugin.email.batch_preview import preview_batch
from samtycke_plugin.email.relay import send_due
from samtycke_plugin.models import ConsentEvent, ConsentRequest, TextVersion
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.text import sha256

NEWSLETTER_SV = "Vi skickar vårt nyhetsbrev till din e-post ungefär en gång i månaden.\n"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


def _practice(host: TestHost) -> str:
    tenant = host.new_tenant()
    host.activate(host.hooks(), tenant, ask_clients_without_consent=True)
    purposes.add(
        host.session(), tenant, key="newsletter", names={"sv": "Nyhetsbrev", "en": "Newsletter"},
        legal_basis={"sv": "Samtycke"}, required=False, validity_days=730,
        bodies={"sv": NEWSLETTER_SV}, actor="staff:s1", now=host.now(),
    )
    host.session().commit()
    return tenant


def _events(host: TestHost, tenant: str, client: str) -> list[ConsentEvent]:
    host.session().expire_all()
    return list(host.session().scalars(
        select(ConsentEvent).where(ConsentEvent.tenant_ref == tenant,
                                   ConsentEvent.client_ref == client)
        .order_by(ConsentEvent.seq)
    ))


def test_a_request_for_two_purposes_records_a_separate_choice_for_each(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    client = host.new_client(tenant)
    req = mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    assert req.purpose_majors == {DEFAULT_PURPOSE: 1, "newsletter": 1}
    asked = [e for e in _events(host, tenant, client) if e.state == "requested"]
    assert sorted(e.purpose_key for e in asked) == [DEFAULT_PURPOSE, "newsletter"]

    send_due(host, tenant=tenant, transport=smtp_server.transport())
    mail = smtp_server.messages[-1]
    assert "Nyhetsbrev" in mail.text and "Hälsouppgifter för din behandling" in mail.text
    kind, token = mail.link()
    assert kind == "c"

    browser = Browser(host)
    page = browser.get(path_of("c", token))
    assert page.status_code == 200
    # Each purpose: its own text and its own pair of choices; one save button, no
    # button that accepts everything.
    assert NEWSLETTER_SV.strip() in page.text
    assert len(re.findall(r'name="decision_care" value="(?:accept|decline)"', page.text)) == 2
    assert len(re.findall(r'name="decision_newsletter" value="(?:accept|decline)"',
                          page.text)) == 2
    assert 'name="decision" value="accept"' not in page.text
    fields = form_fields(page.text)
    session = host.session()
    care_text = session.get(TextVersion, int(fields["text_care"]))
    news_text = session.get(TextVersion, int(fields["text_newsletter"]))
    assert care_text is not None and care_text.purpose_key == DEFAULT_PURPOSE
    assert news_text is not None and news_text.purpose_key == "newsletter"

    # A purpose left unanswered: nothing is recorded and the link still works.
    missing = browser.post(path_of("c", token), data={**fields, "decision_care": "accept"})
    assert missing.status_code == 400
    assert [e.state for e in _events(host, tenant, client)] == ["requested", "requested"]

    done = browser.post(path_of("c", token), data={
        **fields, "decision_care": "accept", "decision_newsletter": "decline"})
    assert done.status_code == 200, done.text
    answered = {e.purpose_key: e for e in _events(host, tenant, client)
                if e.state != "requested"}
    assert answered[DEFAULT_PURPOSE].state == "given"
    assert answered[DEFAULT_PURPOSE].text_version_id == care_text.id
    assert answered["newsletter"].state == "refused"
    assert answered["newsletter"].text_version_id == news_text.id
    assert consent.client_status(host, tenant, client).valid
    assert not consent.client_status(host, tenant, client, "newsletter").valid

    # The receipt names the purpose accepted; its link withdraws that consent.
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    receipt = smtp_server.messages[-1]
    assert "Ändamål: Hälsouppgifter för din behandling" in receipt.text
    kind, w_token = receipt.link()
    assert kind == "w"
    confirm = browser.get(path_of("w", w_token))
    assert confirm.status_code == 200
    withdrawn = browser.post(path_of("w", w_token), data={**form_fields(confirm.text),
                                                          "decision": "withdraw"})
    assert withdrawn.status_code == 200
    states = [(e.purpose_key, e.state) for e in _events(host, tenant, client)]
    assert states[-1] == (DEFAULT_PURPOSE, "withdrawn")
    assert not consent.client_status(host, tenant, client).valid


def test_a_choice_of_two_purposes_from_the_profile_asks_only_those_chosen(
    host: TestHost,
) -> None:
    tenant = _practice(host)
    client = host.new_client(tenant)
    req = mail_requests.send_request(host, tenant, client, actor="staff:s1",
                                     purposes=["newsletter"])
    host.session().commit()
    assert req.purpose_majors == {"newsletter": 1}
    assert [e.purpose_key for e in _events(host, tenant, client)] == ["newsletter"]


def test_a_batch_for_the_newsletter_leaves_out_who_has_it_or_declined_it_in_the_pause(
    batch_host: TestHost, smtp_server: SmtpServer
) -> None:
    host = batch_host
    tenant = _practice(host)
    nobody = host.new_client(tenant, name="Ingen Alls", email="ingen@example.org")
    care_only = host.new_client(tenant, name="Vård Bara", email="vard@example.org")
    subscribed = host.new_client(tenant, name="Har Brev", email="brev@example.org")
    declined = host.new_client(tenant, name="Nej Tack", email="nej@example.org")
    session = host.session()
    practice = practices.require_practice(session, tenant)
    how = consent.How(channel="email_link", method="button", actor="client")
    for who, purpose in ((care_only, DEFAULT_PURPOSE), (subscribed, "newsletter")):
        text = practice_texts.current_text(session, practice, "sv", purpose)
        consent.grant(session, tenant, who, text, how, now=host.now(), purpose=purpose,
                      validity_days=None)
    news = practice_texts.current_text(session, practice, "sv", "newsletter")
    consent.refuse(session, tenant, declined, news, how, now=host.now(), purpose="newsletter")
    session.commit()
    host.advance(days=30)  # well within the pause (12 months by default)

    preview = preview_batch(host, tenant, purpose="newsletter", cap=None)
    assert preview.asked == 2
    assert [c.ref for c in preview.left_out[Reason.REFUSED]] == [declined]
    assert [c.ref for c in preview.left_out[Reason.VALID]] == [subscribed]
    assert preview.mail is not None and "Nyhetsbrev" in preview.mail.text
    assert smtp_server.messages == []  # a preview sends nothing

    result = batch_requests.request_batch(host, tenant, actor="staff:s1", purpose="newsletter")
    host.session().commit()
    assert (result.asked, result.skipped_valid, result.skipped_refused) == (2, 1, 1)
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    mailed = sorted(addr for m in smtp_server.messages for addr in m.rcpt_tos)
    assert mailed == ["ingen@example.org", "vard@example.org"]
    host.session().expire_all()
    asked = host.session().scalars(
        select(ConsentRequest).where(ConsentRequest.tenant_ref == tenant,
                                     ConsentRequest.purpose == "consent")
    ).all()
    assert sorted(r.client_ref for r in asked) == sorted([nobody, care_only])
    assert all(r.purpose_majors == {"newsletter": 1} for r in asked)
    # Asked again at once: everyone is left out, the two just asked as already asked.
    again = batch_requests.request_batch(host, tenant, actor="staff:s1", purpose="newsletter")
    assert (again.asked, again.skipped_pending) == (0, 2)

    # The care batch is decided on care: the newsletter's decline does not hold it back.
    care = preview_batch(host, tenant, cap=None)
    assert care.counts[Reason.REFUSED] == 0 and care.counts[Reason.VALID] == 1


def test_a_client_asked_again_after_a_change_sees_that_purposes_note_and_it_is_recorded(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    client = host.new_client(tenant)
    session = host.session()
    practice = practices.require_practice(session, tenant)
    news = practice_texts.current_text(session, practice, "sv", "newsletter")
    consent.grant(session, tenant, client, news,
                  consent.How(channel="email_link", method="button", actor="client"),
                  now=host.now(), purpose="newsletter", validity_days=None)
    session.commit()
    note = "Nyhetsbrevet kommer nu varje vecka."
    practice_texts.publish_text(
        host, tenant, bodies={"sv": "Vi skickar vårt nyhetsbrev till din e-post varje vecka.\n"},
        kind="content", reason=note, actor="staff:s1", expected_major=1, purpose="newsletter",
    )
    host.session().commit()
    host.advance(minutes=2)
    mail_requests.send_request(host, tenant, client, actor="staff:s1",
                               purposes=["newsletter"])
    host.session().commit()
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    _kind, token = smtp_server.messages[-1].link()
    browser = Browser(host)
    page = browser.get(path_of("c", token))
    assert "Vad har ändrats" in page.text and note in page.text
    done = browser.post(path_of("c", token), data={**form_fields(page.text),
                                                   "decision": "accept"})
    assert done.status_code == 200, done.text
    last = _events(host, tenant, client)[-1]
    assert (last.purpose_key, last.text_major) == ("newsletter", 2)
    assert last.state in ("given", "renewed")
    assert last.change_note_sha256 == sha256(note)

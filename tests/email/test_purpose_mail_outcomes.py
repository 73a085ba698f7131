"""What the state machine (tests/reliability/test_model.py) found about purposes and mail,
on SQLite and PostgreSQL with a real SMTP server:

* a bounced request shows on the status of each purpose it asked for, and on no other
  purpose;
* every consent given at one booking can be withdrawn through the receipt's link, not
  only the one the receipt describes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hostkit import TestHost
from reliability_support import complete_receipts
from smtp_support import Browser, SmtpServer, form_fields, path_of, running_server
from sqlalchemy import select

from hookspecs.types import (
    BookingFormContext,
    BookingRef,
    BookingSubmission,
    ClientRef,
    TenantRef,
)
from samtycke_plugin import consent, purposes
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.email import tokens
from samtycke_plugin.email.relay import send_due
from samtycke_plugin.models import ConsentRequest
from samtycke_plugin.purposes import DEFAULT_PURPOSE

NEWSLETTER_SV = "Vi skickar vårt nyhetsbrev till din e-post ungefär en gång i månaden.\n"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


def _practice(host: TestHost) -> str:
    tenant = host.new_tenant()
    host.activate(host.hooks(), tenant, ask_clients_without_consent=True)
    purposes.add(
        host.session(), tenant, key="newsletter", names={"sv": "Nyhetsbrev", "en": "Newsletter"},
        legal_basis={}, required=False, validity_days=None, bodies={"sv": NEWSLETTER_SV},
        actor="staff:s1", now=host.now(),
    )
    host.session().commit()
    return tenant


def _status(host: TestHost, tenant: str, client: str, purpose: str) -> str:
    value = consent.client_status(host, tenant, client, purpose).status.value
    host.session().rollback()
    return value


def test_a_bounced_request_shows_on_each_purpose_it_asked_for_and_no_other(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    client = host.new_client(tenant, email="finns.inte@example.org")
    # asked for the default purpose first, then (replacing that link) for the newsletter
    mail_requests.send_request(host, tenant, client, actor="staff:s1", purposes=[DEFAULT_PURPOSE])
    host.session().commit()
    host.advance(minutes=5)
    mail_requests.send_request(host, tenant, client, actor="staff:s1", purposes=["newsletter"])
    host.session().commit()
    smtp_server.handler.rcpt_replies["finns.inte@example.org"] = "550 5.1.1 No such user"
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    host.session().rollback()
    # the newsletter's mail bounced; the default purpose's mail was never sent (its link
    # was replaced), so it still waits for an answer
    assert _status(host, tenant, client, "newsletter") == "bounced"
    assert _status(host, tenant, client, DEFAULT_PURPOSE) == "requested"


def test_a_request_for_two_purposes_that_bounces_shows_on_both(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    client = host.new_client(tenant, email="finns.inte@example.org")
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    smtp_server.handler.rcpt_replies["finns.inte@example.org"] = "550 5.1.1 No such user"
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    host.session().rollback()
    assert _status(host, tenant, client, DEFAULT_PURPOSE) == "bounced"
    assert _status(host, tenant, client, "newsletter") == "bounced"


def test_every_consent_given_at_one_booking_can_be_withdrawn_through_the_receipt_link(
    host: TestHost,
) -> None:
    tenant = _practice(host)
    hooks = host.hooks()
    client = host.new_client(tenant)
    frags = hooks.form_fragments(BookingFormContext(
        tenant=TenantRef(tenant), client=ClientRef(client), locale="sv"))
    hidden = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', frags[0].html))
    host.session().rollback()
    sub = BookingSubmission(
        tenant=TenantRef(tenant), client=ClientRef(client), is_new_client=False,
        channel="online", fields={**hidden, "samtycke_consent": "yes",
                                  "samtycke_consent__newsletter": "yes"},
        locale="sv", ip_address="203.0.113.77", user_agent="Mozilla/5.0 (test)")
    assert hooks.submit_check(sub) == []
    hooks.submitted(sub, BookingRef("b1"), ClientRef(client))
    host.session().commit()
    complete_receipts(host, tenant, client)  # what the relay does when it sends the receipt
    [link] = host.session().scalars(select(ConsentRequest).where(
        ConsentRequest.tenant_ref == tenant, ConsentRequest.client_ref == client,
        ConsentRequest.purpose == tokens.PURPOSE_WITHDRAW)).all()
    # the receipt describes the first consent; its link covers both
    assert link.purpose_majors == {DEFAULT_PURPOSE: 1, "newsletter": 1}
    token = tokens.token_for(tokens.link_key(host), link)
    host.session().rollback()
    browser = Browser(host)
    path = path_of("w", token)
    page = browser.get(path)
    assert page.status_code == 200 and "Nyhetsbrev" in page.text
    resp = browser.post(path, data={**form_fields(page.text), "purpose": "newsletter"})
    assert resp.status_code == 200, resp.text
    assert _status(host, tenant, client, "newsletter") == "withdrawn"
    assert _status(host, tenant, client, DEFAULT_PURPOSE) == "valid"

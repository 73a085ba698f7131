"""Renewal requests and reminders, done by the relay: one renewal request per consent
that expires soon (also with two relays at once and after a relay was killed mid-run),
one reminder per unanswered request, none for an answered one; clients who may not be
mailed are left out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hostkit import TestHost, staff
from smtp_support import Browser, Received, SmtpServer, form_fields, path_of, running_server
from sqlalchemy import func, select

from samtycke_plugin import consent, erasure, purposes
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.email.relay import SendReport, send_due
from samtycke_plugin.email.renewals import run_renewals
from samtycke_plugin.email.tokens import PURPOSE_CONSENT
from samtycke_plugin.email.transport import RetryPolicy
from samtycke_plugin.models import ConsentEvent, ConsentRequest, RenewalAsked
from samtycke_plugin.rules import Status

POLICY = RetryPolicy(initial=60, maximum=3600, jitter=30, give_up=timedelta(hours=72),
                     lease=timedelta(seconds=600))
TESTS = Path(__file__).resolve().parents[1]
NEWSLETTER_SV = "Vi skickar nyheter om kliniken till dig per e-post ungefär en gång i månaden."


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


def _practice(host: TestHost, **settings: object) -> str:
    tenant = host.new_tenant()
    chosen: dict[str, object] = {"validity_days": 365, "renew_days_before": 30,
                                 "remind_after_days": 7, **settings}
    host.activate(host.hooks(), tenant, **chosen)
    return tenant


def _consented(host: TestHost, tenant: str, n: int, prefix: str = "k") -> list[str]:
    refs = []
    for i in range(n):
        ref = host.new_client(tenant, name=f"Klient {prefix}{i}", email=f"{prefix}{i}@example.org")
        consent.record_manual(host, tenant, ref, staff(), method="paper", given_at=host.now(),
                              note=None)
        refs.append(ref)
    host.session().commit()
    return refs


def _send(host: TestHost, tenant: str, server: SmtpServer) -> SendReport:
    return send_due(host, tenant=tenant, transport=server.transport(), policy=POLICY)


def _requests(host: TestHost, tenant: str) -> list[ConsentRequest]:
    """The practice's consent links (not the withdrawal links of receipts)."""
    host.session().rollback()
    return list(host.session().scalars(
        select(ConsentRequest).where(ConsentRequest.tenant_ref == tenant,
                                     ConsentRequest.purpose == PURPOSE_CONSENT)
        .order_by(ConsentRequest.id)))


def _renewal_mail(server: SmtpServer) -> list[Received]:
    """The renewal requests received (consent recorded by staff also sends receipts)."""
    return [m for m in server.messages if "förnya" in str(m.message["Subject"])]


def _asking_mail(server: SmtpServer) -> list[Received]:
    """Every mail asking for consent: requests, renewal requests, reminders."""
    return [m for m in server.messages if any(kind == "c" for kind, _t in m.links())]


def _status(host: TestHost, tenant: str, client: str, purpose: str = "care") -> Status:
    host.session().rollback()
    return consent.client_status(host, tenant, client, purpose).status


def _answer(host: TestHost, token: str, **decisions: str) -> None:
    browser = Browser(host)
    page = browser.get(path_of("c", token))
    assert page.status_code == 200
    posted = browser.post(path_of("c", token),
                          data={**form_fields(page.text), **(decisions or {"decision": "accept"})})
    assert posted.status_code == 200, posted.text


def test_consent_about_to_lapse_gets_one_renewal_request_and_answering_renews_it(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    due = _consented(host, tenant, 3)
    no_address = host.new_client(tenant, name="Utan Adress", email=None)
    consent.record_manual(host, tenant, no_address, staff(), method="paper",
                          given_at=host.now(), note=None)
    withdrawn = _consented(host, tenant, 1, prefix="w")[0]
    consent.withdraw(host, tenant, withdrawn, actor="staff:s1", channel="manual",
                     method="paper", by_client=False)
    erased = _consented(host, tenant, 1, prefix="e")[0]
    erasure.erase_client(host, tenant, erased)
    host.session().commit()
    host.advance(days=200)
    later = _consented(host, tenant, 1, prefix="l")[0]  # lapses 200 days after the others

    assert _send(host, tenant, smtp_server).renewals == 0  # nothing expires soon yet
    host.advance(days=140)  # 25 days left for the first ones
    report = _send(host, tenant, smtp_server)
    assert report.renewals == 3
    assert sorted(m.rcpt_tos[0] for m in _asking_mail(smtp_server)) == [
        "k0@example.org", "k1@example.org", "k2@example.org"]
    assert _asking_mail(smtp_server) == _renewal_mail(smtp_server)
    # Asking does not take the consent away: it is valid until it lapses.
    assert all(_status(host, tenant, c) is Status.VALID for c in due)

    # Every later run, and a practitioner's view of it, finds the work done.
    for _ in range(3):
        again = _send(host, tenant, smtp_server)
        assert (again.renewals, again.sent) == (0, 0)
    assert len(_asking_mail(smtp_server)) == 3
    host.session().rollback()
    outcomes = dict(host.session().execute(
        select(RenewalAsked.client_ref, RenewalAsked.outcome)
        .where(RenewalAsked.tenant_ref == tenant)).all())
    assert outcomes == {**dict.fromkeys(due, "asked"),
                        no_address: "not asked: the client has no usable e-mail address"}
    assert withdrawn not in outcomes and erased not in outcomes and later not in outcomes

    # The client answers on the normal consent page: renewed, with a new end date.
    first = next(m for m in _renewal_mail(smtp_server) if m.rcpt_tos == ["k0@example.org"])
    _answer(host, first.link()[1])
    host.session().rollback()
    states = host.session().scalars(
        select(ConsentEvent.state).where(ConsentEvent.tenant_ref == tenant,
                                         ConsentEvent.client_ref == due[0])
        .order_by(ConsentEvent.seq)).all()
    assert states == ["given", "requested", "renewed"]
    host.advance(days=30)  # the others have lapsed; the renewed one has not
    assert _status(host, tenant, due[0]) is Status.VALID
    assert _status(host, tenant, due[1]) is Status.EXPIRED
    # The renewed consent gets its own renewal request when its new end date nears.
    host.advance(days=310)
    report = _send(host, tenant, smtp_server)
    assert report.renewals == 1 and _renewal_mail(smtp_server)[-1].rcpt_tos == ["k0@example.org"]
    assert len(_renewal_mail(smtp_server)) == 4


def test_one_request_asks_to_renew_every_purpose_that_expires_soon(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    purposes.add(
        host.session(), tenant, key="newsletter", names={"sv": "Nyhetsbrev", "en": "Newsletter"},
        legal_basis={"sv": "Samtycke"}, required=False, validity_days=365,
        bodies={"sv": NEWSLETTER_SV}, actor="staff:s1", now=host.now(),
    )
    host.session().commit()
    [client] = _consented(host, tenant, 1)
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=host.now(),
                          note=None, purpose="newsletter")
    host.session().commit()
    host.advance(days=350)
    report = _send(host, tenant, smtp_server)
    assert report.renewals == 1 and len(_asking_mail(smtp_server)) == 1
    [req] = _requests(host, tenant)
    assert req.created_by == "system:renewal"
    assert req.purpose_majors == {"care": 1, "newsletter": 1}
    _answer(host, _renewal_mail(smtp_server)[0].link()[1], decision_care="accept",
            decision_newsletter="decline")
    host.advance(days=20)
    assert _status(host, tenant, client) is Status.VALID
    assert _status(host, tenant, client, "newsletter") is Status.REFUSED


def test_two_relays_at_once_ask_each_due_consent_once(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    clients = _consented(host, tenant, 30)
    host.advance(days=340)
    relays = [TestHost(host.engine) for _ in range(3)]
    reports: list[SendReport] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(relays))

    def run(relay: TestHost) -> None:
        relay.practices, relay.clients, relay.clock = host.practices, host.clients, host.clock
        try:
            barrier.wait()
            reports.append(send_due(relay, tenant=tenant, transport=smtp_server.transport(),
                                    policy=POLICY, limit=1000))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            relay.close()

    threads = [threading.Thread(target=run, args=(r,)) for r in relays]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert errors == []
    assert sum(r.renewals for r in reports) == 30
    _send(host, tenant, smtp_server)  # whatever a relay left queued
    received = sorted(m.rcpt_tos[0] for m in _asking_mail(smtp_server))
    assert received == sorted(f"k{i}@example.org" for i in range(30))
    requests = _requests(host, tenant)
    assert sorted(r.client_ref for r in requests) == sorted(clients)


_KILLED_RELAY = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import datetime
    sys.path.insert(0, sys.argv[1])
    from hostkit import TestHost
    from hookspecs.types import ClientInfo, PracticeInfo
    from samtycke_plugin.db import make_engine
    from samtycke_plugin.email import renewals
    from samtycke_plugin.email.relay import send_due

    class DiesMidRun(TestHost):
        looked_up = 0
        def lookup_client(self, tenant, client):
            DiesMidRun.looked_up += 1
            if DiesMidRun.looked_up == 7:   # in the third chunk, its rows claimed
                os.kill(os.getpid(), signal.SIGKILL)
            return super().lookup_client(tenant, client)

    host = DiesMidRun(make_engine(sys.argv[2]))
    tenant = sys.argv[3]
    host.clock = datetime.fromisoformat(sys.argv[4])
    host.practices[tenant] = PracticeInfo(ref=tenant, name="Kliniken Lugn & Ro",
                                          email="info@lugnochro.example", phone=None, locale="sv")
    for i, ref in enumerate(sys.argv[5:]):
        host.clients[(tenant, ref)] = ClientInfo(ref=ref, name=f"Klient k{i}",
                                                 email=f"k{i}@example.org", locale="sv")
    renewals.CHUNK = 3
    send_due(host, tenant=tenant)   # the relay: renewal work first, then mail
    sys.exit(0)
    """
)


def test_a_relay_killed_mid_run_leaves_each_due_consent_asked_once(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    clients = _consented(host, tenant, 12)
    host.advance(days=340)
    host.close()
    url = host.engine.url.render_as_string(hide_password=False)
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_RELAY, str(TESTS), url, tenant, host.clock.isoformat(),
         *clients],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # Two chunks were committed whole, the third not at all.
    done = host.session().scalar(select(func.count()).select_from(RenewalAsked)
                                 .where(RenewalAsked.tenant_ref == tenant))
    assert done == 6
    assert len(_requests(host, tenant)) == 6

    report = _send(host, tenant, smtp_server)  # the next relay
    assert report.renewals == 6 and len(_asking_mail(smtp_server)) == 12
    assert _send(host, tenant, smtp_server).sent == 0
    received = sorted(m.rcpt_tos[0] for m in _asking_mail(smtp_server))
    assert received == sorted(f"k{i}@example.org" for i in range(12))
    assert sorted(r.client_ref for r in _requests(host, tenant)) == sorted(clients)


def test_one_reminder_for_an_unanswered_request_none_for_an_answered_one(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    quiet, answers = host.new_client(tenant, email="quiet@example.org"), host.new_client(
        tenant, email="answers@example.org")
    for ref in (quiet, answers):
        mail_requests.send_request(host, tenant, ref, actor="staff:s1")
    host.session().commit()
    assert _send(host, tenant, smtp_server).sent == 2
    by_addr = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    _answer(host, by_addr["answers@example.org"].link()[1])

    host.advance(days=6, hours=23)
    assert _send(host, tenant, smtp_server).reminders == 0
    host.advance(hours=1)
    report = _send(host, tenant, smtp_server)
    assert report.reminders == 1
    [reminder] = [m for m in smtp_server.messages
                  if str(m.message["Subject"]).startswith("Påminnelse")]
    assert reminder.rcpt_tos == ["quiet@example.org"]
    # The same link as the request: answering either is the one answer.
    assert reminder.link() == by_addr["quiet@example.org"].link()
    for _ in range(2):
        host.advance(days=1)
        assert _send(host, tenant, smtp_server).reminders == 0
    # The quiet client got the request and one reminder; the one who answered got the
    # request and the receipt of the answer.
    subjects = {(m.rcpt_tos[0], str(m.message["Subject"])[:6]) for m in smtp_server.messages}
    assert len(smtp_server.messages) == 4
    assert ("quiet@example.org", "Påminn") in subjects
    assert all(not s.startswith("Påminn") for a, s in subjects if a == "answers@example.org")
    _answer(host, reminder.link()[1])
    assert _status(host, tenant, quiet) is Status.VALID


def test_no_reminder_when_reminders_are_off_the_mail_bounced_or_the_client_is_gone(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    off = _practice(host, request_link_days=30, remind_after_days=0)
    on = _practice(host, request_link_days=30)
    refs = {}
    for tenant in (off, on):
        for who in ("bounce", "gone", "fine"):
            refs[(tenant, who)] = host.new_client(tenant, email=f"{who}@example.org")
            mail_requests.send_request(host, tenant, refs[(tenant, who)], actor="staff:s1")
    host.session().commit()
    smtp_server.handler.rcpt_replies["bounce@example.org"] = "550 5.1.1 No such user"
    for tenant in (off, on):
        _send(host, tenant, smtp_server)
    del host.clients[(on, refs[(on, "gone")])]
    sent_before = len(smtp_server.messages)
    host.advance(days=8)
    reports = [_send(host, tenant, smtp_server) for tenant in (off, on)]
    assert [r.reminders for r in reports] == [0, 1]
    assert [m.rcpt_tos[0] for m in smtp_server.messages[sent_before:]] == ["fine@example.org"]
    assert run_renewals(host, tenant=on).reminders == 0


def _renewed(host: TestHost, tenant: str) -> int:
    host.session().rollback()
    return int(host.session().scalar(select(func.count()).select_from(RenewalAsked).where(
        RenewalAsked.tenant_ref == tenant, RenewalAsked.outcome == "asked")) or 0)


def test_a_practice_whose_work_fails_holds_up_neither_the_others_nor_the_mail(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    broken, fine = _practice(host), _practice(host)
    tag = broken[-6:]  # the database may hold other tests' practices: their mail is not ours
    _consented(host, broken, 2, prefix=f"b{tag}-")
    _consented(host, fine, 2, prefix=f"f{tag}-")
    host.advance(days=340)
    waiting = host.new_client(fine, email=f"w{tag}@example.org")
    mail_requests.send_request(host, fine, waiting, actor="staff:s1")
    host.session().commit()
    lookup = host.lookup_client

    def failing(tenant: str, client: str) -> object:
        if tenant == broken:
            raise RuntimeError("the host's client table is unreachable")
        return lookup(tenant, client)  # type: ignore[arg-type]

    def ours() -> list[str]:
        return sorted(m.rcpt_tos[0] for m in _asking_mail(smtp_server) if tag in m.rcpt_tos[0])

    host.lookup_client = failing  # type: ignore[assignment, method-assign]
    send_due(host, transport=smtp_server.transport(), policy=POLICY, limit=10_000)
    assert (_renewed(host, broken), _renewed(host, fine)) == (0, 2)
    assert ours() == [f"f{tag}-0@example.org", f"f{tag}-1@example.org", f"w{tag}@example.org"]
    # Nothing of the failed practice was committed: it is done once the host is back.
    host.lookup_client = lookup  # type: ignore[method-assign]
    send_due(host, transport=smtp_server.transport(), policy=POLICY, limit=10_000)
    assert _renewed(host, broken) == 2
    assert ours() == sorted([f"b{tag}-0@example.org", f"b{tag}-1@example.org",
                             f"f{tag}-0@example.org", f"f{tag}-1@example.org",
                             f"w{tag}@example.org"])


def test_erasing_a_client_removes_their_renewal_and_reminder_rows(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    from samtycke_plugin.models import ReminderSent

    tenant = _practice(host)
    client, other = _consented(host, tenant, 2)
    host.advance(days=340)
    assert _send(host, tenant, smtp_server).renewals == 2
    host.advance(days=7)
    assert _send(host, tenant, smtp_server).reminders == 2

    def rows(model: type) -> list[str]:
        host.session().rollback()
        if model is RenewalAsked:
            return sorted(host.session().scalars(select(RenewalAsked.client_ref).where(
                RenewalAsked.tenant_ref == tenant)))
        return sorted(host.session().scalars(
            select(ConsentRequest.client_ref).join(
                ReminderSent, ReminderSent.request_id == ConsentRequest.id)
            .where(ReminderSent.tenant_ref == tenant)))

    assert rows(RenewalAsked) == rows(ReminderSent) == sorted([client, other])
    erasure.erase_client(host, tenant, client)
    host.session().commit()
    assert rows(RenewalAsked) == rows(ReminderSent) == [other]
    host.session().rollback()
    assert host.session().scalar(select(func.count()).select_from(ReminderSent).where(
        ReminderSent.tenant_ref == tenant)) == 1

"""The outbox relay against a real SMTP server (aiosmtpd): SMTP down, 4xx retried with
growing delays, 5xx bounced onto the badge, a relay killed after the server accepted,
the host's own mailer, TLS and login, give-up, key rotation, header injection."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hostkit import TestHost
from smtp_support import (
    LINK_RE,
    Browser,
    SmtpServer,
    form_fields,
    path_of,
    running_server,
    self_signed,
    start_or_skip,
)
from sqlalchemy import func, select

from hookspecs.types import DeliveryResult, PracticeInfo
from samtycke_plugin import consent, panels
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.email import tokens
from samtycke_plugin.email.relay import SendReport, send_due
from samtycke_plugin.email.transport import MailConfigError, RetryPolicy, SmtpSettings
from samtycke_plugin.errors import InputError
from samtycke_plugin.models import ConsentEvent, ConsentRequest, OutboxMessage

POLICY = RetryPolicy(initial=60, maximum=3600, jitter=30, give_up=timedelta(hours=72),
                     lease=timedelta(seconds=600))
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


def _practice(host: TestHost, **settings: object) -> str:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, **settings)
    return tenant


def _ask(host: TestHost, tenant: str, **client: object) -> tuple[str, ConsentRequest]:
    ref = host.new_client(tenant, **client)  # type: ignore[arg-type]
    req = mail_requests.send_request(host, tenant, ref, actor="staff:s1")
    host.session().commit()
    return ref, req


def _outbox(host: TestHost, tenant: str) -> list[OutboxMessage]:
    host.session().rollback()
    return list(
        host.session().scalars(
            select(OutboxMessage)
            .where(OutboxMessage.tenant_ref == tenant)
            .order_by(OutboxMessage.id)
        )
    )


def _send(host: TestHost, tenant: str, server: SmtpServer) -> SendReport:
    return send_due(host, tenant=tenant, transport=server.transport(), policy=POLICY)


def _request(host: TestHost, req_id: int) -> ConsentRequest:
    host.session().rollback()
    row = host.session().get(ConsentRequest, req_id, populate_existing=True)
    assert row is not None
    return row


def test_smtp_down_keeps_the_request_and_sends_exactly_one_mail_when_it_is_back(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    smtp_server.stop()
    client, req = _ask(host, tenant)
    assert consent.client_status(host, tenant, client).status.value == "requested"

    report = _send(host, tenant, smtp_server)
    assert (report.sent, report.retried) == (0, 1)
    [row] = _outbox(host, tenant)
    assert (row.status, row.attempts) == ("retry", 1)
    assert "could not reach the mail server" in (row.last_error or "")
    assert row.next_attempt_at >= host.now() + timedelta(seconds=60)
    assert _request(host, req.id).delivery == "retry"

    start_or_skip(smtp_server)
    # Not due yet: nothing is sent before the backoff has passed.
    assert _send(host, tenant, smtp_server).handled == 0
    host.advance(seconds=91)
    report = _send(host, tenant, smtp_server)
    assert report.sent == 1
    host.advance(days=1)
    assert _send(host, tenant, smtp_server).handled == 0
    assert len(smtp_server.messages) == 1
    [row] = _outbox(host, tenant)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)
    assert smtp_server.messages[0].message["Message-ID"] == row.message_id
    assert _request(host, req.id).delivery == "sent"


def test_4xx_replies_are_retried_with_growing_delays_then_delivered(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    _ask(host, tenant)
    smtp_server.handler.data_replies.extend(
        ["451 4.3.0 Try again later", "421 4.7.0 Too busy, closing", "452 4.3.1 Out of memory"]
    )
    delays = []
    for _ in range(3):
        report = _send(host, tenant, smtp_server)
        assert (report.sent, report.retried, report.bounced) == (0, 1, 0)
        [row] = _outbox(host, tenant)
        assert row.status == "retry" and "try later" in (row.last_error or "")
        delays.append((row.next_attempt_at - host.now()).total_seconds())
        host.advance(seconds=delays[-1])
    # 60 s, 120 s, 240 s, each with up to 30 s of jitter: always growing.
    assert 60 <= delays[0] <= 90 < 120 <= delays[1] <= 150 < 240 <= delays[2] <= 270
    report = _send(host, tenant, smtp_server)
    assert report.sent == 1
    assert smtp_server.handler.data_attempts == 4 and len(smtp_server.messages) == 1
    [row] = _outbox(host, tenant)
    assert (row.status, row.attempts) == ("sent", 4)
    # A transient refusal at RCPT (450) is retried too.
    other_client, _ = _ask(host, tenant, email="greylisted@example.org")
    smtp_server.handler.rcpt_replies["greylisted@example.org"] = "450 4.2.0 Greylisted"
    report = _send(host, tenant, smtp_server)
    assert report.retried == 1
    assert consent.client_status(host, tenant, other_client).status.value == "requested"


def test_550_at_rcpt_bounces_without_retry_and_the_badge_says_address_rejected(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    smtp_server.handler.rcpt_replies["gone@example.org"] = "550 5.1.1 No such user here"
    client, req = _ask(host, tenant, email="gone@example.org")
    report = _send(host, tenant, smtp_server)
    assert (report.sent, report.retried, report.bounced) == (0, 0, 1)
    [row] = _outbox(host, tenant)
    assert (row.status, row.attempts) == ("bounced", 1)
    assert "550" in (row.last_error or "")
    assert _request(host, req.id).delivery == "bounced"
    assert consent.client_status(host, tenant, client).status.value == "bounced"
    [badge] = panels.row_badges(host, tenant, [client], "en")
    assert (badge.label, badge.tone) == ("Address rejected", "error")
    [badge_sv] = panels.row_badges(host, tenant, [client], "sv")
    assert badge_sv.label != "Address rejected"  # translated
    host.advance(days=3)
    assert _send(host, tenant, smtp_server).handled == 0
    assert smtp_server.messages == [] and smtp_server.handler.data_attempts == 0
    # A new request (corrected address) clears the badge.
    host.clients[(tenant, client)] = host.clients[(tenant, client)].__class__(
        ref=client, name="Anna Svensson", email="anna.ny@example.org", locale="sv"
    )
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    assert consent.client_status(host, tenant, client).status.value == "requested"


def test_554_after_data_bounces(host: TestHost, smtp_server: SmtpServer) -> None:
    tenant = _practice(host)
    client, _ = _ask(host, tenant)
    smtp_server.handler.data_replies.append("554 5.7.1 Message rejected")
    report = _send(host, tenant, smtp_server)
    assert report.bounced == 1
    assert consent.client_status(host, tenant, client).status.value == "bounced"


def _kill_script(url: str, tenant: str, practice: PracticeInfo, port: int) -> str:
    return textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(TESTS)!r})
        from hostkit import TestHost
        from hookspecs.types import PracticeInfo
        from samtycke_plugin.db import make_engine
        from samtycke_plugin.email.relay import send_due
        from samtycke_plugin.email.transport import SmtpSettings, SmtpTransport

        class DiesAfterAccept(SmtpTransport):
            def send(self, message):
                super().send(message)   # the server answered 250
                os._exit(137)           # the relay dies before it records "sent"

        host = TestHost(make_engine({url!r}))
        host.practices[{tenant!r}] = PracticeInfo(
            ref={tenant!r}, name={practice.name!r}, email={practice.email!r},
            phone={practice.phone!r}, locale="sv")
        settings = SmtpSettings(host="127.0.0.1", port={port}, security="none",
                                from_addr="noreply@samtycke.example.org", timeout=5)
        send_due(host, tenant={tenant!r}, transport=DiesAfterAccept(settings))
        sys.exit(0)
        """
    )


def test_relay_killed_after_the_server_accepted_sends_a_duplicate_with_the_same_link_only(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    client, req = _ask(host, tenant)
    url = host.engine.url.render_as_string(hide_password=False)
    script = _kill_script(url, tenant, host.practices[tenant], smtp_server.port)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 137, proc.stderr
    assert len(smtp_server.messages) == 1
    [row] = _outbox(host, tenant)
    assert row.status == "sending"  # claimed, never recorded as sent

    # The claim is a lease: no other relay sends it while it may still be in flight.
    assert _send(host, tenant, smtp_server).handled == 0
    host.advance(seconds=601)
    report = _send(host, tenant, smtp_server)
    assert report.sent == 1
    first, second = smtp_server.messages
    assert first.message["Message-ID"] == second.message["Message-ID"] == row.message_id
    assert first.link() == second.link()
    [row] = _outbox(host, tenant)
    assert (row.status, row.attempts) == ("sent", 2)

    # The client clicks in both copies: one consent.
    _, token = first.link()
    a, b = Browser(host), Browser(host)
    form_a = form_fields(a.get(path_of("c", token)).text)
    form_b = form_fields(b.get(path_of("c", token)).text)
    assert a.post(path_of("c", token), data={**form_a, "decision": "accept"}).status_code == 200
    again = b.post(path_of("c", token), data={**form_b, "decision": "accept"})
    assert "redan registrerat" in again.text
    host.session().rollback()
    states = host.session().scalars(
        select(ConsentEvent.state)
        .where(ConsentEvent.tenant_ref == tenant)
        .order_by(ConsentEvent.seq)
    ).all()
    assert states == ["requested", "given"]
    assert _request(host, req.id).delivery == "sent"
    assert consent.client_status(host, tenant, client).status.value == "valid"


def test_mail_for_a_link_used_meanwhile_is_not_sent_again(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    _, req = _ask(host, tenant)
    smtp_server.handler.data_replies.append("451 4.3.0 Later")
    _send(host, tenant, smtp_server)
    # The practice resends after a while: the old link is revoked, its mail cancelled.
    host.advance(minutes=5)
    client = _outbox(host, tenant)[0].client_ref
    assert client is not None
    new = mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    old_row, new_row = _outbox(host, tenant)
    assert old_row.status == "cancelled" and new_row.status == "queued"
    host.advance(hours=1)
    report = _send(host, tenant, smtp_server)
    assert (report.sent, report.cancelled) == (1, 0)
    [mail] = smtp_server.messages
    _, token = mail.link()
    assert tokens.token_hash(token) == _request(host, new.id).token_hash
    assert _request(host, req.id).revoked_at is not None


def test_the_hosts_mailer_is_used_when_it_delivers(host: TestHost, smtp_server: SmtpServer) -> None:
    tenant = _practice(host)
    answers = iter(
        [DeliveryResult(status="retry", detail="queue full"), DeliveryResult(status="sent")]
    )
    host.mailer = lambda message: next(answers)
    client, req = _ask(host, tenant, locale="en")
    report = _send(host, tenant, smtp_server)
    assert report.retried == 1 and _outbox(host, tenant)[0].last_error == "queue full"
    host.advance(hours=1)
    assert _send(host, tenant, smtp_server).sent == 1
    assert smtp_server.messages == []  # the host delivered, not the built-in transport
    first, second = host.mail
    assert first == second  # a resend is the same message: same id, same link
    assert first.to == "anna@example.org"
    assert first.message_id == _outbox(host, tenant)[0].message_id
    assert "asks for your consent" in first.subject and first.html and "<img" not in first.html
    assert first.headers["Reply-To"] == "info@lugnochro.example"
    [(purpose, token)] = set(LINK_RE.findall(first.text))
    assert purpose == "c" and token in (first.html or "")
    assert tokens.token_hash(token) == _request(host, req.id).token_hash
    # A rejection by the host's mailer is a bounce.
    host.mailer = lambda message: DeliveryResult(status="rejected", detail="550 no such user")
    bounced_client, _ = _ask(host, tenant)
    assert send_due(host, tenant=tenant, policy=POLICY).bounced == 1
    assert consent.client_status(host, tenant, bounced_client).status.value == "bounced"
    # A mailer that raises is retried later (and the error is not a crash).
    host.mailer = lambda message: 1 / 0
    _ask(host, tenant)
    assert send_due(host, tenant=tenant, policy=POLICY).retried == 1
    del client


def test_starttls_with_login_verifies_the_certificate(
    host: TestHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = self_signed(tmp_path)
    server = start_or_skip(
        SmtpServer(security="starttls", cert=cert, credentials=("relay-user", "s3cret"))
    )
    try:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        tenant = _practice(host)
        _ask(host, tenant)
        report = send_due(host, tenant=tenant, policy=POLICY)  # settings from the environment
        assert report.sent == 1, _outbox(host, tenant)[0].last_error
        assert server.logins == ["relay-user"] and len(server.messages) == 1
        # Without the CA the certificate is not trusted: retried, never sent in clear.
        monkeypatch.delenv("SAMTYCKE_SMTP_CA_FILE")
        _ask(host, tenant)
        report = send_due(host, tenant=tenant, policy=POLICY)
        assert report.retried == 1 and "TLS" in (_outbox(host, tenant)[-1].last_error or "")
        assert len(server.messages) == 1
    finally:
        server.stop()


def test_implicit_tls(host: TestHost, tmp_path: Path) -> None:
    cert = self_signed(tmp_path)
    server = start_or_skip(SmtpServer(security="ssl", cert=cert))
    try:
        tenant = _practice(host)
        _ask(host, tenant)
        assert send_due(host, tenant=tenant, transport=server.transport(), policy=POLICY).sent == 1
        assert len(server.messages) == 1
    finally:
        server.stop()


def test_smtp_settings_from_the_environment_are_checked() -> None:
    with pytest.raises(MailConfigError, match="SAMTYCKE_SMTP_HOST"):
        SmtpSettings.from_env({})
    base = {
        "SAMTYCKE_SMTP_HOST": "mail.example.org",
        "SAMTYCKE_SMTP_FROM": "Praktik <no@example.org>",
    }
    settings = SmtpSettings.from_env(base)
    assert (settings.port, settings.security) == (587, "starttls")
    assert settings.from_addr == "no@example.org"
    assert SmtpSettings.from_env({**base, "SAMTYCKE_SMTP_SECURITY": "ssl"}).port == 465
    assert "s3cret" not in repr(SmtpSettings.from_env({**base, "SAMTYCKE_SMTP_PASSWORD": "s3cret"}))
    for bad in (
        {"SAMTYCKE_SMTP_SECURITY": "tls1.0"},
        {"SAMTYCKE_SMTP_PORT": "99999"},
        {"SAMTYCKE_SMTP_FROM": "not an address"},
        {"SAMTYCKE_SMTP_TIMEOUT": "-1"},
    ):
        with pytest.raises(MailConfigError):
            SmtpSettings.from_env({**base, **bad})


def test_unconfigured_smtp_is_reported_and_the_mail_waits(
    host: TestHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("SAMTYCKE_SMTP_"):
            monkeypatch.delenv(key)
    tenant = _practice(host)
    _ask(host, tenant)
    _ask(host, tenant)
    report = send_due(host, tenant=tenant, policy=POLICY)
    assert report.retried == 2 and len(report.problems) == 1
    assert "SAMTYCKE_SMTP_HOST" in report.problems[0]
    assert {row.status for row in _outbox(host, tenant)} == {"retry"}


def test_relay_gives_up_after_the_give_up_age(host: TestHost, smtp_server: SmtpServer) -> None:
    tenant = _practice(host)
    client, req = _ask(host, tenant)
    smtp_server.stop()
    attempts = 0
    while True:
        report = _send(host, tenant, smtp_server)
        if report.failed:
            break
        attempts += report.retried
        host.advance(hours=2)
        assert attempts < 60
    [row] = _outbox(host, tenant)
    assert row.status == "failed" and "gave up" in (row.last_error or "")
    assert host.now() - row.created_at > timedelta(hours=72)
    assert _request(host, req.id).delivery == "failed"
    host.advance(days=5)
    assert _send(host, tenant, smtp_server).handled == 0
    del client


def test_rotated_secret_fails_queued_mail_instead_of_sending_dead_links(
    host: TestHost, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = _practice(host)
    _, sent_req = _ask(host, tenant)
    _send(host, tenant, smtp_server)
    _, token = smtp_server.messages[0].link()
    _, queued = _ask(host, tenant)
    monkeypatch.setattr(host, "app_secret", lambda app: b"a-new-secret-after-rotation-0123456789")
    report = _send(host, tenant, smtp_server)
    assert (report.sent, report.failed) == (0, 1)
    assert "new request" in (_outbox(host, tenant)[-1].last_error or "")
    assert len(smtp_server.messages) == 1
    # The link mailed before the rotation no longer opens.
    assert Browser(host).get(path_of("c", token)).status_code == 404
    del sent_req, queued


def test_header_injection_in_names_is_refused_and_nothing_is_queued(host: TestHost) -> None:
    tenant = _practice(host)
    evil = host.new_client(tenant, name="Eve\r\nBcc: everyone@example.org", email="eve@example.org")
    with pytest.raises(InputError) as info:
        mail_requests.send_request(host, tenant, evil, actor="staff:s1")
    assert info.value.field == "name" and "line break" in str(info.value)
    host.session().rollback()
    bad_mail = host.new_client(tenant, email="eve@example.org\nBcc: x@example.org")
    with pytest.raises(InputError) as info:
        mail_requests.send_request(host, tenant, bad_mail, actor="staff:s1")
    assert info.value.field == "email"
    host.session().rollback()
    host.practices[tenant] = PracticeInfo(
        ref=tenant, name="Kliniken\nBcc: x@example.org", email=None, phone=None, locale="sv"
    )
    good = host.new_client(tenant)
    with pytest.raises(InputError) as info:
        mail_requests.send_request(host, tenant, good, actor="staff:s1")
    assert info.value.field == "practice_name"
    host.session().rollback()
    for model in (ConsentRequest, OutboxMessage, ConsentEvent):
        count = host.session().scalar(
            select(func.count()).select_from(model).where(model.tenant_ref == tenant)
        )
        assert count == 0, model


def test_a_practice_renamed_with_a_line_break_after_queueing_is_not_sent(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = _practice(host)
    _ask(host, tenant)
    host.practices[tenant] = PracticeInfo(
        ref=tenant, name="Kliniken\r\nBcc: x@example.org", email=None, phone=None, locale="sv"
    )
    report = _send(host, tenant, smtp_server)
    assert report.failed == 1 and smtp_server.messages == []
    assert "line break" in (_outbox(host, tenant)[0].last_error or "")


def test_the_relay_without_tenant_serves_every_practice_and_throttles(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    t1, t2 = _practice(host), _practice(host)
    addresses = {f"k{i}-{t}@example.org" for i in range(3) for t in (t1, t2)}
    for address in sorted(addresses):
        _ask(host, t1 if t1 in address else t2, email=address)
    started = time.monotonic()
    send_due(host, transport=smtp_server.transport(), policy=POLICY, limit=10_000, rate=25)
    elapsed = time.monotonic() - started
    received = {m.rcpt_tos[0] for m in smtp_server.messages}
    assert addresses <= received
    # Throttled to 25 mails a second: at least (n - 1) / 25 seconds for n mails.
    assert elapsed >= (len(smtp_server.messages) - 1) / 25


def test_two_relays_at_once_send_each_message_once(host: TestHost, smtp_server: SmtpServer) -> None:
    import threading

    tenant = _practice(host)
    for i in range(40):
        _ask(host, tenant, email=f"r{i}@example.org")
    relays = [TestHost(host.engine) for _ in range(3)]
    for relay in relays:
        relay.practices = host.practices
    reports: list[SendReport] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(relays))

    def run(relay: TestHost) -> None:
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
    assert sum(r.sent for r in reports) == 40
    received = [m.rcpt_tos[0] for m in smtp_server.messages]
    assert sorted(received) == sorted(f"r{i}@example.org" for i in range(40))
    assert {row.status for row in _outbox(host, tenant)} == {"sent"}

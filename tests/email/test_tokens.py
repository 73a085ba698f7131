"""Link tokens as capabilities (S2-S5, S7, S11): forged, mutated, expired, reused,
revoked, other-practice, other-version and other-purpose links are refused with the
same page and write nothing; CSRF and cross-site posts are refused; failed attempts
are rate-limited per source."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hostkit import TestHost
from smtp_support import Browser, SmtpServer, form_fields, path_of, running_server
from sqlalchemy import func, select

from samtycke_plugin import consent, practices
from samtycke_plugin.email import addresses, tokens
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.email.relay import send_due
from samtycke_plugin.models import ConsentEvent, ConsentRequest, TextVersion
from samtycke_plugin.web import public


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


@pytest.fixture(autouse=True)
def _fresh_limiter() -> Iterator[None]:
    public.LIMITER.reset()
    yield
    public.LIMITER.reset()


class Sent:
    """A practice, a client and the consent link mailed to them."""

    def __init__(self, host: TestHost, server: SmtpServer, **settings: object) -> None:
        hooks = host.hooks()
        self.host = host
        self.tenant = host.new_tenant()
        host.activate(hooks, self.tenant, **settings)
        self.client = host.new_client(self.tenant)
        self.request = mail_requests.send_request(host, self.tenant, self.client, actor="staff:s1")
        host.session().commit()
        before = len(server.messages)
        send_due(host, tenant=self.tenant, transport=server.transport())
        _, self.token = server.messages[before].link()

    def events(self) -> int:
        self.host.session().rollback()
        return int(
            self.host.session().scalar(
                select(func.count()).select_from(ConsentEvent).where(
                    ConsentEvent.tenant_ref == self.tenant
                )
            )
            or 0
        )

    def row(self) -> ConsentRequest:
        self.host.session().rollback()
        row = self.host.session().get(ConsentRequest, self.request.id, populate_existing=True)
        assert row is not None
        return row


def _invalid_body(browser: Browser, token: str, letter: str = "c") -> str:
    response = browser.get(path_of(letter, token))
    assert response.status_code == 404
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Den här länken kan inte användas" in response.text
    return response.text


def test_tokens_are_256_bit_random_and_stored_only_as_hashes(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    sent = Sent(host, smtp_server)
    assert tokens.TOKEN_RE.match(sent.token) and len(sent.token) == 43  # 256 bits
    row = sent.row()
    assert row.token_hash == tokens.token_hash(sent.token) and sent.token not in row.token_hash
    assert row.nonce != sent.token and len(row.nonce) >= 43
    other = Sent(host, smtp_server)
    assert other.token != sent.token
    assert row.expires_at - row.created_at == timedelta(days=14)


def test_message_ids_are_unique_well_formed_and_grow_with_time() -> None:
    """A Message-ID is ``<local@domain>`` with a dot-atom local part, never repeats (the
    outbox's unique index), and starts with the time, so a batch's rows land at the end
    of that index instead of on a random page each."""
    from email.headerregistry import HeaderRegistry

    ids = [addresses.message_id("praktik.example") for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    parsed = HeaderRegistry()("Message-ID", ids[0])
    assert str(parsed) == ids[0] and not parsed.defects
    assert all(re.fullmatch(r"<samtycke\.[0-9a-f]+\.[0-9a-f]{16}@praktik\.example>", i)
               for i in ids)
    stamps = [int(i.split(".")[1], 16) for i in ids]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]


def test_forged_mutated_and_malformed_tokens_get_one_page_and_write_nothing(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    sent = Sent(host, smtp_server)
    browser = Browser(host)
    flipped = sent.token[:-1] + ("A" if sent.token[-1] != "A" else "B")
    bodies = {
        _invalid_body(browser, secrets.token_urlsafe(32)),
        _invalid_body(browser, flipped),
        _invalid_body(browser, sent.token[:-1]),
        _invalid_body(browser, sent.token + "x"),
        _invalid_body(browser, "x" * 5000),
        _invalid_body(browser, "%00%0d%0aSet-Cookie:%20a=b"),
        _invalid_body(browser, sent.token, "w"),  # a consent token on the withdrawal page
    }
    assert len(bodies) == 1  # the same answer whatever was wrong
    for bad in (flipped, secrets.token_urlsafe(32)):
        post = browser.post(path_of("c", bad), data={"decision": "accept", "text": "1"})
        assert post.status_code == 404
    assert sent.events() == 1 and sent.row().used_at is None
    assert browser.head(path_of("c", flipped)).status_code == 404


def test_expired_and_revoked_links_get_the_same_page_as_unknown_ones(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    browser = Browser(host)
    unknown = _invalid_body(browser, secrets.token_urlsafe(32))

    expiring = Sent(host, smtp_server)
    host.advance(days=14, seconds=-1)
    assert browser.get(path_of("c", expiring.token)).status_code == 200  # still valid
    form = form_fields(browser.get(path_of("c", expiring.token)).text)
    host.advance(seconds=1)
    assert _invalid_body(browser, expiring.token) == unknown
    late = browser.post(path_of("c", expiring.token), data={**form, "decision": "accept"})
    assert late.status_code == 404 and late.text == unknown
    assert expiring.events() == 1 and expiring.row().used_at is None

    revoked = Sent(host, smtp_server)
    host.advance(minutes=5)
    mail_requests.send_request(host, revoked.tenant, revoked.client, actor="staff:s1")
    host.session().commit()
    assert revoked.row().revoked_at is not None
    assert _invalid_body(browser, revoked.token) == unknown


def test_a_used_link_cannot_be_replayed_even_after_withdrawal(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    sent = Sent(host, smtp_server)
    browser = Browser(host)
    form = form_fields(browser.get(path_of("c", sent.token)).text)
    assert browser.post(path_of("c", sent.token), data={**form, "decision": "accept"}).status_code == 200
    consent.withdraw(host, sent.tenant, sent.client, actor="staff:s1", channel="manual",
                     method="phone", by_client=True)
    host.session().commit()
    replay = browser.post(path_of("c", sent.token), data={**form, "decision": "accept"})
    assert replay.status_code == 200 and "redan registrerat" in replay.text
    assert sent.events() == 3  # requested, given, withdrawn: the replay added nothing
    assert consent.client_status(host, sent.tenant, sent.client).status.value == "withdrawn"


def test_tokens_are_bound_to_practice_client_purpose_and_text_version(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    sent = Sent(host, smtp_server)
    other = Sent(host, smtp_server)
    row = sent.row()
    key = tokens.link_key(host)
    assert tokens.token_for(key, row) == sent.token

    def variant(**change: object) -> str:
        fields = {
            "tenant": row.tenant_ref, "client": row.client_ref, "purpose": row.purpose,
            "text_version_id": row.text_version_id, "nonce": row.nonce,
        }
        fields.update(change)
        return tokens.derive_token(key, **fields)  # type: ignore[arg-type]

    browser = Browser(host)
    other_text = host.session().scalars(
        select(TextVersion.id).where(TextVersion.tenant_ref == sent.tenant, TextVersion.language == "en")
    ).one()
    for forged in (
        variant(tenant=other.tenant),
        variant(client=other.client),
        variant(purpose="withdraw"),
        variant(text_version_id=other_text),
        tokens.derive_token(b"k" * 32, tenant=row.tenant_ref, client=row.client_ref,
                              purpose=row.purpose, text_version_id=row.text_version_id,
                              nonce=row.nonce),
    ):
        assert forged != sent.token
        _invalid_body(browser, forged)
        _invalid_body(browser, forged, "w")
    assert sent.events() == 1 and other.events() == 1


def test_a_tampered_text_version_in_the_form_is_refused(host: TestHost, smtp_server: SmtpServer) -> None:
    sent = Sent(host, smtp_server)
    other = Sent(host, smtp_server)
    browser = Browser(host)
    form = form_fields(browser.get(path_of("c", sent.token)).text)
    foreign_text = host.session().scalars(
        select(TextVersion.id).where(TextVersion.tenant_ref == other.tenant)
    ).first()
    for text in (str(foreign_text), "0", "abc", "9" * 30, ""):
        response = browser.post(path_of("c", sent.token), data={**form, "text": text, "decision": "accept"})
        assert response.status_code == 400
    bad_decision = browser.post(path_of("c", sent.token), data={**form, "decision": "maybe"})
    assert bad_decision.status_code == 400
    assert sent.events() == 1 and sent.row().used_at is None
    ok = browser.post(path_of("c", sent.token), data={**form, "decision": "accept"})
    assert ok.status_code == 200 and sent.events() == 2


def test_csrf_and_cross_site_posts_are_refused(host: TestHost, smtp_server: SmtpServer) -> None:
    sent = Sent(host, smtp_server)
    other = Sent(host, smtp_server)
    browser = Browser(host)
    form = form_fields(browser.get(path_of("c", sent.token)).text)
    other_form = form_fields(browser.get(path_of("c", other.token)).text)
    attempts = [
        ({"text": form["text"], "decision": "accept"}, {}),  # no CSRF token
        ({**form, "csrf_token": "x" * 43, "decision": "accept"}, {}),
        ({**form, "csrf_token": other_form["csrf_token"], "decision": "accept"}, {}),
        ({**form, "decision": "accept"}, {"Sec-Fetch-Site": "cross-site"}),
        ({**form, "decision": "accept"}, {"Origin": "https://evil.example"}),
    ]
    for data, headers in attempts:
        response = browser.post(path_of("c", sent.token), data=data, headers=headers)
        assert response.status_code == 403, (data, headers)
        assert "Öppna länken i meddelandet igen" in response.text
    assert sent.events() == 1 and sent.row().used_at is None
    # A same-origin post (and "Origin: null", which no-referrer pages send) is accepted.
    ok = browser.post(
        path_of("c", sent.token), data={**form, "decision": "accept"},
        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
    )
    assert ok.status_code == 200 and sent.events() == 2


def test_failed_attempts_are_rate_limited_per_source(
    host: TestHost, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A clock that stands still: no window boundary falls inside the test.
    monkeypatch.setattr(public, "LIMITER", public.SlidingWindowLimiter(5, 600, clock=lambda: 1e6))
    sent = Sent(host, smtp_server)
    guesser, client = Browser(host), Browser(host)
    for _ in range(5):
        assert guesser.get(path_of("c", secrets.token_urlsafe(32))).status_code == 404
    blocked = guesser.get(path_of("c", secrets.token_urlsafe(32)))
    assert blocked.status_code == 429 and "Vänta några minuter" in blocked.text
    # A real link is checked before the limit and always opens, also from that source
    # (a shared address); tests/email/test_links.py covers this in depth.
    assert guesser.get(path_of("c", sent.token)).status_code == 200
    assert guesser.get(path_of("c", secrets.token_urlsafe(32))).status_code == 429
    # Another source, the real client, is not locked out by the guesser.
    page = client.get(path_of("c", sent.token))
    assert page.status_code == 200
    assert client.post(
        path_of("c", sent.token), data={**form_fields(page.text), "decision": "accept"}
    ).status_code == 200
    # The window slides: old failures stop counting.
    limiter = public.SlidingWindowLimiter(2, 10)
    limiter.failure("a", now=0.0)
    limiter.failure("a", now=1.0)
    assert limiter.blocked("a", now=2.0) and not limiter.blocked("b", now=2.0)
    assert not limiter.blocked("a", now=11.5)  # the window slid past both failures


def test_links_of_a_deactivated_practice_do_not_work(host: TestHost, smtp_server: SmtpServer) -> None:
    sent = Sent(host, smtp_server)
    practices.deactivate(host, sent.tenant)
    host.session().commit()
    _invalid_body(Browser(host), sent.token)
    assert sent.events() == 1


def test_the_relay_will_not_send_a_link_that_expired_while_queued(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, request_link_days=1)
    client = host.new_client(tenant)
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    host.advance(days=1, seconds=1)
    report = send_due(host, tenant=tenant, transport=smtp_server.transport())
    assert (report.sent, report.cancelled) == (0, 1) and smtp_server.messages == []


def test_no_token_reaches_a_log(
    host: TestHost, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    sent = Sent(host, smtp_server)
    forged = secrets.token_urlsafe(32)
    browser = Browser(host)
    form = form_fields(browser.get(path_of("c", sent.token)).text)
    for token in (sent.token, forged):
        for suffix in ("", "/"):
            browser.get(path_of("c", token) + suffix)
            browser.post(path_of("w", token) + suffix, data={"decision": "withdraw"})
    browser.post(path_of("c", sent.token), data={**form, "decision": "accept"})
    browser.post(path_of("c", sent.token), data={**form, "decision": "accept"})  # used
    records = [r for r in caplog.records if r.name != "mail.log"]  # not the test server's trace
    assert any("unusable" in r.getMessage() for r in records)
    for record in records:
        text = record.getMessage() + str(record.args)
        assert sent.token not in text and forged not in text

"""Withdrawal links live as long as the consent they end, and the link pages' rate limit
never refuses a real link, on SQLite and PostgreSQL.

* A receipt's withdrawal link works after the practice deactivates the app (without
  reactivating it), years later, and after the practice changed its settings; a used
  or replaced link gets a clear page that says what to do.
* Only tokens that match no link count as failures: a source spraying random tokens,
  or many sources doing so, never keeps a real consent or withdrawal link from opening,
  and links whose consent ended (used, replaced, expired, of a deactivated practice)
  are not counted at all.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterator

import pytest
from hostkit import TestHost
from reliability_support import book, form_text_id
from smtp_support import Browser, SmtpServer, form_fields, path_of, running_server
from sqlalchemy import select

from hookspecs.facade import AppHooks
from hookspecs.types import BookingFormContext, ClientRef, TenantRef
from samtycke_plugin import consent, practice_texts, practices
from samtycke_plugin.access_log import Viewer
from samtycke_plugin.email import receipts as receipt_mail
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.email import tokens
from samtycke_plugin.email.relay import send_due
from samtycke_plugin.export import practice_status_csv
from samtycke_plugin.models import ConsentEvent, ConsentRequest, Practice
from samtycke_plugin.web import public
from samtycke_plugin.web.ratelimit import SlidingWindowLimiter

#: Who reads in these tests (each export records an access-log row).
READER = Viewer(actor="cli:tests", via="cli")


NOTHING_TO_WITHDRAW = "Det finns inget samtycke att återkalla"
ELSEWHERE = "Återkalla med länken i ditt senaste kvitto"
INVALID = "Den här länken kan inte användas"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


#: The shipped limits (``public.MAX_FAILURES``, ``MAX_FAILURES_TOTAL``, ``WINDOW_SECONDS``).
PER_SOURCE, TOTAL, WINDOW = 30, 1000, 600.0


@pytest.fixture(autouse=True)
def limiter(monkeypatch: pytest.MonkeyPatch) -> SlidingWindowLimiter:
    """The pages' limiter with the shipped limits and a clock that stands still, so no
    window boundary falls inside a test."""
    fresh = SlidingWindowLimiter(PER_SOURCE, WINDOW, total_limit=TOTAL, clock=lambda: 1e6)
    monkeypatch.setattr(public, "LIMITER", fresh)
    return fresh


def test_the_shipped_limits() -> None:
    assert (public.MAX_FAILURES, public.MAX_FAILURES_TOTAL, public.WINDOW_SECONDS) == (
        PER_SOURCE, TOTAL, WINDOW)


class Clinic:
    """A practice with the app active, a client, and the mail it was sent."""

    def __init__(self, host: TestHost, server: SmtpServer, **settings: object) -> None:
        self.host, self.server = host, server
        self.hooks: AppHooks = host.hooks()
        self.tenant = host.new_tenant()
        host.activate(self.hooks, self.tenant, **settings)
        self.client = host.new_client(self.tenant)

    def mails(self) -> tuple[str, str]:
        """Send what is due; the one link in the last mail (the confirmation of a
        withdrawal made since, which carries no consent or withdrawal link, goes first)."""
        before = len(self.server.messages)
        send_due(self.host, tenant=self.tenant, transport=self.server.transport())
        new = self.server.messages[before:]
        linked = [m for m in new if m.links()]
        assert len(linked) == 1 and new[-1] is linked[0], [m.message["Subject"] for m in new]
        for confirmation in new[:-1]:
            assert "återkallade" in confirmation.message["Subject"]
        return self.server.messages[-1].link()

    def consent_by_link(self, browser: Browser | None = None) -> str:
        """The client consents through an e-mailed link; the receipt's withdrawal token."""
        self.host.advance(minutes=2)  # not the same request as one a minute ago
        mail_requests.send_request(self.host, self.tenant, self.client, actor="staff:s1")
        self.host.session().commit()
        purpose, token = self.mails()
        assert purpose == "c"
        self.consent_token = token
        browser = browser or Browser(self.host)
        page = browser.get(path_of("c", token))
        done = browser.post(path_of("c", token), data={**form_fields(page.text),
                                                       "decision": "accept"})
        assert done.status_code == 200, done.text
        purpose, w_token = self.mails()  # the receipt
        assert purpose == "w"
        assert self.status() == "valid"
        return w_token

    def deactivate(self) -> None:
        self.host.active[self.tenant].discard("samtycke")
        self.hooks.deactivate(TenantRef(self.tenant), "samtycke")
        self.host.session().commit()

    def status(self) -> str:
        """The client's status as the practice's status CSV gives it (also when the app
        is deactivated)."""
        self.host.session().rollback()
        rows = csv.DictReader(io.StringIO("".join(
            practice_status_csv(self.host, self.tenant, by=READER, from_host=False))))
        [row] = [r for r in rows if r["client_ref"] == self.client]
        self.host.session().rollback()
        return row["status"]

    def states(self) -> list[str]:
        self.host.session().rollback()
        return list(self.host.session().scalars(
            select(ConsentEvent.state).where(ConsentEvent.tenant_ref == self.tenant)
            .order_by(ConsentEvent.seq)))

    def active(self) -> bool:
        self.host.session().rollback()
        practice = self.host.session().get(Practice, self.tenant, populate_existing=True)
        return practice is not None and practice.active


def _withdraw(browser: Browser, token: str) -> None:
    """Open the withdrawal link and press the button, as the client does."""
    confirm = browser.get(path_of("w", token))
    assert confirm.status_code == 200, confirm.text
    assert "Återkalla samtycke" in confirm.text
    done = browser.post(path_of("w", token), data={**form_fields(confirm.text),
                                                   "decision": "withdraw"})
    assert done.status_code == 200, done.text
    assert "återkallat" in done.text


# -- withdrawal whatever the practice does -----------------------------------------------------


def test_a_withdrawal_link_works_after_the_practice_deactivated_the_app(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    p = Clinic(host, smtp_server)
    token = p.consent_by_link()
    p.deactivate()
    assert p.status() == "valid"  # the consent stands: the client must be able to end it
    _withdraw(Browser(host), token)
    assert p.states()[-1] == "withdrawn" and p.status() == "withdrawn"
    assert not p.active()  # no reactivation was needed
    # The used link then says there is nothing left to withdraw (a kind page, no form).
    again = Browser(host).get(path_of("w", token))
    assert again.status_code == 200 and NOTHING_TO_WITHDRAW in again.text
    assert "csrf_token" not in again.text


def test_a_consent_link_needs_the_app_active_but_is_not_counted_as_a_guess(
    host: TestHost, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decided: a practice that deactivated the app collects no consent, so a consent
    link shows "cannot be used"; it is a real link, so it is no failure."""
    small = SlidingWindowLimiter(2, WINDOW, total_limit=2, clock=lambda: 1e6)
    monkeypatch.setattr(public, "LIMITER", small)
    p = Clinic(host, smtp_server)
    mail_requests.send_request(host, p.tenant, p.client, actor="staff:s1")
    host.session().commit()
    _purpose, token = p.mails()
    p.deactivate()
    browser = Browser(host)
    for _ in range(5):
        page = browser.get(path_of("c", token))
        assert page.status_code == 404 and INVALID in page.text
    assert p.states() == ["requested"]
    assert public.LIMITER.tracked() == 0


def test_a_withdrawal_link_works_three_years_later(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    p = Clinic(host, smtp_server)  # no lifetime: the consent stands until it is ended
    token = p.consent_by_link()
    receipt = smtp_server.messages[-1].text
    host.advance(days=3 * 365 + 1)
    assert p.status() == "valid"
    _withdraw(Browser(host), token)
    assert p.status() == "withdrawn"
    assert "så länge ditt samtycke gäller" in receipt  # and the receipt gives no end date


def test_a_withdrawal_link_works_after_the_practice_changed_its_settings(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    """The receipt of an online booking gets its link when the relay sends it, with the
    settings of that moment; the consent's own lifetime was fixed when it was given."""
    p = Clinic(host, smtp_server, require_consent_for_online_booking=True)
    text_id = form_text_id(host, p.hooks, p.tenant, p.client)
    assert book(host, p.hooks, p.tenant, p.client, booking="b1", ticked=True,
                text_id=text_id) == []
    assert p.status() == "valid"
    practices.complete_setup(host, p.tenant, {"validity_days": 7, "request_link_days": 1,
                                            "email_request_after_staff_booking": False})
    host.session().commit()
    purpose, token = p.mails()  # the receipt, minted now
    assert purpose == "w"
    host.advance(days=30)
    assert p.status() == "valid"  # given without a lifetime
    practices.complete_setup(host, p.tenant, {"validity_days": 3650})
    host.session().commit()
    _withdraw(Browser(host), token)
    assert p.status() == "withdrawn"


def test_a_replaced_withdrawal_link_says_where_to_withdraw(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    p = Clinic(host, smtp_server)
    old = p.consent_by_link()
    host.advance(minutes=5)
    new = p.consent_by_link()  # renewed: a newer receipt replaces the first one's link
    p.deactivate()
    browser = Browser(host)
    page = browser.get(path_of("w", old))
    assert page.status_code == 200 and ELSEWHERE in page.text
    assert "nyare kvitto" in page.text and "info@lugnochro.example" in page.text
    assert "csrf_token" not in page.text
    assert browser.post(path_of("w", old), data={"decision": "withdraw"}).status_code == 200
    assert p.states()[-1] == "renewed"  # the old link wrote nothing
    _withdraw(browser, new)
    page = browser.get(path_of("w", old))  # nothing left to withdraw now
    assert page.status_code == 200 and NOTHING_TO_WITHDRAW in page.text


def test_a_used_withdrawal_link_after_consenting_again_says_where_to_withdraw(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    p = Clinic(host, smtp_server)
    first = p.consent_by_link()
    browser = Browser(host)
    _withdraw(browser, first)
    host.advance(days=1)
    p.consent_by_link()
    page = browser.get(path_of("w", first))
    assert page.status_code == 200 and ELSEWHERE in page.text
    assert "redan använts" in page.text and "csrf_token" not in page.text


def test_withdrawal_links_are_stored_without_an_expiry(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    p = Clinic(host, smtp_server, validity_days=30)
    token = p.consent_by_link()
    host.session().rollback()
    row = host.session().scalars(select(ConsentRequest).where(
        ConsentRequest.token_hash == tokens.token_hash(token))).one()
    assert row.expires_at == receipt_mail.WITHDRAW_LINK_NEVER_EXPIRES


# -- the rate limit never refuses a real link ----------------------------------------------------


def _consent_tokens(host: TestHost, server: SmtpServer, count: int) -> tuple[str, list[str]]:
    """A practice with ``count`` clients each sent a consent link; their tokens (taken
    from the stored rows, as the relay derives them)."""
    p = Clinic(host, server)
    refs = [host.new_client(p.tenant, email=f"k{i}@example.org") for i in range(count)]
    for ref in refs:
        mail_requests.send_request(host, p.tenant, ref, actor="staff:s1")
    host.session().commit()
    key = tokens.link_key(host)
    rows = host.session().scalars(select(ConsentRequest).where(
        ConsentRequest.tenant_ref == p.tenant)).all()
    host.session().rollback()
    return p.tenant, [tokens.token_for(key, r) for r in rows]


def test_200_real_links_open_from_an_address_that_sprays_200_random_tokens(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    _tenant, tokens = _consent_tokens(host, smtp_server, 200)
    shared = Browser(host, addr="192.0.2.10")  # a clinic's Wi-Fi: guesser and clients
    refused = 0
    for token in tokens:
        guess = shared.get(path_of("c", secrets.token_urlsafe(32)))
        assert guess.status_code in (404, 429)
        refused += guess.status_code == 429
        page = shared.get(path_of("c", token))
        assert page.status_code == 200 and "csrf_token" in page.text
    assert refused == 200 - PER_SOURCE  # the guesses are limited, the links are not
    # A withdrawal link from the same address, still over its budget, works too.
    p = Clinic(host, smtp_server)
    w_token = p.consent_by_link(shared)
    assert shared.get(path_of("w", secrets.token_urlsafe(32))).status_code == 429
    _withdraw(shared, w_token)
    assert p.status() == "withdrawn"


def test_real_links_open_while_many_addresses_spray_random_tokens(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    _tenant, tokens = _consent_tokens(host, smtp_server, 200)
    sprayers = [Browser(host, addr=f"198.51.100.{i}") for i in range(1, 201)]
    rounds = TOTAL // len(sprayers) + 1  # each source stays under its own limit
    assert rounds < PER_SOURCE
    refused = 0
    for round_ in range(rounds):
        for i, sprayer in enumerate(sprayers):
            guess = sprayer.get(path_of("c", secrets.token_urlsafe(32)))
            assert guess.status_code in (404, 429)
            refused += guess.status_code == 429
            if round_ == rounds - 1:  # the spray is over the total budget by now
                page = sprayer.get(path_of("c", tokens[i]))
                assert page.status_code == 200 and "csrf_token" in page.text
    assert refused == rounds * len(sprayers) - TOTAL  # the budget over all sources
    fresh = Browser(host, addr="203.0.113.5")  # also holds a new address's guesses...
    assert fresh.get(path_of("c", secrets.token_urlsafe(32))).status_code == 429
    page = fresh.get(path_of("c", tokens[0]))  # ...and not its real links
    assert page.status_code == 200 and "csrf_token" in page.text
    p = Clinic(host, smtp_server)
    _withdraw(fresh, p.consent_by_link(fresh))


def test_links_whose_consent_ended_are_not_counted_as_failures(
    host: TestHost, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = SlidingWindowLimiter(2, WINDOW, total_limit=2, clock=lambda: 1e6)
    monkeypatch.setattr(public, "LIMITER", small)
    browser = Browser(host)
    # withdrawn by the client: its used withdrawal link and its used consent link
    withdrawn = Clinic(host, smtp_server)
    w_used = withdrawn.consent_by_link(browser)
    c_used = withdrawn.consent_token
    _withdraw(browser, w_used)
    # renewed: the first receipt's withdrawal link is replaced; 30-day consent
    renewed = Clinic(host, smtp_server, validity_days=30)
    w_replaced = renewed.consent_by_link(browser)
    renewed.consent_by_link(browser)
    # ended by the practice, which then deactivated the app
    ended = Clinic(host, smtp_server)
    w_revoked = ended.consent_by_link(browser)
    consent.withdraw(host, ended.tenant, ended.client, actor="staff:s1", channel="manual",
                     method=None, by_client=False)
    host.session().commit()
    ended.deactivate()
    # never answered: a consent link replaced by a newer one, which then expired
    asked = Clinic(host, smtp_server)
    mail_requests.send_request(host, asked.tenant, asked.client, actor="staff:s1")
    host.session().commit()
    _p, c_replaced = asked.mails()
    host.advance(minutes=5)
    mail_requests.send_request(host, asked.tenant, asked.client, actor="staff:s1")
    host.session().commit()
    _p, c_expired = asked.mails()
    host.advance(days=40)
    assert renewed.status() == "expired" and ended.status() == "revoked"
    small.reset()
    pages = {}
    for _ in range(3):
        for letter, token in (("w", w_used), ("c", c_used), ("w", w_replaced),
                              ("w", w_revoked), ("c", c_replaced), ("c", c_expired),
                              ("c", w_revoked)):  # a real token on the wrong page
            page = browser.get(path_of(letter, token))
            assert "csrf_token" not in page.text
            pages[letter, token] = page.status_code
    assert pages == {("w", w_used): 200, ("c", c_used): 200, ("w", w_replaced): 200,
                     ("w", w_revoked): 200, ("c", c_replaced): 404, ("c", c_expired): 404,
                     ("c", w_revoked): 404}
    assert small.tracked() == 0 and not small.blocked(browser.addr)
    # Only tokens that match nothing count.
    assert browser.get(path_of("c", secrets.token_urlsafe(32))).status_code == 404
    assert browser.get(path_of("w", secrets.token_urlsafe(32))).status_code == 404
    assert browser.get(path_of("c", secrets.token_urlsafe(32))).status_code == 429


def test_the_limiter_keeps_its_memory_bounded_and_slides() -> None:
    limiter = SlidingWindowLimiter(2, 10, total_limit=None, max_keys=100)
    for i in range(10_000):
        limiter.failure(f"10.0.{i // 256}.{i % 256}", now=1.0)
    assert limiter.tracked() == 100  # the least recent sources are forgotten
    assert limiter.failure("a", now=2.0).refused is False
    verdict = limiter.failure("a", now=3.0)
    assert not verdict.refused and verdict.spent == "source"
    assert limiter.failure("a", now=4.0).refused and limiter.blocked("a", now=5.0)
    assert not limiter.blocked("b", now=5.0)
    assert not limiter.blocked("a", now=25.0)  # the window slid past every failure
    assert limiter.failure("z", now=45.0).refused is False
    assert limiter.tracked() == 1  # sources whose failures left the window are dropped
    total = SlidingWindowLimiter(100, 10, total_limit=3)
    assert [total.failure(f"s{i}", now=1.0).refused for i in range(5)] == [
        False, False, False, True, True]
    assert total.blocked("anyone", now=2.0) and not total.blocked("anyone", now=25.0)


# -- asked again after a change of content -------------------------------------------------


def test_a_client_asked_again_after_a_change_of_content_sees_what_has_changed(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    p = Clinic(host, smtp_server, ask_clients_without_consent=True)
    p.consent_by_link()
    note = "Vi sparar nu även <b>foton</b> av behandlingen."
    practice_texts.publish_text(host, p.tenant, bodies={"sv": "Ny text: vi sparar även foton.\n"}, kind="content",
                           reason=note, actor="staff:s1", expected_major=1)
    host.session().commit()
    assert p.status() == "outdated"
    escaped = "Vi sparar nu även &lt;b&gt;foton&lt;/b&gt; av behandlingen."

    # the booking form: the change note above the new text, escaped
    [form] = p.hooks.form_fragments(BookingFormContext(
        tenant=TenantRef(p.tenant), client=ClientRef(p.client), locale="sv"))
    assert "Vad har ändrats" in form.html and escaped in form.html
    assert form.html.index(escaped) < form.html.index("Ny text: vi sparar även foton.")
    # a new client was never given the old text: nothing "has changed" for them
    [fresh] = p.hooks.form_fragments(BookingFormContext(
        tenant=TenantRef(p.tenant), client=None, locale="sv"))
    assert "Vad har ändrats" not in fresh.html and "foton</b>" not in fresh.html
    host.session().rollback()

    # the consent page of an e-mailed request says the same
    host.advance(minutes=2)
    mail_requests.send_request(host, p.tenant, p.client, actor="staff:s1")
    host.session().commit()
    purpose, token = p.mails()
    page = Browser(host).get(path_of(purpose, token))
    assert page.status_code == 200
    assert "Vad har ändrats" in page.text and escaped in page.text
    # once the client has consented to the new content there is nothing to point out
    done = Browser(host).post(path_of(purpose, token),
                              data={**form_fields(page.text), "decision": "accept"})
    assert done.status_code == 200 and p.status() == "valid"
    host.session().rollback()
    assert not p.hooks.form_fragments(BookingFormContext(
        tenant=TenantRef(p.tenant), client=ClientRef(p.client), locale="sv"))

"""Model-based test: a Hypothesis state machine drives random sequences of every
consent action against the real app and a small pure model, and checks after every
step that the gate decision and each badge equal the model's, the projection equals a
replay of the ledger, the chain verifies, no row crosses practices, and each e-mailed
link is used at most once.

Actions: create a client; publish a text as a correction or a content change (and a
stale editor's attempt); an online booking with the box ticked or not, on a fresh or
an old form, in required or optional mode, with every client asked or only new ones (and
those whose consent no longer holds); manual recording (permitted or not); withdrawal
and revocation by staff; time passing (consent and link expiry); staff of
one practice using another's client; an e-mail request; SMTP delivery with or without
a 550 bounce (real aiosmtpd); opening a link (GET, as a mail scanner does); accepting
or declining on the consent page (fresh or stale text); withdrawing through the
receipt's link; erasure.

Runs on SQLite in the default suite and on PostgreSQL in the slow, postgres-marked run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from hostkit import TestHost, staff, submission
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from reliability_support import FIGURES, book, complete_receipts, dialect
from smtp_support import Browser, SmtpServer, form_fields, path_of, running_server
from sqlalchemy import Engine, func, select

from hookspecs.types import BookingFormContext, ClientRef, TenantRef
from samtycke_plugin import consent, practice_texts
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.email import receipts as receipt_mail
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.email import tokens
from samtycke_plugin.email.relay import send_due
from samtycke_plugin.errors import Conflict, NotFound, PermissionDenied
from samtycke_plugin.ledger import projection, replay
from samtycke_plugin.models import (
    ConsentEvent,
    ConsentRequest,
    ConsentStateRow,
    OutboxMessage,
    TextVersion,
)

GRANTED = ("given", "renewed")
#: Statuses the booking form asks about under every setting that asks at all: consent
#: that no longer holds, and an e-mailed request not answered yet.
ASK_AGAIN = ("outdated", "expired", "requested", "bounced", "undelivered", "deferred")
BODIES = [
    "Vi sparar dina kontaktuppgifter för att kunna boka och påminna om tider.\n",
    "Vi sparar namn, telefon och e-post. Du kan när som helst återkalla.\n",
    "Uppgifterna sparas tills du ber oss ta bort dem, dock längst tio år.\n",
]
LINK_PATH = {tokens.PURPOSE_CONSENT: "c", tokens.PURPOSE_WITHDRAW: "w"}


@dataclass
class LinkModel:
    token: str
    client: str
    purpose: str
    created: datetime
    expires: datetime
    state: str = "open"  # open, used, revoked, erased
    delivery: str = "queued"  # queued, sent, bounced, cancelled
    major: int | None = None  # the content version a consent link was sent for


@dataclass
class ClientModel:
    """What the model knows about one client: the decisive state and its facts."""

    email: str
    state: str | None = None  # None: no event yet
    major: int | None = None
    expires: datetime | None = None
    delivery: str | None = None
    events: int = 0
    since: datetime | None = None  # when the decisive state was recorded


@dataclass
class PracticeModel:
    tenant: str
    required: bool = False
    #: "ask new clients" is the only asking setting on (the clients here are returning)
    only_new: bool = False
    validity_days: int | None = None
    #: days a client who declined or withdrew is not asked again (0: no pause)
    pause_days: int = 365
    major: int = 1
    #: every text version id per major (forms rendered earlier carry older ids)
    texts: dict[int, list[int]] = field(default_factory=dict)
    clients: dict[str, ClientModel] = field(default_factory=dict)
    erased: dict[str, ClientModel] = field(default_factory=dict)
    links: dict[str, LinkModel] = field(default_factory=dict)

    def status(self, ref: str, now: datetime) -> str:
        c = self.clients.get(ref) or self.erased[ref]
        if c.state is None:
            return "unknown"
        if c.state in GRANTED:
            if c.major != self.major:
                return "outdated"
            if c.expires is not None and c.expires <= now:
                return "expired"
            return "valid"
        if c.state == "requested" and c.delivery == "bounced":
            return "bounced"
        return c.state

    def paused(self, ref: str, now: datetime) -> bool:
        """Did the client decline or withdraw within the practice's pause?"""
        c = self.clients.get(ref) or self.erased[ref]
        return (c.state in ("refused", "withdrawn") and self.pause_days > 0
                and c.since is not None and now < c.since + timedelta(days=self.pause_days))

    def asks(self, status: str, paused: bool) -> bool:
        """Does the booking form ask a returning client with this status?"""
        if status == "valid":
            return False
        if self.required:
            return True
        return not paused and (not self.only_new or status in ASK_AGAIN)

    def apply(self, ref: str, state: str, major: int | None, expires: datetime | None,
              at: datetime) -> None:
        """One new ledger event: a request keeps consent still given for the same or a
        newer content version; every other event replaces the state."""
        c = self.clients.get(ref) or self.erased[ref]
        c.events += 1
        if state == "requested" and c.state in GRANTED and c.major is not None \
                and major is not None and c.major >= major:
            return
        c.state, c.major, c.expires, c.delivery, c.since = state, major, expires, None, at


class ConsentMachine(RuleBasedStateMachine):
    """Two practices, random clients and every action a practitioner, a client, the
    mail server or the clock can take."""

    engine: Engine  # set by the test
    smtp: SmtpServer  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.host = TestHost(self.engine)
        self.hooks = self.host.hooks()
        self.practices: list[PracticeModel] = []
        self.steps = 0

    # -- set-up -----------------------------------------------------------------------

    @initialize(required=st.tuples(st.booleans(), st.booleans()),
                only_new=st.tuples(st.booleans(), st.booleans()),
                validity=st.tuples(st.sampled_from([None, 30, 365]),
                                   st.sampled_from([None, 30, 365])),
                pause=st.tuples(st.sampled_from([0, 30, 365]), st.sampled_from([0, 30, 365])))
    def two_practices(self, required: tuple[bool, bool], only_new: tuple[bool, bool],
                      validity: tuple[int | None, ...], pause: tuple[int, int]) -> None:
        for req, new_only, days, pause_days in zip(required, only_new, validity, pause,
                                                   strict=True):
            tenant = self.host.new_tenant()
            settings_: dict[str, object] = {"require_consent_for_online_booking": req,
                                            "ask_clients_without_consent": not new_only,
                                            "pause_days": pause_days}
            if days is not None:
                settings_["validity_days"] = days
            self.host.activate(self.hooks, tenant, **settings_)
            model = PracticeModel(tenant=tenant, required=req, only_new=new_only,
                                  validity_days=days, pause_days=pause_days)
            model.texts[1] = self._text_ids(tenant, 1)
            self.practices.append(model)
            for _ in range(2):
                self._new_client(model)

    def _text_ids(self, tenant: str, major: int) -> list[int]:
        ids = list(self.host.session().scalars(
            select(TextVersion.id).where(TextVersion.tenant_ref == tenant,
                                         TextVersion.major == major, TextVersion.language == "sv")
            .order_by(TextVersion.minor)))
        self.host.session().rollback()
        return ids

    def teardown(self) -> None:
        FIGURES[f"state-machine steps ({dialect(self.engine)})"] += self.steps
        self.host.close()

    # -- helpers ------------------------------------------------------------------------

    def _count(self, what: str) -> None:
        self.steps += 1
        FIGURES[f"state-machine action {what} ({dialect(self.engine)})"] += 1

    def _has_clients(self) -> bool:
        return any(p.clients for p in self.practices)

    def _pick(self, data: st.DataObject) -> tuple[PracticeModel, str]:
        p = data.draw(st.sampled_from([p for p in self.practices if p.clients]), label="practice")
        ref = data.draw(st.sampled_from(list(p.clients)), label="client")  # insertion order
        return p, ref

    def _has_links(self) -> bool:
        return any(p.links for p in self.practices)

    def _pick_link(self, data: st.DataObject, purpose: str | None = None) -> tuple[
            PracticeModel, LinkModel]:
        choices = [(p, link) for p in self.practices for link in p.links.values()
                   if purpose is None or link.purpose == purpose]
        return data.draw(st.sampled_from(choices), label="link")

    def _grant(self, p: PracticeModel, ref: str, given_at: datetime) -> str:
        c = p.clients[ref]
        expected = "renewed" if c.state in GRANTED else "given"
        expires = given_at + timedelta(days=p.validity_days) if p.validity_days else None
        p.apply(ref, expected, p.major, expires, at=self.host.now())
        self._last_event_is(p, ref, expected)
        return expected

    def _last_event_is(self, p: PracticeModel, ref: str, state: str) -> ConsentEvent:
        ev = self.host.session().scalars(
            select(ConsentEvent).where(ConsentEvent.tenant_ref == p.tenant,
                                       ConsentEvent.client_ref == ref)
            .order_by(ConsentEvent.seq.desc()).limit(1)).one()
        self.host.session().rollback()
        assert ev.state == state
        return ev

    def _revoke_open(self, p: PracticeModel, ref: str, purpose: str) -> None:
        for link in p.links.values():
            if link.client == ref and link.purpose == purpose and link.state == "open":
                link.state = "revoked"

    def _receipt_link(self, p: PracticeModel, ref: str) -> None:
        """A grant with an address queues a receipt; the relay gives it a new withdrawal
        link when it picks it up (the client's older one is revoked): do what the relay's
        claim does, then find the link and remember its token."""
        self._revoke_open(p, ref, tokens.PURPOSE_WITHDRAW)
        complete_receipts(self.host, p.tenant, ref)
        open_rows = self.host.session().scalars(
            select(ConsentRequest).where(
                ConsentRequest.tenant_ref == p.tenant, ConsentRequest.client_ref == ref,
                ConsentRequest.purpose == tokens.PURPOSE_WITHDRAW,
                ConsentRequest.used_at.is_(None), ConsentRequest.revoked_at.is_(None))).all()
        assert len(open_rows) == 1, "exactly one open withdrawal link after a grant"
        req = open_rows[0]
        token = tokens.token_for(tokens.link_key(self.host), req)
        assert token not in p.links
        now = self.host.now()
        assert req.expires_at == receipt_mail.WITHDRAW_LINK_NEVER_EXPIRES  # lives as long as consent
        p.links[token] = LinkModel(token=token, client=ref, purpose=tokens.PURPOSE_WITHDRAW,
                                   created=now, expires=receipt_mail.WITHDRAW_LINK_NEVER_EXPIRES)
        self.host.session().rollback()

    # -- practitioner and booking rules ----------------------------------------------------

    def _new_client(self, p: PracticeModel) -> None:
        email = f"k{uuid.uuid4().hex[:10]}@example.org"
        ref = self.host.new_client(p.tenant, email=email)
        p.clients[ref] = ClientModel(email=email)

    @rule(which=st.integers(0, 1))
    def create_client(self, which: int) -> None:
        self._count("create_client")
        self._new_client(self.practices[which])

    @rule(which=st.integers(0, 1), content=st.booleans(), body=st.sampled_from(BODIES),
          salt=st.integers(0, 10**6), stale_editor=st.booleans())
    def publish_text(
        self, which: int, content: bool, body: str, salt: int, stale_editor: bool
    ) -> None:
        """A correction (new minor) or a content change (new major: everyone outdated);
        an editor who saw an older major is refused with a conflict, nothing saved."""
        self._count("publish_text")
        p = self.practices[which]
        if stale_editor and p.major > 1:
            with pytest.raises(Conflict):
                practice_texts.publish_text(
                    self.host, p.tenant, bodies={"sv": BODIES[0]}, kind="content", reason=None,
                    actor="staff:s1", expected_major=p.major - 1,
                )
            self.host.session().rollback()
            return
        versions = practice_texts.publish_text(
            self.host, p.tenant, bodies={"sv": body + f"Version {salt}.\n"},
            kind="content" if content else "correction", reason=None, actor="staff:s1",
            expected_major=p.major,
        )
        self.host.session().commit()
        if content:
            p.major += 1
            p.texts[p.major] = [v.id for v in versions]
        else:
            p.texts[p.major].extend(v.id for v in versions)

    @precondition(lambda self: self._has_clients())
    @rule(data=st.data(), ticked=st.booleans(), form_age=st.integers(0, 3))
    def online_booking(self, data: st.DataObject, ticked: bool, form_age: int) -> None:
        """The client books with the consent box ticked or not, on a form rendered
        now or before some text changes (``form_age`` majors ago, when it exists)."""
        self._count("online_booking")
        p, ref = self._pick(data)
        shown_major = max(1, p.major - form_age)
        shown = p.texts[shown_major][-1]
        now = self.host.now()
        status = p.status(ref, now)
        paused = p.paused(ref, now)
        vetoes = book(self.host, self.hooks, p.tenant, ref, booking=f"b{self.steps}",
                      ticked=ticked, text_id=shown)
        # the model's gate: not asked, nothing recorded (the ledger invariant counts events)
        if not p.asks(status, paused):
            assert vetoes == []
            if paused and ticked and shown_major == p.major:
                # the client ticked a box shown before the pause began: their own act
                self._grant(p, ref, now)
                self._receipt_link(p, ref)
            return
        if ticked:
            if shown_major != p.major:
                assert [v.key for v in vetoes] == ["samtycke.text_changed"]
                return
            assert vetoes == []
            state = self._grant(p, ref, now)
            ev = self._last_event_is(p, ref, state)
            assert ev.text_version_id == shown  # the text actually shown
            self._receipt_link(p, ref)
            return
        if p.required:
            assert [v.key for v in vetoes] == ["samtycke.consent_required"]
            return
        assert vetoes == []
        p.apply(ref, "refused", p.major, None, at=self.host.now())
        self._last_event_is(p, ref, "refused")

    @precondition(lambda self: self._has_clients())
    @rule(data=st.data(), days_ago=st.integers(0, 400), allowed=st.booleans())
    def manual_record(self, data: st.DataObject, days_ago: int, allowed: bool) -> None:
        self._count("manual_record")
        p, ref = self._pick(data)
        given_at = self.host.now() - timedelta(days=days_ago)
        if not allowed:
            with pytest.raises(PermissionDenied):
                consent.record_manual(self.host, p.tenant, ref, staff(can_record=False),
                                      method="paper", given_at=given_at, note=None)
            self.host.session().rollback()
            return
        consent.record_manual(self.host, p.tenant, ref, staff(), method="paper",
                              given_at=given_at, note="Papper")
        self.host.session().commit()
        self._grant(p, ref, given_at)

    @precondition(lambda self: self._has_clients())
    @rule(data=st.data(), by_client=st.booleans())
    def withdraw(self, data: st.DataObject, by_client: bool) -> None:
        """Staff record a withdrawal (or the practice revokes); refused when nothing is given."""
        self._count("withdraw")
        p, ref = self._pick(data)
        c = p.clients[ref]
        if c.state not in GRANTED:
            with pytest.raises(Conflict):
                consent.withdraw(self.host, p.tenant, ref, actor="staff:s1", channel="manual",
                                 method=None, by_client=by_client)
            self.host.session().rollback()
            return
        consent.withdraw(self.host, p.tenant, ref, actor="staff:s1", channel="manual",
                         method="verbal", by_client=by_client)
        self.host.session().commit()
        p.apply(ref, "withdrawn" if by_client else "revoked", c.major, None, at=self.host.now())
        self._last_event_is(p, ref, c.state or "")

    @rule(days=st.sampled_from([1, 13, 15, 29, 31, 200, 400]))
    def time_passes(self, days: int) -> None:
        """Time travel: consents with a lifetime and e-mailed links expire."""
        self._count("time_passes")
        self.host.advance(days=days)

    @precondition(lambda self: all(p.clients for p in self.practices))
    @rule(data=st.data())
    def cross_practice_attempt(self, data: st.DataObject) -> None:
        """Staff of one practice use a client id of the other: not found, nothing written."""
        self._count("cross_practice_attempt")
        a, b = data.draw(st.permutations(self.practices), label="practices")[:2]
        ref = data.draw(st.sampled_from(list(b.clients)), label="foreign client")
        for attempt in (
            lambda: consent.record_manual(self.host, a.tenant, ref, staff(), method="paper",
                                          given_at=self.host.now(), note=None),
            lambda: mail_requests.send_request(self.host, a.tenant, ref, actor="staff:s1"),
        ):
            with pytest.raises(NotFound):
                attempt()
            self.host.session().rollback()
        with pytest.raises(Conflict):
            consent.withdraw(self.host, a.tenant, ref, actor="staff:s1", channel="manual",
                             method=None, by_client=True)
        self.host.session().rollback()
        FIGURES["cross-practice attempts refused"] += 3

    # -- e-mail rules --------------------------------------------------------------------

    @precondition(lambda self: self._has_clients())
    @rule(data=st.data())
    def send_request(self, data: st.DataObject) -> None:
        """The practitioner e-mails a consent request (a repeat within a minute, for the
        same text and a mail not bounced, is the same request)."""
        self._count("send_request")
        p, ref = self._pick(data)
        now = self.host.now()
        recent = [link for link in p.links.values()
                  if link.client == ref and link.purpose == tokens.PURPOSE_CONSENT
                  and link.state == "open" and link.created > now - mail_requests.RESEND_WINDOW
                  and link.expires > now and link.delivery not in ("bounced", "failed")
                  and link.major == p.major]
        req = mail_requests.send_request(self.host, p.tenant, ref, actor="staff:s1")
        self.host.session().commit()
        token = tokens.token_for(tokens.link_key(self.host), req)
        self.host.session().rollback()
        if recent:
            assert token == recent[-1].token
            return
        assert token not in p.links
        self._revoke_open(p, ref, tokens.PURPOSE_CONSENT)
        p.links[token] = LinkModel(token=token, client=ref, purpose=tokens.PURPOSE_CONSENT,
                                   created=now, expires=now + timedelta(days=14), major=p.major)
        p.apply(ref, "requested", p.major, None, at=self.host.now())
        self._last_event_is(p, ref, "requested")

    @precondition(lambda self: any(link.delivery == "queued" for p in self.practices
                                   for link in p.links.values()))
    @rule(which=st.integers(0, 1), data=st.data(), bounce=st.booleans())
    def deliver_mail(self, which: int, data: st.DataObject, bounce: bool) -> None:
        """The relay sends what is due through a real SMTP server; with ``bounce`` the
        server answers 550 at RCPT for one client's address."""
        self._count("deliver_mail")
        p = self.practices[which]
        target = data.draw(st.sampled_from(list(p.clients)), label="bounce") \
            if bounce and p.clients else None
        if target is not None:
            self.smtp.handler.rcpt_replies[p.clients[target].email] = "550 5.1.1 No such user"
        before = len(self.smtp.messages)
        try:
            send_due(self.host, tenant=p.tenant, transport=self.smtp.transport())
        finally:
            self.smtp.handler.rcpt_replies.clear()
        now = self.host.now()
        sent_tokens = sorted(m.link()[1] for m in self.smtp.messages[before:])
        expected_sent = []
        for link in p.links.values():
            if link.delivery != "queued":
                continue
            if link.state != "open" or link.expires <= now:
                link.delivery = "cancelled"  # never a dead link in a mail
                continue
            link.delivery = "bounced" if link.client == target else "sent"
            if link.delivery == "sent":
                expected_sent.append(link.token)
            c = p.clients.get(link.client)
            if link.purpose == tokens.PURPOSE_CONSENT and c is not None \
                    and c.state == "requested":
                c.delivery = link.delivery
        assert sent_tokens == sorted(expected_sent)
        FIGURES["mails delivered through SMTP in the state machine"] += len(sent_tokens)

    def _page(self, link: LinkModel) -> tuple[Browser, str, object]:
        browser = Browser(self.host)
        path = path_of(LINK_PATH[link.purpose], link.token)
        return browser, path, browser.get(path)

    def _usable(self, link: LinkModel) -> bool:
        return link.state == "open" and link.expires > self.host.now()

    def _check_refused(self, link: LinkModel, resp: object) -> None:
        status = resp.status_code  # type: ignore[attr-defined]
        replaced = link.purpose == tokens.PURPOSE_WITHDRAW and link.state == "revoked"
        if link.state == "used" or replaced:  # a page that says what to do instead
            assert status == 200 and "csrf_token" not in resp.text  # type: ignore[attr-defined]
        else:
            assert status == 404, (link, status)

    @precondition(lambda self: self._has_links())
    @rule(data=st.data(), head=st.booleans())
    def open_link(self, data: st.DataObject, head: bool) -> None:
        """Someone (the client, or a mail scanner) opens a link: HEAD or GET never writes."""
        self._count("open_link")
        _p, link = self._pick_link(data)
        browser = Browser(self.host)
        path = path_of(LINK_PATH[link.purpose], link.token)
        resp = browser.head(path) if head else browser.get(path)
        if not self._usable(link):
            self._check_refused(link, resp)
        else:
            assert resp.status_code == 200
            assert resp.headers["Referrer-Policy"] == "no-referrer"
            assert resp.headers["Cache-Control"] == "no-store"

    @precondition(lambda self: any(link.purpose == tokens.PURPOSE_CONSENT
                                   for p in self.practices for link in p.links.values()))
    @rule(data=st.data(), accept=st.booleans(), form_age=st.integers(0, 2))
    def answer_link(self, data: st.DataObject, accept: bool, form_age: int) -> None:
        """The client accepts or declines on the consent page (possibly a page they
        opened before the text's content changed)."""
        self._count("answer_link")
        p, link = self._pick_link(data, tokens.PURPOSE_CONSENT)
        browser, path, page = self._page(link)
        if not self._usable(link):
            self._check_refused(link, page)
            return
        assert page.status_code == 200  # type: ignore[attr-defined]
        fields = form_fields(page.text)  # type: ignore[attr-defined]
        assert fields["text"] == str(p.texts[p.major][-1])  # the current text is shown
        shown_major = max(1, p.major - form_age)
        fields["text"] = str(p.texts[shown_major][-1])
        resp = browser.post(path, data={**fields, "decision": "accept" if accept else "decline"})
        if shown_major != p.major:
            assert resp.status_code == 409  # the new text is shown; nothing recorded
            return
        assert resp.status_code == 200, resp.text
        link.state = "used"
        now = self.host.now()
        if accept:
            state = self._grant(p, link.client, now)
            ev = self._last_event_is(p, link.client, state)
            self._receipt_link(p, link.client)
        else:
            p.apply(link.client, "refused", p.major, None, at=self.host.now())
            ev = self._last_event_is(p, link.client, "refused")
        assert ev.text_version_id == p.texts[p.major][-1] and ev.channel == "email_link"

    @precondition(lambda self: any(link.purpose == tokens.PURPOSE_WITHDRAW
                                   for p in self.practices for link in p.links.values()))
    @rule(data=st.data())
    def withdraw_by_link(self, data: st.DataObject) -> None:
        """The client withdraws through the receipt's link (as many steps as consenting)."""
        self._count("withdraw_by_link")
        p, link = self._pick_link(data, tokens.PURPOSE_WITHDRAW)
        browser, path, page = self._page(link)
        if not self._usable(link):
            self._check_refused(link, page)
            return
        c = p.clients[link.client]
        assert page.status_code == 200  # type: ignore[attr-defined]
        fields = form_fields(page.text)  # type: ignore[attr-defined]
        if c.state not in GRANTED:
            assert "csrf_token" not in fields  # "nothing to withdraw"; link stays usable
            return
        resp = browser.post(path, data=fields)
        assert resp.status_code == 200, resp.text
        link.state = "used"
        p.apply(link.client, "withdrawn", c.major, None, at=self.host.now())
        self._last_event_is(p, link.client, "withdrawn")

    @precondition(lambda self: self._has_clients())
    @rule(data=st.data())
    def erase(self, data: st.DataObject) -> None:
        """The host erases a client (GDPR Art. 17) and deletes it from its directory."""
        self._count("erase")
        p, ref = self._pick(data)
        c = p.clients.pop(ref)
        p.erased[ref] = c
        self.hooks.client_erased(TenantRef(p.tenant), ClientRef(ref))
        del self.host.clients[(p.tenant, ref)]
        self.host.session().commit()
        if c.events:
            p.apply(ref, "erased", None, None, at=self.host.now())
            self._last_event_is(p, ref, "erased")
        for link in p.links.values():
            if link.client == ref:
                link.state = "erased"

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def badges_and_gate_equal_the_model(self) -> None:
        if not self.practices:
            return
        now = self.host.now()
        for p in self.practices:
            refs = sorted(p.clients)
            for ref in sorted(p.erased):
                assert consent.client_status(self.host, p.tenant, ref).status.value == \
                    p.status(ref, now)
            if not refs:
                continue
            badges = self.hooks.list_badges(TenantRef(p.tenant), [ClientRef(r) for r in refs], "en")
            for ref in refs:
                expected = p.status(ref, now)
                assert consent.client_status(self.host, p.tenant, ref).status.value == expected
                [badge] = badges[ClientRef(ref)]
                assert (badge.tone == "ok") == (expected == "valid")
                # the booking form asks exactly the clients the settings ask
                frags = self.hooks.form_fragments(
                    BookingFormContext(tenant=TenantRef(p.tenant), client=ClientRef(ref),
                                       locale="sv"))
                assert bool(frags) == p.asks(expected, p.paused(ref, now))
                if frags:
                    assert f'value="{p.texts[p.major][-1]}"' in frags[0].html
                # and the check phase alone agrees with the model for an unticked box
                vetoes = self.hooks.submit_check(submission(p.tenant, ref, ticked=False))
                blocked = [v.key for v in vetoes] == ["samtycke.consent_required"]
                assert blocked == (p.required and expected != "valid")
        self.host.session().rollback()

    @invariant()
    def ledger_invariants(self) -> None:
        session = self.host.session()
        for p in self.practices:
            result = verify_chain(session, p.tenant)
            assert result.ok, result.broken
            everyone = {**p.clients, **p.erased}
            assert result.events == sum(c.events for c in everyone.values())
            assert replay(session, p.tenant) == projection(session, p.tenant)
            own = set(everyone)
            # no row of one practice refers to another practice's clients or texts
            for model, col in ((ConsentEvent, ConsentEvent.client_ref),
                               (ConsentStateRow, ConsentStateRow.client_ref),
                               (ConsentRequest, ConsentRequest.client_ref),
                               (OutboxMessage, OutboxMessage.client_ref)):
                refs = set(session.scalars(select(col).where(model.tenant_ref == p.tenant)))
                assert refs <= own | {None}, model
            foreign_texts = session.scalar(
                select(ConsentEvent.id).join(TextVersion,
                                             TextVersion.id == ConsentEvent.text_version_id)
                .where(ConsentEvent.tenant_ref == p.tenant, TextVersion.tenant_ref != p.tenant)
                .limit(1))
            assert foreign_texts is None
        session.rollback()

    @invariant()
    def each_link_is_used_at_most_once_and_as_the_model_says(self) -> None:
        session = self.host.session()
        key = tokens.link_key(self.host)
        for p in self.practices:
            rows = {tokens.token_for(key, r): r for r in session.scalars(
                select(ConsentRequest).where(ConsentRequest.tenant_ref == p.tenant))}
            uses = dict(session.execute(
                select(ConsentEvent.request_id, func.count())
                .where(ConsentEvent.tenant_ref == p.tenant,
                       ConsentEvent.request_id.is_not(None),
                       ConsentEvent.state != "requested")
                .group_by(ConsentEvent.request_id)).all())
            for token, link in p.links.items():
                if link.state == "erased":
                    assert token not in rows  # erasure removed the link
                    continue
                row = rows[token]
                assert uses.get(row.id, 0) == (1 if link.state == "used" else 0), (
                    link, row.id, row.purpose, row.used_at, row.revoked_at, uses.get(row.id))
                assert (row.used_at is not None) == (link.state == "used")
                assert (row.revoked_at is not None) == (link.state == "revoked")
            assert set(rows) <= set(p.links)  # no link the model did not expect
            assert all(n == 1 for n in uses.values())
        session.rollback()


def _run(engine: Engine, smtp: SmtpServer, *, examples: int, steps: int) -> None:
    machine: Callable[[], ConsentMachine] = type(
        "Machine", (ConsentMachine,), {"engine": engine, "smtp": smtp}
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


@pytest.mark.timeout(600)
def test_state_machine_on_sqlite(sqlite_engine: Engine, smtp_server: SmtpServer) -> None:
    _run(sqlite_engine, smtp_server, examples=30, steps=35)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_state_machine_on_postgresql(pg_engine: Engine, smtp_server: SmtpServer) -> None:
    _run(pg_engine, smtp_server, examples=30, steps=35)

"""Model-based test: a Hypothesis state machine drives random sequences of every
consent action against the real app and a small pure model (tests/consent_model.py),
and checks after every step that the status of every (client, purpose), the gate
decision and each badge equal the model's, the projection equals a replay of the
ledger, the chain verifies, no row crosses practices, and each e-mailed link is used at
most once.

Each practice has several purposes: the default one and one or two added from the
wizard's catalogue or of its own, each required or only offered at booking, each with
its own validity and texts.

Actions: create a client; publish one purpose's text as a correction or a content
change (which outdates that purpose alone), and a stale editor's attempt; an online
booking with each purpose's box ticked or not, on the form rendered now or on one
rendered earlier (before some text changes or before a refusal), in required or optional
mode, with every client asked or only new ones (and those whose consent no longer
holds); manual recording per purpose (permitted or not); withdrawal and revocation of
one purpose by staff; time passing (consent and link expiry, the pause); staff of one
practice using another's client; an e-mail request for some purposes; SMTP delivery
with or without a 550 bounce (real aiosmtpd); opening a link (GET, as a mail scanner
does); answering each purpose on the consent page (fresh or stale text); withdrawing
one or every purpose through the receipt's link; the batch page's preview for one
purpose (who it would mail, who it leaves out and why); erasure.

Runs on SQLite in the default suite and on PostgreSQL in the slow, postgres-marked run.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from consent_model import (
    DEFAULT,
    GRANTED,
    ClientModel,
    LinkModel,
    PracticeModel,
    PurposeModel,
)
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
from reliability_support import FIGURES, complete_receipts, dialect, submit
from smtp_support import Browser, SmtpServer, form_fields, path_of, running_server
from sqlalchemy import Engine, func, select

from hookspecs.types import BookingFormContext, BookingSubmission, ClientRef, TenantRef
from samtycke_plugin import consent, practice_texts, purpose_catalogue, purposes
from samtycke_plugin.booking_gate import field_names
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.email import receipts as receipt_mail
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.email import tokens
from samtycke_plugin.email.batch_preview import preview_batch
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

BODIES = [
    "Vi sparar dina kontaktuppgifter för att kunna boka och påminna om tider.\n",
    "Vi sparar namn, telefon och e-post. Du kan när som helst återkalla.\n",
    "Uppgifterna sparas tills du ber oss ta bort dem, dock längst tio år.\n",
]
LINK_PATH = {tokens.PURPOSE_CONSENT: "c", tokens.PURPOSE_WITHDRAW: "w"}
#: Purposes a practice may add: three from the wizard's catalogue and one of its own.
EXTRA_KEYS = ("reminders", "newsletter", "photos", "sms")
SMS_NAMES = {"sv": "Sms om lediga tider", "en": "Text messages about free times"}
SMS_SV = "Vi skickar dig sms när en tid som passar din behandling blir ledig.\n"
#: One added purpose: its key, whether online booking requires it, its validity (days).
_EXTRA = st.tuples(st.sampled_from(EXTRA_KEYS), st.booleans(), st.sampled_from([None, 30, 365]))
_EXTRAS = st.lists(_EXTRA, min_size=1, max_size=2, unique_by=lambda e: e[0])
_HIDDEN = re.compile(r'type="hidden" name="([^"]+)" value="([^"]*)"')


def _suffix(key: str) -> str:
    """How a veto key names a purpose other than the default one."""
    return "" if key == DEFAULT else "." + key


def _text_fields(hidden: dict[str, str]) -> dict[str, str]:
    """The text-version fields among a booking form's hidden fields."""
    return {k: v for k, v in hidden.items() if k.startswith("samtycke_text")}


class ConsentMachine(RuleBasedStateMachine):
    """Two practices with several purposes each, random clients and every action a
    practitioner, a client, the mail server or the clock can take."""

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
                pause=st.tuples(st.sampled_from([0, 30, 365]), st.sampled_from([0, 30, 365])),
                extra=st.tuples(_EXTRAS, _EXTRAS))
    def two_practices(self, required: tuple[bool, bool], only_new: tuple[bool, bool],
                      validity: tuple[int | None, ...], pause: tuple[int, int],
                      extra: tuple[list[tuple[str, bool, int | None]], ...]) -> None:
        for req, new_only, days, pause_days, added in zip(required, only_new, validity, pause,
                                                          extra, strict=True):
            tenant = self.host.new_tenant()
            settings_: dict[str, object] = {"require_consent_for_online_booking": req,
                                            "ask_clients_without_consent": not new_only,
                                            "pause_days": pause_days,
                                            # renewals and reminders have their own tests
                                            # (email/test_renewals.py): the relay here sends
                                            # only what the rules below queue
                                            "renew_days_before": 0, "remind_after_days": 0}
            if days is not None:
                settings_["validity_days"] = days
            self.host.activate(self.hooks, tenant, **settings_)
            model = PracticeModel(tenant=tenant, only_new=new_only, pause_days=pause_days)
            care = PurposeModel(key=DEFAULT, required=req, validity_days=days)
            care.texts[1] = self._text_ids(tenant, DEFAULT, 1)
            care.published[1] = self.host.now()
            model.purposes[DEFAULT] = care
            for key, key_required, key_days in added:
                self._add_purpose(model, key, key_required, key_days)
            self.practices.append(model)
            for _ in range(2):
                self._new_client(model)

    def _add_purpose(self, p: PracticeModel, key: str, required: bool,
                     validity_days: int | None) -> None:
        """The practitioner adds a purpose from the catalogue (its name, legal basis and
        text) or one of their own, requiring it at booking or not, with a lifetime."""
        entry = purpose_catalogue.by_key(key)
        if entry is not None:
            names = {"sv": entry.name.sv, "en": entry.name.en}
            legal = {"sv": entry.legal_basis.sv, "en": entry.legal_basis.en}
            body = entry.text("sv", practice_name="Kliniken Lugn & Ro",
                              practice_contact="info@example.org")
        else:
            names, legal, body = SMS_NAMES, {}, SMS_SV
        purposes.add(self.host.session(), p.tenant, key=key, names=names, legal_basis=legal,
                     required=required, validity_days=validity_days, bodies={"sv": body},
                     actor="staff:s1", now=self.host.now())
        self.host.session().commit()
        model = PurposeModel(key=key, required=required, validity_days=validity_days)
        model.texts[1] = self._text_ids(p.tenant, key, 1)
        model.published[1] = self.host.now()
        p.purposes[key] = model

    def _text_ids(self, tenant: str, key: str, major: int) -> list[int]:
        ids = list(self.host.session().scalars(
            select(TextVersion.id).where(TextVersion.tenant_ref == tenant,
                                         TextVersion.purpose_key == key,
                                         TextVersion.major == major, TextVersion.language == "sv")
            .order_by(TextVersion.minor)))
        self.host.session().rollback()
        assert ids
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

    def _purpose(self, data: st.DataObject, p: PracticeModel) -> str:
        return data.draw(st.sampled_from(list(p.purposes)), label="purpose")

    def _has_links(self) -> bool:
        return any(p.links for p in self.practices)

    def _pick_link(self, data: st.DataObject, kind: str | None = None) -> tuple[
            PracticeModel, LinkModel]:
        choices = [(p, link) for p in self.practices for link in p.links.values()
                   if kind is None or link.kind == kind]
        return data.draw(st.sampled_from(choices), label="link")

    def _last_events(self, p: PracticeModel, ref: str, n: int) -> list[ConsentEvent]:
        """The client's latest ``n`` ledger events, oldest first."""
        rows = list(self.host.session().scalars(
            select(ConsentEvent).where(ConsentEvent.tenant_ref == p.tenant,
                                       ConsentEvent.client_ref == ref)
            .order_by(ConsentEvent.seq.desc()).limit(n)))
        self.host.session().rollback()
        assert len(rows) == n
        return rows[::-1]

    def _last_event_is(self, p: PracticeModel, ref: str, state: str,
                       key: str = DEFAULT) -> ConsentEvent:
        [ev] = self._last_events(p, ref, 1)
        assert (ev.state, ev.purpose_key) == (state, key)
        return ev

    def _db_statuses(self, p: PracticeModel, keys: list[str]) -> dict[tuple[str, str], str]:
        everyone = [ClientRef(r) for r in [*p.clients, *p.erased]]
        out: dict[tuple[str, str], str] = {}
        for k in keys:
            answers = self.hooks.consent_lookup(TenantRef(p.tenant), everyone, k)
            assert answers is not None
            out.update({(str(r), k): a.status for r, a in answers.items()})
        self.host.session().rollback()
        return out

    def _revoke_open(self, p: PracticeModel, ref: str, kind: str) -> dict[str, int]:
        """Revoke the client's open links of ``kind`` in the model; what they covered."""
        covered: dict[str, int] = {}
        for link in p.links.values():
            if link.client == ref and link.kind == kind and link.state == "open":
                link.state = "revoked"
                covered.update(link.majors)
        return covered

    def _receipt_links(self, p: PracticeModel, ref: str, *, complete: bool) -> None:
        """A grant with an address queues a receipt with a new withdrawal link (the
        client's older one is revoked): at booking the relay mints it when it picks the
        receipt up (``complete``: do what the relay's claim does), on the consent page
        at once (one per purpose accepted, each replacing the one before).  The open
        link covers what the older one did and every purpose whose consent stands."""
        covered = self._revoke_open(p, ref, tokens.PURPOSE_WITHDRAW)
        if complete:
            complete_receipts(self.host, p.tenant, ref)
        key = tokens.link_key(self.host)
        rows = [r for r in self.host.session().scalars(
            select(ConsentRequest).where(
                ConsentRequest.tenant_ref == p.tenant, ConsentRequest.client_ref == ref,
                ConsentRequest.purpose == tokens.PURPOSE_WITHDRAW).order_by(ConsentRequest.id))
            if tokens.token_for(key, r) not in p.links]
        open_rows = [r for r in rows if r.used_at is None and r.revoked_at is None]
        assert len(open_rows) == 1, "exactly one open withdrawal link after a grant"
        now = self.host.now()
        expected = {**covered, **p.standing(ref)}
        for req in rows:
            assert req.expires_at == receipt_mail.WITHDRAW_LINK_NEVER_EXPIRES  # as long as consent
            token = tokens.token_for(key, req)
            is_open = req is open_rows[0]
            if is_open:
                assert dict(req.purpose_majors or {}) == expected, (req.purpose_majors, expected)
            p.links[token] = LinkModel(
                token=token, client=ref, kind=tokens.PURPOSE_WITHDRAW, created=now,
                expires=receipt_mail.WITHDRAW_LINK_NEVER_EXPIRES,
                state="open" if is_open else "revoked",
                majors=expected if is_open else dict(req.purpose_majors or {}))
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

    @rule(which=st.integers(0, 1), data=st.data(), content=st.booleans(),
          body=st.sampled_from(BODIES), salt=st.integers(0, 10**6), stale_editor=st.booleans())
    def publish_text(
        self, which: int, data: st.DataObject, content: bool, body: str, salt: int,
        stale_editor: bool,
    ) -> None:
        """A correction (new minor) or a content change (new major: everyone outdated for
        that purpose, and for no other) of one purpose's text; an editor who saw an
        older major is refused with a conflict, nothing saved."""
        self._count("publish_text")
        p = self.practices[which]
        key = self._purpose(data, p)
        pm = p.purposes[key]
        if stale_editor and pm.major > 1:
            with pytest.raises(Conflict):
                practice_texts.publish_text(
                    self.host, p.tenant, bodies={"sv": BODIES[0]}, kind="content", reason=None,
                    actor="staff:s1", expected_major=pm.major - 1, purpose=key,
                )
            self.host.session().rollback()
            return
        others = [k for k in p.purposes if k != key]
        before = self._db_statuses(p, others)
        versions = practice_texts.publish_text(
            self.host, p.tenant, bodies={"sv": body + f"Version {salt}.\n"},
            kind="content" if content else "correction", reason=None, actor="staff:s1",
            expected_major=pm.major, purpose=key,
        )
        self.host.session().commit()
        if content:
            pm.major += 1
            pm.texts[pm.major] = [v.id for v in versions]
            pm.published[pm.major] = self.host.now()
        else:
            pm.texts[pm.major].extend(v.id for v in versions)
        # the other purposes' statuses are exactly as before
        assert self._db_statuses(p, others) == before

    def _form(self, p: PracticeModel, ref: str) -> dict[str, str] | None:
        """The booking form's consent block for the client: its hidden fields."""
        frags = self.hooks.form_fragments(
            BookingFormContext(tenant=TenantRef(p.tenant), client=ClientRef(ref), locale="sv"))
        self.host.session().rollback()
        return dict(_HIDDEN.findall(frags[0].html)) if frags else None

    def _expected_form(self, p: PracticeModel, ref: str, now: datetime) -> dict[str, str]:
        """The text fields the form carries: one per purpose the client is asked for."""
        return {field_names(k)[1]: str(pm.text()) for k, pm in p.purposes.items()
                if p.asks(ref, k, now)}

    @precondition(lambda self: self._has_clients())
    @rule(data=st.data(), ticks=st.tuples(st.booleans(), st.booleans(), st.booleans()),
          earlier=st.booleans(), form_age=st.integers(0, 3))
    def online_booking(self, data: st.DataObject, ticks: tuple[bool, bool, bool],
                       earlier: bool, form_age: int) -> None:
        """The client books, ticking each purpose's box or not, on the form rendered now
        (the boxes it shows, the fields it posts back) or on one rendered ``earlier``:
        before a refusal, showing every purpose, each purpose's text ``form_age`` content
        versions ago (when it exists)."""
        self._count("online_booking")
        p, ref = self._pick(data)
        now = self.host.now()
        if earlier:
            shown = {k: max(1, pm.major - form_age) for k, pm in p.purposes.items()}
            fields = {field_names(k)[1]: str(p.purposes[k].text(m)) for k, m in shown.items()}
        else:
            hidden = self._form(p, ref) or {}
            assert _text_fields(hidden) == self._expected_form(p, ref, now)
            shown = {k: pm.major for k, pm in p.purposes.items() if p.asks(ref, k, now)}
            fields = hidden
        ticked = {k: tick and k in shown for k, tick in zip(p.purposes, ticks, strict=False)}
        fields.update({field_names(k)[0]: "yes" for k, tick in ticked.items() if tick})
        outcomes = {k: p.outcome(ref, k, now, ticked=ticked[k], shown_major=shown.get(k))
                    for k in p.purposes}
        sub = BookingSubmission(
            tenant=TenantRef(p.tenant), client=ClientRef(ref), is_new_client=False,
            channel="online", fields={"service": "massage", **fields}, locale="sv",
            ip_address="203.0.113.77", user_agent="Mozilla/5.0 (test)")
        vetoes = submit(self.host, self.hooks, sub, booking=f"b{self.steps}")
        expected_vetoes = sorted(  # the host gets them sorted by key
            ("samtycke.consent_required" if o == "required" else "samtycke.text_changed")
            + _suffix(k) for k, o in outcomes.items() if o in ("required", "text_changed"))
        assert [v.key for v in vetoes] == expected_vetoes
        if vetoes:
            return  # nothing recorded (the ledger invariant counts events)
        recorded = [(k, o) for k, o in outcomes.items() if o in ("given", "refused")]
        expected = []
        for k, o in recorded:
            pm = p.purposes[k]
            if o == "given":
                state = p.grant(ref, k, now, now)
                text = pm.text(shown[k])  # the text actually shown
            else:
                p.apply(ref, k, "refused", pm.major, None, at=now)
                state, text = "refused", pm.text(shown[k]) if shown.get(k) == pm.major \
                    else pm.text()
            expected.append((k, state, text))
        if not recorded:
            return
        events = self._last_events(p, ref, len(recorded))
        assert [(e.purpose_key, e.state, e.text_version_id) for e in events] == expected
        assert all(e.booking_ref == f"b{self.steps}" for e in events)
        if any(o == "given" for _k, o in recorded):
            self._receipt_links(p, ref, complete=True)

    @precondition(lambda self: self._has_clients())
    @rule(data=st.data(), days_ago=st.integers(0, 400), allowed=st.booleans())
    def manual_record(self, data: st.DataObject, days_ago: int, allowed: bool) -> None:
        """Staff record consent to one purpose given on paper (possibly long ago)."""
        self._count("manual_record")
        p, ref = self._pick(data)
        key = self._purpose(data, p)
        given_at = self.host.now() - timedelta(days=days_ago)
        if not allowed:
            with pytest.raises(PermissionDenied):
                consent.record_manual(self.host, p.tenant, ref, staff(can_record=False),
                                      method="paper", given_at=given_at, note=None, purpose=key)
            self.host.session().rollback()
            return
        consent.record_manual(self.host, p.tenant, ref, staff(), method="paper",
                              given_at=given_at, note="Papper", purpose=key)
        self.host.session().commit()
        # the content in force on the day the client signed (the first before it existed)
        major = p.purposes[key].in_force(given_at)
        state = p.grant(ref, key, given_at, self.host.now(), major)
        ev = self._last_event_is(p, ref, state, key)
        assert ev.text_version_id in p.purposes[key].texts[major]
        self._receipt_links(p, ref, complete=True)  # staff-recorded consent gets its receipt too

    @precondition(lambda self: self._has_clients())
    @rule(data=st.data(), by_client=st.booleans())
    def withdraw(self, data: st.DataObject, by_client: bool) -> None:
        """Staff record a withdrawal of one purpose (or the practice revokes it); refused
        when nothing is given for it."""
        self._count("withdraw")
        p, ref = self._pick(data)
        key = self._purpose(data, p)
        s = p.clients[ref].of(key)
        if s.state not in GRANTED:
            with pytest.raises(Conflict):
                consent.withdraw(self.host, p.tenant, ref, actor="staff:s1", channel="manual",
                                 method=None, by_client=by_client, purpose=key)
            self.host.session().rollback()
            return
        consent.withdraw(self.host, p.tenant, ref, actor="staff:s1", channel="manual",
                         method="verbal", by_client=by_client, purpose=key)
        self.host.session().commit()
        state = "withdrawn" if by_client else "revoked"
        p.apply(ref, key, state, s.major, None, at=self.host.now())
        self._last_event_is(p, ref, state, key)

    @rule(days=st.sampled_from([1, 13, 15, 29, 31, 200, 400]))
    def time_passes(self, days: int) -> None:
        """Time travel: consents with a lifetime and e-mailed links expire; pauses end."""
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

    @rule(which=st.integers(0, 1), data=st.data())
    def batch_preview(self, which: int, data: st.DataObject) -> None:
        """The batch page for one purpose: exactly the clients the model would mail are
        mailed, and each one left out for the model's reason (a client who declined or
        withdrew the purpose within the pause is never mailed)."""
        self._count("batch_preview")
        p = self.practices[which]
        key = self._purpose(data, p)
        preview = preview_batch(self.host, p.tenant, cap=None, purpose=key)
        self.host.session().rollback()
        now = self.host.now()
        reasons = {ref: p.batch_reason(ref, key, now) for ref in p.clients}
        left_out = {named.ref: reason.value for reason, names in preview.left_out.items()
                    for named in names}
        assert left_out == {ref: why for ref, why in reasons.items() if why is not None}
        assert preview.asked == sum(1 for why in reasons.values() if why is None)
        assert preview.total == len(p.clients) and preview.purpose == key

    # -- e-mail rules --------------------------------------------------------------------

    @precondition(lambda self: self._has_clients())
    @rule(data=st.data())
    def send_request(self, data: st.DataObject) -> None:
        """The practitioner e-mails a consent request for some purposes (or, choosing
        none, for every purpose the client has no valid consent to); a repeat within a
        minute, for the same texts and a mail not bounced, is the same request."""
        self._count("send_request")
        p, ref = self._pick(data)
        keys = list(p.purposes)
        chosen = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(keys), min_size=1,
                                                         max_size=len(keys), unique=True)),
                           label="purposes")
        now = self.host.now()
        if chosen is None:
            asked = [k for k in keys if p.status(ref, k, now) != "valid"] or [DEFAULT]
        else:
            asked = [k for k in keys if k in chosen]
        majors = {k: p.purposes[k].major for k in asked}
        recent = [link for link in p.links.values()
                  if link.client == ref and link.kind == tokens.PURPOSE_CONSENT
                  and link.state == "open" and link.created > now - mail_requests.RESEND_WINDOW
                  and link.expires > now and link.delivery not in ("bounced", "failed")
                  and link.majors == majors]
        req = mail_requests.send_request(self.host, p.tenant, ref, actor="staff:s1",
                                         purposes=chosen)
        self.host.session().commit()
        token = tokens.token_for(tokens.link_key(self.host), req)
        self.host.session().rollback()
        if recent:
            assert token == recent[-1].token
            return
        assert token not in p.links
        self._revoke_open(p, ref, tokens.PURPOSE_CONSENT)
        p.links[token] = LinkModel(token=token, client=ref, kind=tokens.PURPOSE_CONSENT,
                                   created=now, expires=now + timedelta(days=14), majors=majors)
        for k in asked:
            p.apply(ref, k, "requested", majors[k], None, at=now)
        events = self._last_events(p, ref, len(asked))
        assert [(e.purpose_key, e.state) for e in events] == [(k, "requested") for k in asked]

    @precondition(lambda self: any(link.delivery == "queued" for p in self.practices
                                   for link in p.links.values()))
    @rule(which=st.integers(0, 1), data=st.data(), bounce=st.booleans())
    def deliver_mail(self, which: int, data: st.DataObject, bounce: bool) -> None:
        """The relay sends what is due through a real SMTP server; with ``bounce`` the
        server answers 550 at RCPT for one client's address.  How a request's mail fared
        shows on each purpose it asks for that still waits for the answer."""
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
        sent = self.smtp.messages[before:]
        # A mail without a consent or withdrawal link confirms a withdrawal: it links to
        # the client's own page instead.
        assert all("/apps/samtycke/mina/" in m.text for m in sent if not m.links())
        sent_tokens = sorted(m.link()[1] for m in sent if m.links())
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
            if link.kind == tokens.PURPOSE_CONSENT and c is not None:
                for k in link.majors:
                    if c.of(k).state == "requested":
                        c.of(k).delivery = link.delivery
        assert sent_tokens == sorted(expected_sent)
        FIGURES["mails delivered through SMTP in the state machine"] += len(sent_tokens)

    def _page(self, link: LinkModel) -> tuple[Browser, str, object]:
        browser = Browser(self.host)
        path = path_of(LINK_PATH[link.kind], link.token)
        return browser, path, browser.get(path)

    def _usable(self, link: LinkModel) -> bool:
        return link.state == "open" and link.expires > self.host.now()

    def _check_refused(self, link: LinkModel, resp: object) -> None:
        status = resp.status_code  # type: ignore[attr-defined]
        replaced = link.kind == tokens.PURPOSE_WITHDRAW and link.state == "revoked"
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
        path = path_of(LINK_PATH[link.kind], link.token)
        resp = browser.head(path) if head else browser.get(path)
        if not self._usable(link):
            self._check_refused(link, resp)
        else:
            assert resp.status_code == 200
            assert resp.headers["Referrer-Policy"] == "no-referrer"
            assert resp.headers["Cache-Control"] == "no-store"

    @precondition(lambda self: any(link.kind == tokens.PURPOSE_CONSENT
                                   for p in self.practices for link in p.links.values()))
    @rule(data=st.data(), accepts=st.tuples(st.booleans(), st.booleans(), st.booleans()),
          form_age=st.integers(0, 2))
    def answer_link(self, data: st.DataObject, accepts: tuple[bool, bool, bool],
                    form_age: int) -> None:
        """The client accepts or declines each purpose the link asks for on the consent
        page (possibly a page they opened before a text's content changed)."""
        self._count("answer_link")
        p, link = self._pick_link(data, tokens.PURPOSE_CONSENT)
        browser, path, page = self._page(link)
        if not self._usable(link):
            self._check_refused(link, page)
            return
        assert page.status_code == 200  # type: ignore[attr-defined]
        fields = form_fields(page.text)  # type: ignore[attr-defined]
        keys = [k for k in p.purposes if k in link.majors]
        suffix = {k: "" if len(keys) == 1 else f"_{k}" for k in keys}
        answers = dict(zip(keys, accepts, strict=False))
        stale = False
        for k in keys:
            pm = p.purposes[k]
            assert fields["text" + suffix[k]] == str(pm.text())  # the current text is shown
            shown_major = max(1, pm.major - form_age)
            stale = stale or shown_major != pm.major
            fields["text" + suffix[k]] = str(pm.text(shown_major))
            fields["decision" + suffix[k]] = "accept" if answers[k] else "decline"
        resp = browser.post(path, data=fields)
        if stale:
            assert resp.status_code == 409  # the new text is shown; nothing recorded
            return
        assert resp.status_code == 200, resp.text
        link.state, link.events = "used", len(keys)
        now = self.host.now()
        expected = []
        for k in keys:
            if answers[k]:
                state = p.grant(link.client, k, now, now)
            else:
                state = "refused"
                p.apply(link.client, k, state, p.purposes[k].major, None, at=now)
            expected.append((k, state, p.purposes[k].text(), "email_link"))
        events = self._last_events(p, link.client, len(keys))
        assert [(e.purpose_key, e.state, e.text_version_id, e.channel) for e in events] == \
            expected
        if any(answers[k] for k in keys):
            self._receipt_links(p, link.client, complete=False)

    @precondition(lambda self: any(link.kind == tokens.PURPOSE_WITHDRAW
                                   for p in self.practices for link in p.links.values()))
    @rule(data=st.data())
    def withdraw_by_link(self, data: st.DataObject) -> None:
        """The client withdraws through the receipt's link (as many steps as consenting):
        one purpose of those it covers, or every one whose consent stands."""
        self._count("withdraw_by_link")
        p, link = self._pick_link(data, tokens.PURPOSE_WITHDRAW)
        browser, path, page = self._page(link)
        if not self._usable(link):
            self._check_refused(link, page)
            return
        c = p.clients[link.client]
        assert page.status_code == 200  # type: ignore[attr-defined]
        fields = form_fields(page.text)  # type: ignore[attr-defined]
        given = [k for k in p.purposes if k in link.majors and c.of(k).state in GRANTED]
        if not given:
            assert "csrf_token" not in fields  # "nothing to withdraw"; link stays usable
            return
        one = data.draw(st.sampled_from([None, *given]), label="withdraw") \
            if len(given) > 1 else None
        chosen = given if one is None else [one]
        resp = browser.post(path, data={**fields, **({"purpose": one} if one else
                                                      {"decision": "withdraw"})})
        assert resp.status_code == 200, resp.text
        link.state, link.events = "used", len(chosen)
        for k in chosen:
            p.apply(link.client, k, "withdrawn", c.of(k).major, None, at=self.host.now())
        events = self._last_events(p, link.client, len(chosen))
        assert [(e.purpose_key, e.state) for e in events] == [(k, "withdrawn") for k in chosen]

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
            # an ``erased`` event under the default purpose and under every other
            # purpose the client has a status for: no consent outlives the erasure
            erased = [DEFAULT, *sorted(k for k, s in c.per.items()
                                       if k != DEFAULT and s.state not in (None, "erased"))]
            for key in erased:
                p.apply(ref, key, "erased", None, None, at=self.host.now())
            last = self._last_events(p, ref, len(erased))
            assert [(e.purpose_key, e.state) for e in last] == [(k, "erased") for k in erased]
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
            keys = list(p.purposes)
            refs = sorted(p.clients)
            # every (client, purpose), the erased clients' too: as the platform's other
            # apps ask (one statement per purpose), and the default purpose as a profile does
            everyone = [ClientRef(r) for r in [*refs, *sorted(p.erased)]]
            for k in keys:
                answers = self.hooks.consent_lookup(TenantRef(p.tenant), everyone, k)
                assert answers is not None
                got = {str(r): a.status for r, a in answers.items()}
                assert got == {str(r): p.status(r, k, now) for r in everyone}, k
                assert all(a.may_use == (a.status == "valid") for a in answers.values())
            for ref in sorted(p.erased):
                assert consent.client_status(self.host, p.tenant, ref).status.value == \
                    p.status(ref, DEFAULT, now)
            if not refs:
                continue
            badges = self.hooks.list_badges(TenantRef(p.tenant), [ClientRef(r) for r in refs], "en")
            for ref in refs:
                statuses = {k: p.status(ref, k, now) for k in keys}
                assert consent.client_status(self.host, p.tenant, ref).status.value == \
                    statuses[DEFAULT]
                # one badge summing up the purposes
                [badge] = badges[ClientRef(ref)]
                valid = sum(1 for s in statuses.values() if s == "valid")
                missing = any(statuses[k] != "valid" for k, pm in p.purposes.items()
                              if pm.required)
                assert badge.label.startswith(f"Consent: {valid} of {len(keys)}")
                assert badge.tone == ("ok" if valid == len(keys) else
                                      "missing" if missing else "warn")
                # the booking form shows a box for exactly the purposes the settings ask
                # (a purpose refused or withdrawn within the pause: only when required)
                hidden = self._form(p, ref)
                assert _text_fields(hidden or {}) == self._expected_form(p, ref, now)
                # and the check phase alone agrees with the model for unticked boxes
                vetoes = self.hooks.submit_check(submission(p.tenant, ref, ticked=False))
                assert [v.key for v in vetoes] == sorted(
                    "samtycke.consent_required" + _suffix(k) for k, pm in p.purposes.items()
                    if pm.required and statuses[k] != "valid")
        self.host.session().rollback()

    @invariant()
    def ledger_invariants(self) -> None:
        session = self.host.session()
        for p in self.practices:
            result = verify_chain(session, p.tenant)
            assert result.ok, result.broken
            everyone = {**p.clients, **p.erased}
            assert result.events == sum(c.events for c in everyone.values())
            for k in p.purposes:
                assert replay(session, p.tenant, k) == projection(session, p.tenant, k)
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
                .where(ConsentEvent.tenant_ref == p.tenant,
                       (TextVersion.tenant_ref != p.tenant)
                       | (TextVersion.purpose_key != ConsentEvent.purpose_key))
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
                if link.state != "erased":
                    link.request_id = rows[token].id
                # one use: the events of that one answer or withdrawal, none after it
                # (also once erasure removed the link: its events keep its id)
                if link.request_id is not None:
                    assert uses.get(link.request_id, 0) == link.events, (link, uses)
                if link.state == "erased":
                    assert token not in rows  # erasure removed the link
                    continue
                row = rows[token]
                assert (row.used_at is not None) == (link.state == "used")
                assert (row.revoked_at is not None) == (link.state == "revoked")
                assert dict(row.purpose_majors or {}) == link.majors
            assert set(rows) <= set(p.links)  # no link the model did not expect
            assert set(uses) <= {link.request_id for link in p.links.values()}
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

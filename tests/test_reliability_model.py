"""Model-based test: a Hypothesis state machine drives random sequences of every
consent action against the real app and a small pure model, and checks after every
step that the gate decision and each badge equal the model's, the projection equals a
replay of the ledger, the chain verifies, and no row crosses practices.

Runs on SQLite in the default suite and on PostgreSQL in the slow, postgres-marked run.
"""

from __future__ import annotations

from collections.abc import Callable
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
from reliability_support import FIGURES, book, dialect
from sqlalchemy import Engine, select

from hookspecs.types import BookingFormContext, ClientRef, TenantRef
from samtycke_plugin import service
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.errors import Conflict, NotFound
from samtycke_plugin.ledger import projection, replay
from samtycke_plugin.models import ConsentEvent, ConsentStateRow, TextVersion

GRANTED = ("given", "renewed")
BODIES = [
    "Vi sparar dina kontaktuppgifter för att kunna boka och påminna om tider.\n",
    "Vi sparar namn, telefon och e-post. Du kan när som helst återkalla.\n",
    "Uppgifterna sparas tills du ber oss ta bort dem, dock längst tio år.\n",
]


@dataclass
class ClientModel:
    """What the model knows about one client: the last decisive event."""

    state: str | None = None  # None: no event yet
    major: int | None = None
    expires: datetime | None = None
    events: int = 0


@dataclass
class PracticeModel:
    tenant: str
    required: bool = False
    validity_days: int | None = None
    major: int = 1
    #: every text version id per major (forms rendered earlier carry older ids)
    texts: dict[int, list[int]] = field(default_factory=dict)
    clients: dict[str, ClientModel] = field(default_factory=dict)

    def status(self, ref: str, now: datetime) -> str:
        c = self.clients[ref]
        if c.state is None:
            return "unknown"
        if c.state in GRANTED:
            if c.major != self.major:
                return "outdated"
            if c.expires is not None and c.expires <= now:
                return "expired"
            return "valid"
        return c.state


class ConsentMachine(RuleBasedStateMachine):
    """Two practices, random clients and every action a practitioner, a client or
    the clock can take."""

    engine: Engine  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.host = TestHost(self.engine)
        self.hooks = self.host.hooks()
        self.practices: list[PracticeModel] = []
        self.steps = 0

    # -- set-up -----------------------------------------------------------------------

    @initialize(required=st.tuples(st.booleans(), st.booleans()),
                validity=st.tuples(st.sampled_from([None, 30, 365]),
                                   st.sampled_from([None, 30, 365])))
    def two_practices(self, required: tuple[bool, bool], validity: tuple[int | None, ...]) -> None:
        for req, days in zip(required, validity, strict=True):
            tenant = self.host.new_tenant()
            settings_: dict[str, object] = {"require_consent_for_online_booking": req}
            if days is not None:
                settings_["validity_days"] = days
            self.host.activate(self.hooks, tenant, **settings_)
            model = PracticeModel(tenant=tenant, required=req, validity_days=days)
            model.texts[1] = self._text_ids(tenant, 1)
            self.practices.append(model)

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

    def _pick(self, data: st.DataObject) -> tuple[PracticeModel, str]:
        p = data.draw(st.sampled_from([p for p in self.practices if p.clients]), label="practice")
        ref = data.draw(st.sampled_from(sorted(p.clients)), label="client")
        return p, ref

    def _count(self, what: str) -> None:
        self.steps += 1
        FIGURES[f"state-machine action {what} ({dialect(self.engine)})"] += 1

    def _has_clients(self) -> bool:
        return any(p.clients for p in self.practices)

    def _grant(self, p: PracticeModel, ref: str, major: int, given_at: datetime) -> None:
        c = p.clients[ref]
        expected = "renewed" if c.state in GRANTED else "given"
        c.state, c.major = expected, major
        c.expires = given_at + timedelta(days=p.validity_days) if p.validity_days else None
        c.events += 1
        self._last_event_is(p, ref, expected)

    def _last_event_is(self, p: PracticeModel, ref: str, state: str) -> ConsentEvent:
        ev = self.host.session().scalars(
            select(ConsentEvent).where(ConsentEvent.tenant_ref == p.tenant,
                                       ConsentEvent.client_ref == ref)
            .order_by(ConsentEvent.seq.desc()).limit(1)).one()
        self.host.session().rollback()
        assert ev.state == state
        return ev

    # -- rules ----------------------------------------------------------------------------

    @rule(which=st.integers(0, 1))
    def create_client(self, which: int) -> None:
        self._count("create_client")
        p = self.practices[which]
        ref = self.host.new_client(p.tenant)
        p.clients[ref] = ClientModel()

    @rule(which=st.integers(0, 1), content=st.booleans(), body=st.sampled_from(BODIES),
          salt=st.integers(0, 10**6))
    def publish_text(self, which: int, content: bool, body: str, salt: int) -> None:
        """A correction (new minor) or a content change (new major: everyone outdated)."""
        self._count("publish_text")
        p = self.practices[which]
        versions = service.publish_text(
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

    @rule(which=st.integers(0, 1), stale=st.integers(0, 1))
    def publish_with_a_stale_editor(self, which: int, stale: int) -> None:
        """An editor who saw an older major: refused with a conflict, nothing saved."""
        self._count("publish_with_a_stale_editor")
        p = self.practices[which]
        if p.major == 1:
            return
        with pytest.raises(Conflict):
            service.publish_text(
                self.host, p.tenant, bodies={"sv": BODIES[0]}, kind="content", reason=None,
                actor="staff:s1", expected_major=p.major - 1 - stale % (p.major - 1),
            )
        self.host.session().rollback()

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
        vetoes = book(self.host, self.hooks, p.tenant, ref, booking=f"b{self.steps}",
                      ticked=ticked, text_id=shown)
        # the model's gate (default settings ask everyone without valid consent)
        if status == "valid":
            assert vetoes == []
            return
        if ticked:
            if shown_major != p.major:
                assert [v.key for v in vetoes] == ["samtycke.text_changed"]
                return
            assert vetoes == []
            self._grant(p, ref, p.major, now)
            ev = self._last_event_is(p, ref, p.clients[ref].state or "")
            assert ev.text_version_id == shown  # the text actually shown
            return
        if p.required:
            assert [v.key for v in vetoes] == ["samtycke.consent_required"]
            return
        assert vetoes == []
        c = p.clients[ref]
        c.state, c.major, c.expires = "refused", p.major, None
        c.events += 1
        self._last_event_is(p, ref, "refused")

    @precondition(lambda self: self._has_clients())
    @rule(data=st.data(), days_ago=st.integers(0, 400), allowed=st.booleans())
    def manual_record(self, data: st.DataObject, days_ago: int, allowed: bool) -> None:
        self._count("manual_record")
        p, ref = self._pick(data)
        given_at = self.host.now() - timedelta(days=days_ago)
        if not allowed:
            with pytest.raises(service.PermissionDenied):
                service.record_manual(self.host, p.tenant, ref, staff(can_record=False),
                                      method="paper", given_at=given_at, note=None)
            self.host.session().rollback()
            return
        service.record_manual(self.host, p.tenant, ref, staff(), method="paper",
                              given_at=given_at, note="Papper")
        self.host.session().commit()
        self._grant(p, ref, p.major, given_at)

    @precondition(lambda self: self._has_clients())
    @rule(data=st.data(), by_client=st.booleans())
    def withdraw(self, data: st.DataObject, by_client: bool) -> None:
        """The client withdraws (or the practice revokes); refused when nothing is given."""
        self._count("withdraw")
        p, ref = self._pick(data)
        c = p.clients[ref]
        if c.state not in GRANTED:
            with pytest.raises(Conflict):
                service.withdraw(self.host, p.tenant, ref, actor="staff:s1", channel="manual",
                                 method=None, by_client=by_client)
            self.host.session().rollback()
            return
        service.withdraw(self.host, p.tenant, ref, actor="staff:s1", channel="manual",
                         method="verbal", by_client=by_client)
        self.host.session().commit()
        c.state = "withdrawn" if by_client else "revoked"
        c.expires = None
        c.events += 1
        self._last_event_is(p, ref, c.state)

    @rule(days=st.sampled_from([1, 29, 31, 200, 400]))
    def time_passes(self, days: int) -> None:
        """Time travel: consents with a lifetime expire."""
        self._count("time_passes")
        self.host.advance(days=days)

    @precondition(lambda self: all(p.clients for p in self.practices))
    @rule(data=st.data())
    def cross_practice_attempt(self, data: st.DataObject) -> None:
        """Staff of one practice use a client id of the other: not found, nothing written."""
        self._count("cross_practice_attempt")
        a, b = data.draw(st.permutations(self.practices), label="practices")[:2]
        ref = data.draw(st.sampled_from(sorted(b.clients)), label="foreign client")
        with pytest.raises(NotFound):
            service.record_manual(self.host, a.tenant, ref, staff(), method="paper",
                                  given_at=self.host.now(), note=None)
        self.host.session().rollback()
        with pytest.raises(Conflict):
            service.withdraw(self.host, a.tenant, ref, actor="staff:s1", channel="manual",
                             method=None, by_client=True)
        self.host.session().rollback()
        FIGURES["cross-practice attempts refused"] += 2

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def badges_and_gate_equal_the_model(self) -> None:
        if not self.practices:
            return
        now = self.host.now()
        for p in self.practices:
            refs = sorted(p.clients)
            if not refs:
                continue
            badges = self.hooks.list_badges(TenantRef(p.tenant), [ClientRef(r) for r in refs], "en")
            for ref in refs:
                expected = p.status(ref, now)
                assert service.client_status(self.host, p.tenant, ref).status.value == expected
                [badge] = badges[ClientRef(ref)]
                assert (badge.tone == "ok") == (expected == "valid")
                # the booking form asks exactly the clients without valid consent
                frags = self.hooks.form_fragments(
                    BookingFormContext(tenant=TenantRef(p.tenant), client=ClientRef(ref),
                                       locale="sv"))
                assert bool(frags) == (expected != "valid")
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
            assert result.events == sum(c.events for c in p.clients.values())
            assert replay(session, p.tenant) == projection(session, p.tenant)
            own = set(p.clients)
            # no row of one practice refers to another practice's clients or texts
            assert set(session.scalars(select(ConsentEvent.client_ref).where(
                ConsentEvent.tenant_ref == p.tenant))) <= own
            assert set(session.scalars(select(ConsentStateRow.client_ref).where(
                ConsentStateRow.tenant_ref == p.tenant))) <= own
            foreign_texts = session.scalar(
                select(ConsentEvent.id).join(TextVersion,
                                             TextVersion.id == ConsentEvent.text_version_id)
                .where(ConsentEvent.tenant_ref == p.tenant, TextVersion.tenant_ref != p.tenant)
                .limit(1))
            assert foreign_texts is None
        session.rollback()


def _run(engine: Engine, *, examples: int, steps: int) -> None:
    machine: Callable[[], ConsentMachine] = type(
        "Machine", (ConsentMachine,), {"engine": engine}
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


@pytest.mark.timeout(600)
def test_state_machine_on_sqlite(sqlite_engine: Engine) -> None:
    _run(sqlite_engine, examples=30, steps=35)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_state_machine_on_postgresql(pg_engine: Engine) -> None:
    _run(pg_engine, examples=25, steps=30)

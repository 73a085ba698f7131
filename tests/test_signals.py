"""Consent for the platform's other apps: ``booking_consent_changed`` fires once per
change after commit (never for rolled-back work), and ``booking_consent_lookup``
answers for many clients in one statement."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hostkit import TestHost, count_statements, staff, submission
from sqlalchemy import Engine, func, select

from hookspecs import hookimpl
from hookspecs.facade import AppHooks, hooks_of, make_plugin_manager
from hookspecs.host import OnCommit
from hookspecs.types import (
    AppInfo,
    BookingFormContext,
    BookingRef,
    ClientRef,
    ConsentChange,
    TenantRef,
    UnknownPurpose,
)
from samtycke_plugin import consent, db, hostdb, practice_texts
from samtycke_plugin.integrations.sqlalchemy import on_commit
from samtycke_plugin.models import ConsentEvent


class SignalHost(TestHost):
    """The test host with :class:`hookspecs.host.OnCommit` over its session, as
    ``FlaskHost`` has it."""

    __test__ = False

    def on_commit(self, callback: Callable[[], None]) -> None:
        on_commit(self.session(), callback)


class Listener:
    """Another app of the platform: it only listens."""

    def __init__(self, fail: bool = False) -> None:
        self.changes: list[ConsentChange] = []
        self.fail = fail

    @hookimpl
    def booking_consent_changed(self, host: object, change: ConsentChange) -> None:
        self.changes.append(change)
        if self.fail:
            raise RuntimeError("bug in the listening app")


@pytest.fixture
def shost(engine: Engine) -> Iterator[SignalHost]:
    h = SignalHost(engine)
    yield h
    h.close()


def _hooks(host: TestHost, *listeners: Listener) -> AppHooks:
    pm = make_plugin_manager(
        strict=True, plugins=[(f"listener{i}", x) for i, x in enumerate(listeners)]
    )
    return AppHooks(pm, host, lambda tenant: host.active.get(tenant, set()))


def _text_id(hooks: AppHooks, tenant: TenantRef) -> int:
    [frag] = hooks.form_fragments(BookingFormContext(tenant=tenant, client=None, locale="sv"))
    found = re.search(r'name="samtycke_text" value="(\d+)"', frag.html)
    assert found is not None
    return int(found.group(1))


def _book(hooks: AppHooks, host: TestHost, tenant: TenantRef, booking: str) -> ClientRef:
    client = host.new_client(tenant)
    sub = submission(tenant, None, ticked=True, text_id=_text_id(hooks, tenant), is_new=True)
    assert hooks.submit_check(sub) == []
    hooks.submitted(sub, BookingRef(booking), client)
    return client


def _manual(host: TestHost, tenant: str, client: str) -> None:
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=host.now(),
                          note=None)


def test_hook_booking_consent_changed(shost: SignalHost) -> None:
    """A booking in the host's transaction: one signal per client after the commit."""
    listener = Listener()
    hooks = _hooks(shost, listener)
    assert isinstance(shost, OnCommit) and hooks_of(shost) is hooks
    tenant = shost.new_tenant()
    shost.activate(hooks, tenant, require_consent_for_online_booking=True)
    client = _book(hooks, shost, tenant, "b-1")
    assert listener.changes == []  # not before the host commits
    shost.session().commit()
    [change] = listener.changes
    assert (change.tenant, change.client, change.purpose) == (tenant, client, "care")
    assert (change.status, change.may_use) == ("valid", True)
    assert change.since == shost.now() and change.expires_at is None
    shost.session().commit()  # a later commit signals nothing again
    assert len(listener.changes) == 1


def test_no_signal_for_a_rolled_back_booking(shost: SignalHost) -> None:
    listener = Listener()
    hooks = _hooks(shost, listener)
    tenant = shost.new_tenant()
    shost.activate(hooks, tenant, require_consent_for_online_booking=True)
    _book(hooks, shost, tenant, "b-1")
    shost.rollback()  # the host's booking failed after the app recorded
    shost.session().commit()
    assert listener.changes == []
    kept = _book(hooks, shost, tenant, "b-2")  # the next booking: only its own client
    shost.session().commit()
    assert [(c.client, c.status) for c in listener.changes] == [(kept, "valid")]
    assert shost.session().scalar(
        select(func.count()).select_from(ConsentEvent).where(ConsentEvent.tenant_ref == tenant)
    ) == 1


def test_app_unit_of_work_signals_once_per_client_after_commit(shost: SignalHost) -> None:
    """The app's own unit of work (a page): several changes of one client, one signal
    with the final status; nothing for a unit that failed."""
    listener = Listener()
    hooks = _hooks(shost, listener)
    tenant = shost.new_tenant()
    shost.activate(hooks, tenant)
    a, b = shost.new_client(tenant), shost.new_client(tenant)
    seen_inside: list[int] = []

    def page(_session: Any) -> None:
        _manual(shost, tenant, a)
        consent.withdraw(shost, tenant, a, actor="staff:s1", channel="manual",
                         method="verbal", by_client=False)
        _manual(shost, tenant, b)
        seen_inside.append(len(listener.changes))

    db.run_in_transaction(shost, page)
    assert seen_inside == [0]
    assert sorted((c.client, c.status, c.may_use) for c in listener.changes) == sorted(
        [(a, "revoked", False), (b, "valid", True)]
    )

    def failing(_session: Any) -> None:
        _manual(shost, tenant, shost.new_client(tenant))
        raise ValueError("the page fails after recording")

    with pytest.raises(ValueError):
        db.run_in_transaction(shost, failing)
    assert len(listener.changes) == 2


def test_unit_of_work_signals_without_on_commit(host: TestHost) -> None:
    """A host without ``on_commit`` still hears of the app's own units of work, and
    nothing of changes its hooks made."""
    listener = Listener()
    hooks = _hooks(host, listener)
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    _book(hooks, host, tenant, "b-1")
    host.session().commit()
    assert listener.changes == []
    client = host.new_client(tenant)
    with hostdb.unit_of_work(host):
        _manual(host, tenant, client)
    assert [(c.client, c.status) for c in listener.changes] == [(client, "valid")]


def test_failing_listener_does_not_undo_the_commit(
    shost: SignalHost, caplog: pytest.LogCaptureFixture
) -> None:
    broken, good = Listener(fail=True), Listener()
    hooks = _hooks(shost, broken, good)
    tenant = shost.new_tenant()
    shost.activate(hooks, tenant, require_consent_for_online_booking=True)
    with caplog.at_level(logging.ERROR):
        booked = _book(hooks, shost, tenant, "b-1")
        shost.session().commit()
        other = shost.new_client(tenant)
        db.run_in_transaction(shost, lambda _s: _manual(shost, tenant, other))
    assert [c.client for c in broken.changes] == [booked, other]
    assert [c.client for c in good.changes] == [booked, other]  # still called
    assert "booking_consent_changed" in caplog.text and "bug in the listening app" in caplog.text
    shost.session().rollback()
    assert consent.client_status(shost, tenant, booked).valid
    assert consent.client_status(shost, tenant, other).valid


def test_listeners_of_inactive_apps_are_not_called(shost: SignalHost) -> None:
    class App(Listener):
        @hookimpl
        def booking_app_info(self, host: object) -> AppInfo:
            return AppInfo(key="reminders", name={"en": "Reminders"},
                           description={"en": "x"}, version="1")

    app = App()
    hooks = _hooks(shost, app)
    tenant = shost.new_tenant()
    shost.activate(hooks, tenant)
    client = shost.new_client(tenant)
    # Once unmeasured: from then on each record replaces the previous receipt's link
    # alike, so the two measured runs differ by the signal's statement only.
    db.run_in_transaction(shost, lambda _s: _manual(shost, tenant, client))
    with count_statements(shost.engine) as seen:
        db.run_in_transaction(shost, lambda _s: _manual(shost, tenant, client))
    written = len(seen)
    assert app.changes == []
    shost.active[tenant].add("reminders")
    with count_statements(shost.engine) as seen:
        db.run_in_transaction(shost, lambda _s: _manual(shost, tenant, client))
    assert [c.client for c in app.changes] == [client]
    assert len(seen) == written + 1  # the statuses after commit: one statement


def test_hook_booking_consent_lookup(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    clients = [host.new_client(tenant, name=f"Klient {i}") for i in range(50)]
    for ref in clients[:20]:
        _manual(host, tenant, ref)
    for ref in clients[:5]:
        consent.withdraw(host, tenant, ref, actor="staff:s1", channel="manual",
                         method="verbal", by_client=False)
    host.session().commit()

    with count_statements(host.engine) as seen:
        answers = hooks.consent_lookup(tenant, clients, "care")
    assert len(seen) == 1, seen
    assert answers is not None and list(answers) == clients
    assert [answers[c].status for c in clients] == (
        ["revoked"] * 5 + ["valid"] * 15 + ["unknown"] * 30
    )
    assert [answers[c].may_use for c in clients] == [False] * 5 + [True] * 15 + [False] * 30
    assert answers[clients[5]].since == host.now() and answers[clients[30]].since is None

    host.advance(days=1)
    practice_texts.publish_text(host, tenant, bodies={"sv": "Helt ny text om personuppgifter."},
                           kind="content", reason=None, actor="staff:s1", expected_major=1)
    host.session().commit()
    outdated = hooks.consent_lookup(tenant, clients[5:7], "care")
    assert outdated is not None
    assert {a.status for a in outdated.values()} == {"outdated"}
    assert not any(a.may_use for a in outdated.values())

    with pytest.raises(UnknownPurpose, match="newsletter"):
        hooks.consent_lookup(tenant, clients, "newsletter")
    assert hooks.consent_lookup(tenant, [], "care") == {}
    other = host.new_tenant()  # Samtycke not active there: no app answers
    assert hooks.consent_lookup(other, clients, "care") is None
    host.session().rollback()


def test_lookup_beyond_the_bind_limit_and_of_another_practice(host: TestHost) -> None:
    hooks = host.hooks()
    tenant, other = host.new_tenant(), host.new_tenant()
    host.activate(hooks, tenant)
    host.activate(hooks, other)
    mine = host.new_client(tenant)
    _manual(host, tenant, mine)
    host.session().commit()
    many = [mine, *(ClientRef(f"c-{i}") for i in range(1000))]
    with count_statements(host.engine) as seen:
        answers = hooks.consent_lookup(tenant, many, "care")
    assert len(seen) == 2  # 900 per statement
    assert answers is not None and len(answers) == 1001 and answers[mine].may_use
    theirs = hooks.consent_lookup(other, [mine], "care")  # scoped by practice
    assert theirs is not None and theirs[mine].status == "unknown"
    host.session().rollback()

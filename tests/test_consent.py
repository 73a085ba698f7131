"""One consent write path: the domain API in ``consent`` records every state change
through ``ledger.append``, the only writer of ledger events, and the ledger module is
the only writer of the status projection (checked for every test by ``write_guard``)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
import write_guard
from hostkit import TestHost, staff, submission
from sqlalchemy import select, text

from hookspecs.types import BookingRef, ClientRef, DeliveryResult
from samtycke_plugin import consent, erasure, practice_texts, practices
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.email import batch as batch_requests
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.email.relay import send_due
from samtycke_plugin.errors import Conflict
from samtycke_plugin.ledger import projection, rebuild_projection, replay
from samtycke_plugin.models import ConsentEvent, ConsentRequest, ConsentStateRow
from samtycke_plugin.rules import State


def _practice(host: TestHost) -> str:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, validity_days=30, require_consent_for_online_booking=True)
    host.session().commit()
    return tenant


def test_every_kind_of_change_goes_through_the_ledgers_writers(host: TestHost) -> None:
    tenant = _practice(host)
    hooks = host.hooks()
    a, b, c = (host.new_client(tenant) for _ in range(3))
    host.new_client(tenant)  # one the batch asks
    bounce = host.new_client(tenant)  # a request whose mail bounces
    host.mailer = lambda message: DeliveryResult(status="sent")  # the host delivers it
    with write_guard.recording() as writes:
        consent.record_manual(host, tenant, a, staff(), method="paper",
                              given_at=host.now() - timedelta(days=1), note=None)
        consent.withdraw(host, tenant, a, actor="staff:s1", channel="manual", method="verbal",
                         by_client=True)
        mail_requests.send_request(host, tenant, b, actor="staff:s1")
        host.session().commit()
        assert send_due(host, tenant=tenant).sent == 2  # the paper consent's receipt too
        bounced = mail_requests.send_request(host, tenant, bounce, actor="staff:s1")
        host.session().commit()
        host.mailer = lambda message: DeliveryResult(status="rejected", detail="550 no such user")
        assert send_due(host, tenant=tenant).bounced == 1
        host.mailer = lambda message: None
        batch_requests.request_batch(host, tenant, actor="staff:s1")
        host.session().commit()
        shown = practice_texts.current_text(host.session(), practices.require_practice(
            host.session(), tenant), "sv")
        sub = submission(tenant, c, ticked=True, text_id=shown.id)
        assert hooks.submit_check(sub) == []
        hooks.submitted(sub, BookingRef("b1"), ClientRef(c))
        host.session().commit()
        erasure.erase_client(host, tenant, a)
        rebuild_projection(host.session(), tenant)
        host.session().commit()
    # Exactly one appender of the ledger and one writer of the projection, whatever
    # the change (a bounce, a rebuild and an erasure included).
    writers: dict[str, set[str]] = {}
    for w in writes:
        writers.setdefault(w.table, set()).add(w.function)
    assert writers == {
        "samtycke_consent_event": {"append"},
        "samtycke_consent_state": {"_write_projection"},
    }
    assert all(w.path == write_guard.LEDGER for w in writes), writes
    assert all(w.allowed for w in writes), writes
    assert verify_chain(host.session(), tenant).ok
    assert projection(host.session(), tenant) == replay(host.session(), tenant)
    row = host.session().get(ConsentStateRow, (tenant, bounce, "care"))
    assert row is not None and row.delivery == "bounced", bounced  # kept by the rebuild


def test_the_guard_catches_a_write_from_anywhere_else_in_the_app(host: TestHost) -> None:
    """The guard can fail: app code outside the ledger that writes the projection is
    recorded as a violation (the code is compiled as if it were a module of the app)."""
    _practice(host)
    rogue: dict[str, object] = {}
    exec(
        compile(
            "def rogue(session, text):\n"
            "    session.execute(text('UPDATE samtycke_consent_state SET delivery = NULL "
            "WHERE 1 = 0'))\n",
            str(write_guard.PACKAGE / "rogue.py"), "exec",
        ),
        rogue,
    )
    with write_guard.recording() as writes:
        rogue["rogue"](host.session(), text)  # type: ignore[operator]
    host.session().rollback()
    assert [(w.table, w.function, w.allowed) for w in writes] == [
        ("samtycke_consent_state", "rogue", False)
    ]
    write_guard.GUARD.writes.clear()  # keep this test's own check from failing it


def test_the_guard_catches_a_second_writer_inside_the_ledger(host: TestHost) -> None:
    """The guard can fail for the ledger module itself: a function of ledger.py other
    than the one appender and the one projection writer is a violation."""
    _practice(host)
    rogue: dict[str, object] = {}
    exec(
        compile(
            "def set_status(session, text):\n"
            "    session.execute(text('UPDATE samtycke_consent_state SET delivery = NULL "
            "WHERE 1 = 0'))\n"
            "def record_event(session, text):\n"
            "    session.execute(text('DELETE FROM samtycke_consent_event WHERE 1 = 0'))\n",
            str(write_guard.LEDGER), "exec",
        ),
        rogue,
    )
    with write_guard.recording() as writes:
        rogue["set_status"](host.session(), text)  # type: ignore[operator]
        with contextlib.suppress(Exception):  # the ledger refuses deletes; seen before
            rogue["record_event"](host.session(), text)  # type: ignore[operator]
    host.session().rollback()
    assert [(w.table, w.function, w.allowed) for w in writes] == [
        ("samtycke_consent_state", "set_status", False),
        ("samtycke_consent_event", "record_event", False),
    ]
    write_guard.GUARD.writes.clear()  # keep this test's own check from failing it


def test_grant_is_renewed_after_an_earlier_consent_and_expires_from_given_at(
    host: TestHost,
) -> None:
    tenant = _practice(host)
    client = host.new_client(tenant)
    session = host.session()
    practice = practices.require_practice(session, tenant)
    text_version = practice_texts.current_text(session, practice, "sv")
    how = consent.How(channel="manual", method="paper", actor="staff:s1")
    given = datetime(2026, 11, 1, tzinfo=UTC)
    first = consent.grant(session, tenant, client, text_version, how, now=host.now(),
                          validity_days=30, given_at=given)
    second = consent.grant(session, tenant, client, text_version, how, now=host.now(),
                           validity_days=None)
    session.commit()
    assert (first.state, second.state) == (State.GIVEN.value, State.RENEWED.value)
    assert first.expires_at == given + timedelta(days=30) and second.expires_at is None
    assert (first.text_version_id, first.text_sha256) == (text_version.id, text_version.sha256)
    assert consent.expiry(None, given) is None


def test_end_names_the_text_of_the_consent_it_ends_and_refuses_without_one(
    host: TestHost,
) -> None:
    tenant = _practice(host)
    client = host.new_client(tenant)
    session = host.session()
    how = consent.How(channel="manual", method="verbal", actor="staff:s1")
    with pytest.raises(Conflict):
        consent.end(session, tenant, client, how, now=host.now(), by_client=True)
    practice = practices.require_practice(session, tenant)
    shown = practice_texts.current_text(session, practice, "en")
    consent.grant(session, tenant, client, shown, how, now=host.now(), validity_days=None)
    ended = consent.end(session, tenant, client, how, now=host.now(), by_client=False)
    session.commit()
    assert ended.state == State.REVOKED.value
    assert (ended.text_version_id, ended.language) == (shown.id, shown.language)
    row = session.get(ConsentStateRow, (tenant, client, "care"))
    assert row is not None and row.state == State.REVOKED.value


def test_request_records_one_event_per_client_in_one_append(host: TestHost) -> None:
    tenant = _practice(host)
    clients = [host.new_client(tenant) for _ in range(3)]
    session = host.session()
    practice = practices.require_practice(session, tenant)
    shown = practice_texts.current_text(session, practice, "sv")
    with write_guard.recording() as writes:
        made = consent.request(
            session, tenant,
            [consent.Asked(client=c, text=shown, request_id=100 + i)
             for i, c in enumerate(clients)],
            actor="staff:s1", now=host.now(),
        )
    session.commit()
    assert [e.client_ref for e in made] == clients
    assert [e.request_id for e in made] == [100, 101, 102]
    assert [e.seq for e in made] == [1, 2, 3]
    inserts = [w for w in writes if w.table == "samtycke_consent_event"]
    assert len(inserts) == 1  # one executemany
    stored = session.scalars(
        select(ConsentEvent.state).where(ConsentEvent.tenant_ref == tenant)
    ).all()
    assert stored == ["requested"] * 3


def test_delivery_shows_only_on_the_open_request_of_a_waiting_client(host: TestHost) -> None:
    tenant = _practice(host)
    client = host.new_client(tenant)
    request = mail_requests.send_request(host, tenant, client, actor="staff:s1")
    session = host.session()
    consent.delivery(session, tenant, client, request.id, "bounced")
    assert session.get(ConsentStateRow, (tenant, client, "care")).delivery == "bounced"  # type: ignore[union-attr]
    session.get(ConsentRequest, request.id).used_at = host.now()  # type: ignore[union-attr]
    session.flush()
    consent.delivery(session, tenant, client, request.id, "sent")
    session.expire_all()
    assert session.get(ConsentStateRow, (tenant, client, "care")).delivery == "bounced"  # type: ignore[union-attr]
    session.rollback()

"""Erasure that keeps the proof (F18): after the host's client-erased hook no trace of
the client's e-mail address or name is left in any ``samtycke_`` table or queued mail,
the pseudonymous ledger and the chain stay intact, other clients are untouched."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from hostkit import TestHost, staff, submission
from sqlalchemy import Engine, MetaData, func, select

from hookspecs.types import BookingRef, ClientRef, TenantRef
from samtycke_plugin import consent, erasure, export, practice_texts, practices
from samtycke_plugin.access_log import Viewer
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.models import (
    ConsentEvent,
    ConsentRequest,
    ConsentStateRow,
    Evidence,
    OutboxMessage,
)

#: Who reads in these tests (each export records an access-log row).
READER = Viewer(actor="cli:tests", via="cli")


def _person() -> tuple[str, str, str]:
    """A name and address no other test (or practice in the shared database) uses."""
    token = uuid.uuid4().hex[:10]
    return f"Zlatan Un{token}son", f"Zlatan.Un{token}@Example.org", token


def _all_samtycke_rows(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    """Every row of every ``samtycke_`` table, reflected from the database itself."""
    meta = MetaData()
    meta.reflect(engine, only=lambda name, _meta: name.startswith("samtycke_"))
    assert len(meta.tables) >= 9
    rows = []
    with engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            rows += [(name, dict(r)) for r in conn.execute(select(table)).mappings()]
    return rows


def _traces(engine: Engine, needles: list[str]) -> list[str]:
    """Where any needle occurs, case-insensitively, in any column of any app table."""
    found = []
    for table, row in _all_samtycke_rows(engine):
        for column, value in row.items():
            text = (json.dumps(value, ensure_ascii=False, default=str)
                    if isinstance(value, (dict, list)) else str(value)).lower()
            for needle in needles:
                if needle.lower() in text:
                    found.append(f"{table}.{column} contains {needle!r}")
    return found


def _book(host: TestHost, tenant: str, client: str) -> None:
    hooks = host.hooks()
    text = practice_texts.current_text(host.session(), practices.require_practice(host.session(), tenant),
                                "sv")
    sub = submission(tenant, client, ticked=True, text_id=text.id)
    assert hooks.submit_check(sub) == []
    hooks.submitted(sub, BookingRef("b-" + client), ClientRef(client))
    host.session().commit()


def _client_with_everything(host: TestHost, tenant: str, name: str, email: str) -> ClientRef:
    """A client whose data sits in every table the app has: events with evidence (IP,
    user agent, a note naming them), receipts and requests queued with their address and
    name, link tokens."""
    client = host.new_client(tenant, name=name, email=email)
    _book(host, tenant, client)  # given + evidence + receipt mail (with withdrawal link)
    host.advance(hours=1)
    consent.withdraw(host, tenant, client, actor="client", channel="practitioner",
                     method="reported_by_staff", by_client=True,
                     note=f"{name} called and withdrew ({email})")
    host.session().commit()
    host.advance(hours=1)
    mail_requests.send_request(host, tenant, client, actor="staff:s1")  # request + token + mail
    host.session().commit()
    host.advance(hours=1)
    consent.record_manual(host, tenant, client, staff(), method="paper",
                          given_at=host.now() - timedelta(hours=1),
                          note=f"Paper form signed by {name}")
    host.session().commit()
    return client


def _snapshot(host: TestHost, tenant: str, client: str) -> dict[str, Any]:
    session = host.session()
    out: dict[str, Any] = {}
    for model in (ConsentEvent, Evidence, ConsentRequest, OutboxMessage, ConsentStateRow):
        rows = session.scalars(
            select(model).where(model.tenant_ref == tenant, model.client_ref == client)
        ).all()
        out[model.__tablename__] = sorted(
            ({c.key: getattr(r, c.key) for c in model.__table__.columns} for r in rows),
            key=lambda d: json.dumps(d, default=str, sort_keys=True),
        )
    session.rollback()
    return out


def test_erasure_leaves_no_trace_and_keeps_the_proof(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    name, email, token = _person()
    client = _client_with_everything(host, tenant, name, email)
    other = _client_with_everything(host, tenant, "Maja Kvar", "maja.kvar@example.org")
    neighbour = host.new_tenant()
    host.activate(hooks, neighbour, ask_new_clients=True)
    far = _client_with_everything(host, neighbour, "Far Away", "far.away@example.org")
    needles = [name, email, token]
    before = _traces(host.engine, needles)
    assert any("samtycke_outbox.to_addr" in t for t in before), before  # the search can fail
    assert any("samtycke_evidence.note" in t for t in before), before
    assert any("samtycke_outbox.payload" in t for t in before), before
    session = host.session()
    assert session.scalar(select(func.count()).select_from(ConsentRequest).where(
        ConsentRequest.client_ref == client)) >= 1
    events_before = session.scalars(select(ConsentEvent).where(
        ConsentEvent.tenant_ref == tenant, ConsentEvent.client_ref == client
    ).order_by(ConsentEvent.seq)).all()
    kept = [(e.seq, e.state, e.text_version_id, e.text_sha256, e.occurred_at, e.channel,
             e.row_hash) for e in events_before]
    session.rollback()
    untouched = {c: _snapshot(host, t, c) for t, c in ((tenant, other), (neighbour, far))}

    host.advance(days=1)
    hooks.client_erased(TenantRef(tenant), ClientRef(client))
    host.session().commit()
    del host.clients[(tenant, client)]  # the host deletes its client row afterwards

    assert _traces(host.engine, needles) == []
    session = host.session()
    events = session.scalars(select(ConsentEvent).where(
        ConsentEvent.tenant_ref == tenant, ConsentEvent.client_ref == client
    ).order_by(ConsentEvent.seq)).all()
    assert [(e.seq, e.state, e.text_version_id, e.text_sha256, e.occurred_at, e.channel,
             e.row_hash) for e in events[:-1]] == kept  # the pseudonymous proof is intact
    assert events[-1].state == "erased" and events[-1].actor == "host"
    assert events[-1].occurred_at == host.now()
    for model in (Evidence, ConsentRequest, OutboxMessage):
        assert session.scalar(select(func.count()).select_from(model).where(
            model.tenant_ref == tenant, model.client_ref == client)) == 0
    state = session.get(ConsentStateRow, (tenant, client, "care"))
    assert state is not None and state.state == "erased"
    assert verify_chain(session, tenant).ok
    assert verify_chain(session, neighbour).ok
    session.rollback()
    assert {c: _snapshot(host, t, c) for t, c in ((tenant, other), (neighbour, far))} == (
        untouched)
    # What a practitioner can still show: the history without name or evidence.
    history = export.client_history(host, tenant, client, by=READER)
    assert history["client"]["name"] is None and history["status"]["code"] == "erased"
    assert [e["evidence_status"] for e in history["events"]].count("erased") >= 3
    assert history["chain"]["ok"]
    session.rollback()


def test_erasure_is_idempotent_and_works_after_deactivation(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, ask_new_clients=True)
    client = _client_with_everything(host, tenant, *_person()[:2])
    hooks.deactivate(TenantRef(tenant), "samtycke")
    host.session().commit()
    first = erasure.erase_client(host, tenant, client)
    host.session().commit()
    assert first.held_data and first.erased_seq is not None
    assert first.evidence_deleted >= 3 and first.requests_deleted >= 1
    assert first.outbox_deleted >= 2
    second = erasure.erase_client(host, tenant, client)
    host.session().commit()
    assert not second.held_data and second.erased_seq is None
    assert host.session().scalar(select(func.count()).select_from(ConsentEvent).where(
        ConsentEvent.tenant_ref == tenant, ConsentEvent.state == "erased")) == 1
    assert verify_chain(host.session(), tenant).ok
    host.session().rollback()


def test_erasure_of_unknown_clients_and_practices_writes_nothing(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, ask_new_clients=True)
    before = host.session().scalar(select(func.count()).select_from(ConsentEvent).where(
        ConsentEvent.tenant_ref == tenant))
    nobody = erasure.erase_client(host, tenant, "c-never-seen")
    never = erasure.erase_client(host, "t-never-activated", "c-1")
    odd = erasure.erase_client(host, tenant, "a ref the app would never store")
    host.session().commit()
    assert nobody.erased_seq is None and not nobody.held_data
    assert never.erased_seq is None and odd.erased_seq is None
    assert host.session().scalar(select(func.count()).select_from(ConsentEvent).where(
        ConsentEvent.tenant_ref == tenant)) == before
    host.session().rollback()


def test_erasure_spares_a_family_members_mail_to_a_shared_address(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, ask_new_clients=True)
    parent = _client_with_everything(host, tenant, "Parent Shared", "family@example.org")
    child = _client_with_everything(host, tenant, "Child Shared", "family@example.org")
    child_mail = _snapshot(host, tenant, child)["samtycke_outbox"]
    assert child_mail
    hooks.client_erased(TenantRef(tenant), ClientRef(parent))
    host.session().commit()
    assert _snapshot(host, tenant, child)["samtycke_outbox"] == child_mail
    assert _snapshot(host, tenant, parent)["samtycke_outbox"] == []


def test_hook_booking_client_erased(host: TestHost) -> None:
    """The host's erasure hook, called through the typed facade exactly as a host does."""
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, ask_new_clients=True)
    name, email, token = _person()
    client = _client_with_everything(host, tenant, name, email)
    assert hooks.client_erased(TenantRef(tenant), ClientRef(client)) is None
    host.session().commit()
    session = host.session()
    last = session.scalars(select(ConsentEvent).where(
        ConsentEvent.tenant_ref == tenant, ConsentEvent.client_ref == client
    ).order_by(ConsentEvent.seq.desc()).limit(1)).one()
    assert last.state == "erased"
    assert isinstance(last.occurred_at, datetime)
    assert session.scalar(select(func.count()).select_from(Evidence).where(
        Evidence.client_ref == client)) == 0
    assert verify_chain(session, tenant).ok
    session.rollback()
    assert _traces(host.engine, [token]) == []


def test_erasure_ends_the_consent_to_every_purpose(host: TestHost) -> None:
    """An erased client's consent to a purpose besides the default one does not outlive
    the erasure: the platform's other apps are told they may not use it."""
    from samtycke_plugin import purposes

    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, ask_new_clients=True)
    purposes.add(host.session(), tenant, key="newsletter", names={"sv": "Nyhetsbrev"},
                 legal_basis={}, required=False, validity_days=None,
                 bodies={"sv": "Vi skickar vårt nyhetsbrev en gång i månaden.\n"},
                 actor="staff:s1", now=host.now())
    client = host.new_client(tenant, name=_person()[0], email=_person()[1])
    session = host.session()
    practice = practices.require_practice(session, tenant)
    how = consent.How(channel="email_link", method="button", actor="client")
    for key in ("care", "newsletter"):
        consent.grant(session, tenant, client,
                      practice_texts.current_text(session, practice, "sv", key), how,
                      now=host.now(), validity_days=None, purpose=key)
    session.commit()
    ref = ClientRef(client)
    assert hooks.consent_lookup(TenantRef(tenant), [ref], "newsletter")[ref].may_use
    result = erasure.erase_client(host, tenant, client)
    host.session().commit()
    assert result.erased_seq is not None
    for key in ("care", "newsletter"):
        answer = hooks.consent_lookup(TenantRef(tenant), [ref], key)[ref]
        assert not answer.may_use and answer.status == "erased"
    erased = host.session().scalars(select(ConsentEvent.purpose_key).where(
        ConsentEvent.tenant_ref == tenant, ConsentEvent.state == "erased")
        .order_by(ConsentEvent.seq)).all()
    assert list(erased) == ["care", "newsletter"]
    # The erasure wrote through a session of its own: the practice row this test's
    # session read before is stale (it does not expire on commit).
    host.session().expire_all()
    assert verify_chain(host.session(), tenant).ok
    host.session().rollback()

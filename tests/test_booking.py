"""The booking-side consent flow through the hooks, as a host drives it (F4, F8, F9, F11, F12)."""

from __future__ import annotations

import pytest
from hostkit import TestHost, count_statements, staff, submission
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from hookspecs.facade import AppHooks
from hookspecs.types import (
    BookingFormContext,
    BookingRef,
    BookingSubmission,
    ClientRef,
    TenantRef,
)
from samtycke_plugin import consent, hostdb, practice_texts, practices
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.email.outbox import KIND_RECEIPT
from samtycke_plugin.ledger import NewEvent, append, lock_head, projection, replay
from samtycke_plugin.models import (
    ConsentEvent,
    ConsentStateRow,
    Evidence,
    OutboxMessage,
    Practice,
    TextVersion,
)
from samtycke_plugin.rules import State


def _events(host: TestHost, tenant: str) -> list[ConsentEvent]:
    return list(
        host.session().scalars(
            select(ConsentEvent).where(ConsentEvent.tenant_ref == tenant).order_by(ConsentEvent.seq)
        )
    )


def _form_text_id(host: TestHost, hooks, tenant: str, client: str | None) -> int | None:  # type: ignore[no-untyped-def]
    frags = hooks.form_fragments(
        BookingFormContext(
            tenant=TenantRef(tenant), client=ClientRef(client) if client else None, locale="sv"
        )
    )
    host.session().rollback()
    if not frags:
        return None
    html = frags[0].html
    marker = 'name="samtycke_text" value="'
    start = html.index(marker) + len(marker)
    return int(html[start : html.index('"', start)])


def _ticked_and_checked(host: TestHost) -> tuple[AppHooks, str, str, BookingSubmission]:
    """A new client of a practice that requires consent, who ticked the box on the
    booking form: the hooks, the practice, the client and the submission, which passed
    the check (the host's record step comes next)."""
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    sub = submission(tenant, client, ticked=True, text_id=_form_text_id(host, hooks, tenant, client))
    assert hooks.submit_check(sub) == []
    return hooks, tenant, client, sub


def _book(host: TestHost, hooks, tenant: str, client: str, **kw) -> list:  # type: ignore[no-untyped-def]
    sub = submission(tenant, client, **kw)
    vetoes = hooks.submit_check(sub)
    if vetoes:
        host.session().rollback()
        return vetoes
    hooks.submitted(sub, BookingRef("b-" + client), ClientRef(client))
    host.session().commit()
    return []


def test_required_mode_blocks_without_tick_and_writes_nothing(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    text_id = _form_text_id(host, hooks, tenant, client)
    assert text_id is not None

    with count_statements(host.engine) as statements:
        vetoes = hooks.submit_check(submission(tenant, client, ticked=False, text_id=text_id))
    assert [v.key for v in vetoes] == ["samtycke.consent_required"]
    assert vetoes[0].field_name == "samtycke_consent"
    assert vetoes[0].message.endswith(".") and "samtycke_" not in vetoes[0].message
    assert "kryssa" in vetoes[0].message  # Swedish, names the box
    assert not any(
        s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) for s in statements
    )
    host.session().rollback()
    assert _events(host, tenant) == []

    en = hooks.submit_check(submission(tenant, client, ticked=False, text_id=text_id, locale="en"))
    assert "tick the box" in en[0].message


def test_ticked_box_records_given_with_exact_text_and_evidence(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    text_id = _form_text_id(host, hooks, tenant, client)
    assert _book(host, hooks, tenant, client, ticked=True, text_id=text_id) == []

    [event] = _events(host, tenant)
    text = host.session().get(TextVersion, text_id)
    assert text is not None
    assert (event.state, event.channel, event.method, event.actor) == (
        "given",
        "online_booking",
        "checkbox",
        "client",
    )
    assert (event.text_version_id, event.text_sha256, event.language) == (
        text.id,
        text.sha256,
        "sv",
    )
    assert event.booking_ref == "b-" + client
    evidence = host.session().get(Evidence, event.id)
    assert evidence is not None
    assert evidence.ip_prefix == "203.0.113.0/24"
    assert evidence.user_agent == "Mozilla/5.0 (test)"
    assert consent.client_status(host, tenant, client).status.value == "valid"
    assert _form_text_id(host, hooks, tenant, client) is None  # not asked again
    assert verify_chain(host.session(), tenant).ok


def test_a_practice_loaded_in_the_apps_session_follows_the_chain_head(
    host: TestHost,
) -> None:
    """Code of the app that has the practice in its session (an earlier step of the same
    hook or unit of work) sees the head the booking just wrote, in the same transaction
    and without a reload: the record step updates the object in the identity map, found
    by the key ``Session.identity_key`` gives."""
    hooks, tenant, client, sub = _ticked_and_checked(host)
    with hostdb.in_host_transaction(host) as session:
        practice = practices.get_practice(session, tenant)
        assert practice is not None
        before = practice.head_seq
        hooks.submitted(sub, BookingRef("b-seen"), ClientRef(client))
        with count_statements(host.engine) as statements:
            seen = (practice.head_seq, practice.head_hash)
        assert statements == []  # from the object, not loaded again
        assert session.identity_key(type(practice), tenant) in session.identity_map
    [event] = _events(host, tenant)
    assert seen == (event.seq, event.row_hash) and event.seq == before + 1
    host.session().commit()


def test_a_bookings_writes_name_the_event_and_are_a_fixed_few_statements(
    host: TestHost,
) -> None:
    """The event, its evidence, the head, the projection and the receipt's outbox row are
    written together and every row names the event (its id or seq); the record step is
    seven statements whatever the practice holds: lock, gate read and those five
    writes (PostgreSQL sends them in two round trips)."""
    hooks, tenant, client, sub = _ticked_and_checked(host)
    with count_statements(host.engine) as statements:
        hooks.submitted(sub, BookingRef("b-one"), ClientRef(client))
    host.session().commit()
    assert len(statements) == 7, statements
    [event] = _events(host, tenant)
    session = host.session()
    evidence = session.get(Evidence, event.id)
    assert evidence is not None and (evidence.tenant_ref, evidence.client_ref) == (tenant, client)
    row = session.get(ConsentStateRow, (tenant, client, "care"))
    assert row is not None and (row.state, row.last_seq) == ("given", event.seq)
    practice = practices.get_practice(session, tenant)
    assert practice is not None
    assert (practice.head_seq, practice.head_hash) == (event.seq, event.row_hash)
    [receipt] = session.scalars(
        select(OutboxMessage).where(OutboxMessage.tenant_ref == tenant)
    ).all()
    assert (receipt.kind, receipt.client_ref, receipt.payload) == (
        KIND_RECEIPT, client, {"event_seq": event.seq}
    )
    assert verify_chain(session, tenant).ok
    assert projection(session, tenant) == replay(session, tenant)


def test_a_head_that_moved_since_it_was_read_is_refused(host: TestHost) -> None:
    """The chain cannot fork: writes made on a chain head read before another append
    moved it are refused by the database (the event's ``(tenant, seq)`` is taken; the
    head's conditional move is the second guard), and the caller's transaction rolls
    back: nothing is chained to the wrong link."""
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant)
    session = host.session()
    session.commit()
    now = host.now()
    stale = lock_head(session, tenant)
    append(session, [NewEvent(tenant_ref=tenant, client_ref="c-first", state=State.GIVEN,
                              channel="manual", actor="staff:s1", occurred_at=now,
                              text_major=1, given_at=now)])
    late = NewEvent(tenant_ref=tenant, client_ref="c-late", state=State.GIVEN,
                    channel="online_booking", method="checkbox", actor="client",
                    occurred_at=now, text_major=1, given_at=now, ip_address="198.51.100.9")
    with pytest.raises(IntegrityError, match="seq"):
        append(session, [late], head=stale)
    session.rollback()
    assert _events(host, tenant) == []
    assert verify_chain(session, tenant).ok


def test_record_is_in_the_hosts_transaction(host: TestHost) -> None:
    hooks, tenant, client, sub = _ticked_and_checked(host)
    hooks.submitted(sub, BookingRef("b1"), ClientRef(client))
    host.session().rollback()  # the host's booking failed: nothing of ours remains
    assert _events(host, tenant) == []
    assert consent.client_status(host, tenant, client).status.value == "unknown"
    host.session().rollback()
    assert verify_chain(host.session(), tenant).ok


def test_optional_mode_lets_booking_through_and_records_refusal(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=False)
    client = host.new_client(tenant)
    text_id = _form_text_id(host, hooks, tenant, client)
    assert _book(host, hooks, tenant, client, ticked=False, text_id=text_id) == []
    [event] = _events(host, tenant)
    assert event.state == "refused"
    assert consent.client_status(host, tenant, client).status.value == "refused"
    # not asked again within the practice's pause (365 days): the next booking records
    # no second refusal
    assert _form_text_id(host, hooks, tenant, client) is None
    assert _book(host, hooks, tenant, client, ticked=False, text_id=None) == []
    assert len(_events(host, tenant)) == 1
    # asked again once the pause is over
    host.advance(days=366)
    assert _form_text_id(host, hooks, tenant, client) is not None


def test_only_new_clients_asked_when_configured(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, ask_new_clients=True, ask_clients_without_consent=False)
    existing = host.new_client(tenant)
    assert _form_text_id(host, hooks, tenant, existing) is None
    assert _form_text_id(host, hooks, tenant, None) is not None


def test_content_change_outdates_everyone_with_one_row_and_reasks(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    clients = [host.new_client(tenant) for _ in range(3)]
    for c in clients:
        assert (
            _book(
                host, hooks, tenant, c, ticked=True, text_id=_form_text_id(host, hooks, tenant, c)
            )
            == []
        )
    before = (
        host.session()
        .execute(select(ConsentStateRow).where(ConsentStateRow.tenant_ref == tenant))
        .scalars()
        .all()
    )
    snapshot_before = {(r.client_ref, r.state, r.text_major, r.last_seq) for r in before}
    host.session().rollback()

    preview = practice_texts.preview_text_change(
        host,
        tenant,
        language="sv",
        body="Ny text om hur vi hanterar dina uppgifter.\n",
        kind="content",
    )
    assert preview.affected == 3 and preview.new_major == 2
    assert any(line.op == "+" for line in preview.diff)
    host.session().rollback()

    with count_statements(host.engine) as statements:
        practice_texts.publish_text(
            host,
            tenant,
            bodies={"sv": "Ny text om hur vi hanterar dina uppgifter.\n"},
            kind="content",
            reason="Ny underbiträde",
            actor="staff:s1",
            expected_major=1,
        )
        host.session().commit()
    writes = [
        s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    # the practice's current major, the default purpose's copy of it, the new text row
    assert len(writes) == 3
    assert sorted(s.split()[0] + " " + s.split()[1 if s.startswith("UPDATE") else 2]
                  for s in (w.lstrip() for w in writes)) == [
        "INSERT samtycke_text_version", "UPDATE samtycke_practice", "UPDATE samtycke_purpose"
    ]
    assert not any("samtycke_consent_state" in s for s in writes)
    after = (
        host.session()
        .execute(select(ConsentStateRow).where(ConsentStateRow.tenant_ref == tenant))
        .scalars()
        .all()
    )
    assert {(r.client_ref, r.state, r.text_major, r.last_seq) for r in after} == snapshot_before
    assert {consent.client_status(host, tenant, c).status.value for c in clients} == {"outdated"}

    # F12: asked again at the next online booking, and the new grant is "renewed"
    new_id = _form_text_id(host, hooks, tenant, clients[0])
    assert new_id is not None and new_id != _events(host, tenant)[0].text_version_id
    assert (
        _book(host, hooks, tenant, clients[0], ticked=False, text_id=new_id)[0].key
        == "samtycke.consent_required"
    )
    assert _book(host, hooks, tenant, clients[0], ticked=True, text_id=new_id) == []
    assert _events(host, tenant)[-1].state == "renewed"
    assert consent.client_status(host, tenant, clients[0]).status.value == "valid"
    assert verify_chain(host.session(), tenant).ok
    assert replay(host.session(), tenant) == projection(host.session(), tenant)


def test_correction_keeps_consents_valid(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    assert (
        _book(
            host,
            hooks,
            tenant,
            client,
            ticked=True,
            text_id=_form_text_id(host, hooks, tenant, client),
        )
        == []
    )
    old = practice_texts.current_text(
        host.session(), practices.require_practice(host.session(), tenant), "sv"
    )
    preview = practice_texts.preview_text_change(
        host, tenant, language="sv", body=old.body.replace("behöver", "behöfver"), kind="correction"
    )
    assert preview.affected == 0 and (preview.new_major, preview.new_minor) == (1, 1)
    [v] = practice_texts.publish_text(
        host,
        tenant,
        bodies={"sv": old.body.replace("behöver", "behöfver")},
        kind="correction",
        reason="stavfel",
        actor="staff:s1",
        expected_major=1,
    )
    host.session().commit()
    assert (v.major, v.minor, v.change_kind) == (1, 1, "correction")
    assert consent.client_status(host, tenant, client).status.value == "valid"
    assert _form_text_id(host, hooks, tenant, client) is None


def test_text_changed_while_booking_is_vetoed_retryably(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    shown = _form_text_id(host, hooks, tenant, client)
    practice_texts.publish_text(
        host,
        tenant,
        bodies={"sv": "En helt ny text om personuppgifter.\n"},
        kind="content",
        reason=None,
        actor="staff:s1",
        expected_major=1,
    )
    host.session().commit()
    vetoes = _book(host, hooks, tenant, client, ticked=True, text_id=shown)
    assert [(v.key, v.retryable) for v in vetoes] == [("samtycke.text_changed", True)]
    assert _events(host, tenant) == []


def test_forged_text_id_from_another_practice_is_not_accepted(host: TestHost) -> None:
    hooks = host.hooks()
    a, b = host.new_tenant(), host.new_tenant()
    host.activate(hooks, a, require_consent_for_online_booking=True)
    host.activate(hooks, b, require_consent_for_online_booking=True)
    client = host.new_client(a)
    other_text = _form_text_id(host, hooks, b, None)
    vetoes = _book(host, hooks, a, client, ticked=True, text_id=other_text)
    assert [v.key for v in vetoes] == ["samtycke.text_changed"]
    assert _events(host, a) == [] and _events(host, b) == []


def test_check_fails_closed_when_the_database_is_unreadable(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    client = host.new_client(tenant)

    class Broken(Exception):
        pass

    def boom() -> object:
        raise Broken("database unreachable")

    host.connection = boom  # type: ignore[method-assign]
    vetoes = hooks.submit_check(submission(tenant, client, ticked=True, text_id=1))
    assert [(v.key, v.retryable) for v in vetoes] == [("booking.check_failed", True)]
    assert "Försök igen" in vetoes[0].message


def test_badges_for_a_page_are_one_query(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    clients = [host.new_client(tenant) for _ in range(50)]
    for c in clients[:10]:
        _book(host, hooks, tenant, c, ticked=True, text_id=_form_text_id(host, hooks, tenant, c))
    host.session().commit()
    host.session().get(Practice, tenant)  # the practice row is in the session already
    with count_statements(host.engine) as statements:
        badges = hooks.list_badges(tenant, clients, "sv")
    assert len([s for s in statements if "samtycke_consent_state" in s]) == 1
    assert len(statements) <= 2
    assert [badges[c][0].tone for c in clients[:10]] == ["ok"] * 10
    assert {badges[c][0].label for c in clients[10:]} == {"Inget samtycke"}


def test_profile_panel_shows_status_and_actions(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    [panel] = hooks.profile_panels(tenant, client, staff(), "sv")
    assert panel.tone == "missing" and "Inhämta samtycke" in panel.html
    consent.record_manual(
        host, tenant, client, staff(), method="paper", given_at=host.now(), note="Papper i pärm"
    )
    host.session().commit()
    [panel] = hooks.profile_panels(tenant, client, staff(), "en")
    assert (
        panel.tone == "ok" and panel.label == "Valid consent" and "Record withdrawal" in panel.html
    )
    assert (
        host.session().scalar(
            select(func.count()).select_from(ConsentEvent).where(ConsentEvent.tenant_ref == tenant)
        )
        == 1
    )

"""Single and batch e-mail requests (F5b, F7), the triggers (staff-created client, staff
booking), and the bulk ledger append they use — on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hostkit import QueryHost, TestHost, complete_waiting_requests, staff, submission
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, update

from hookspecs.types import (
    BookingRef,
    ClientCreated,
    ClientInfo,
    ClientRef,
    ClientSelect,
    TenantRef,
)
from samtycke_plugin import consent, practice_texts, practices
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.email import addresses
from samtycke_plugin.email import batch as batch_requests
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.errors import InputError, NotActive, NotFound
from samtycke_plugin.ledger import NewEvent, append, projection, replay
from samtycke_plugin.models import (
    KIND_REQUEST,
    ConsentEvent,
    ConsentRequest,
    Evidence,
    OutboxMessage,
)
from samtycke_plugin.rules import State


def _practice(host: TestHost, **settings: object) -> TenantRef:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, **settings)
    return tenant


def _count(host: TestHost, model: type, tenant: str, *where: object) -> int:
    host.session().rollback()
    return int(
        host.session().scalar(
            select(func.count()).select_from(model).where(model.tenant_ref == tenant, *where)  # type: ignore[attr-defined]
        )
        or 0
    )


def _pending(host: TestHost, tenant: str) -> list[str]:
    host.session().rollback()
    return list(
        host.session().scalars(
            select(ConsentRequest.client_ref).where(
                ConsentRequest.tenant_ref == tenant,
                ConsentRequest.purpose == "consent",
                ConsentRequest.used_at.is_(None),
                ConsentRequest.revoked_at.is_(None),
            )
        )
    )


# -- single request ----------------------------------------------------------------------------


def test_send_request_writes_request_event_and_outbox_in_one_unit(host: TestHost) -> None:
    tenant = _practice(host)
    client = host.new_client(tenant, email="  Anna@EXAMPLE.org ")
    req = mail_requests.send_request(host, tenant, client, actor="staff:s1")
    # Not committed by send_request: a rollback leaves nothing behind.
    host.session().rollback()
    for model in (ConsentRequest, ConsentEvent, OutboxMessage):
        assert _count(host, model, tenant) == 0
    req = mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    [event] = host.session().scalars(select(ConsentEvent).where(ConsentEvent.tenant_ref == tenant)).all()
    [mail] = host.session().scalars(select(OutboxMessage).where(OutboxMessage.tenant_ref == tenant)).all()
    assert (event.state, event.channel, event.actor, event.request_id) == ("requested", "email", "staff:s1", req.id)
    assert event.text_version_id == req.text_version_id and event.text_major == 1
    assert (mail.kind, mail.to_addr, mail.request_id, mail.status) == ("consent_request", "Anna@example.org", req.id, "queued")
    assert mail.locale == "sv" and mail.payload == {"name": "Anna Svensson"}
    assert (req.purpose, req.client_ref, req.created_by, req.used_at, req.revoked_at) == ("consent", client, "staff:s1", None, None)


@pytest.mark.parametrize(
    ("email", "field"),
    [(None, "email"), ("", "email"), ("not-an-address", "email"), ("a@b", "email"),
     ("anna@example.org\r\nBcc: x@example.org", "email")],
)
def test_unusable_addresses_are_refused_clearly_and_nothing_is_queued(
    host: TestHost, email: str | None, field: str
) -> None:
    tenant = _practice(host)
    client = host.new_client(tenant, email=email)
    with pytest.raises(InputError) as info:
        mail_requests.send_request(host, tenant, client, actor="staff:s1")
    assert info.value.field == field
    message = str(info.value)
    assert "e-mail address" in message and message.endswith(".")
    host.session().rollback()
    for model in (ConsentRequest, ConsentEvent, OutboxMessage):
        assert _count(host, model, tenant) == 0


def test_unknown_other_practice_and_inactive(host: TestHost) -> None:
    tenant, other = _practice(host), _practice(host)
    theirs = host.new_client(other)
    with pytest.raises(NotFound):
        mail_requests.send_request(host, tenant, theirs, actor="staff:s1")
    with pytest.raises(NotFound):
        mail_requests.send_request(host, tenant, "nobody", actor="staff:s1")
    host.session().rollback()
    practices.deactivate(host, tenant)
    host.session().commit()
    mine = host.new_client(tenant)
    with pytest.raises(NotActive):
        mail_requests.send_request(host, tenant, mine, actor="staff:s1")
    host.session().rollback()
    assert _count(host, ConsentRequest, tenant) == _count(host, ConsentRequest, other) == 0


def test_double_click_sends_one_and_a_later_resend_revokes_the_older_link(host: TestHost) -> None:
    tenant = _practice(host)
    client = host.new_client(tenant)
    first = mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    again = mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    assert again.id == first.id
    assert _count(host, OutboxMessage, tenant) == 1 and _count(host, ConsentEvent, tenant) == 1

    # The address was corrected: a new request at once, the old link revoked.
    host.clients[(tenant, client)] = ClientInfo(ref=client, name="Anna", email="ny@example.org", locale="sv")
    second = mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    assert second.id != first.id
    host.advance(minutes=2)
    third = mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    assert third.id not in (first.id, second.id)
    assert _pending(host, tenant) == [client]
    revoked = _count(host, ConsentRequest, tenant, ConsentRequest.revoked_at.is_not(None))
    assert revoked == 2
    statuses = host.session().scalars(
        select(OutboxMessage.status).where(OutboxMessage.tenant_ref == tenant).order_by(OutboxMessage.id)
    ).all()
    assert statuses == ["cancelled", "cancelled", "queued"]
    assert verify_chain(host.session(), tenant).ok


# -- batch request ---------------------------------------------------------------------------------


def _mixed_practice(host: TestHost) -> tuple[TenantRef, dict[str, list[ClientRef]]]:
    tenant = _practice(host)
    groups: dict[str, list[ClientRef]] = {"ask": [], "valid": [], "no_email": [], "bad_name": [], "pending": []}
    for i in range(12):
        groups["ask"].append(host.new_client(tenant, name=f"Klient {i}", email=f"k{i}@example.org",
                                             locale="en" if i % 3 == 0 else "sv"))
    for _ in range(3):
        ref = host.new_client(tenant)
        consent.record_manual(host, tenant, ref, staff(), method="paper",
                              given_at=datetime(2026, 11, 1, tzinfo=UTC), note=None)
        groups["valid"].append(ref)
    groups["no_email"] += [host.new_client(tenant, email=None), host.new_client(tenant, email="nope")]
    groups["bad_name"].append(host.new_client(tenant, name="Eve\nBcc: x@example.org"))
    pending = host.new_client(tenant)
    mail_requests.send_request(host, tenant, pending, actor="staff:s1")
    groups["pending"].append(pending)
    host.session().commit()
    return tenant, groups


def test_batch_asks_everyone_without_valid_consent_once(batch_host: TestHost) -> None:
    host = batch_host
    tenant, groups = _mixed_practice(host)
    seen: list[tuple[int, int]] = []
    result = batch_requests.request_batch(
        host, tenant, actor="staff:s1", chunk_size=5, progress=lambda d, t: seen.append((d, t))
    )
    assert (result.asked, result.skipped_valid, result.skipped_pending, result.skipped_no_email,
            result.skipped_bad_name) == (12, 3, 1, 2, 1)
    assert result.total == 19
    if isinstance(host, QueryHost):  # set-based: one statement for the whole practice
        assert seen == [(19, 19)] and host.queries == 1
    else:
        assert [d for d, _ in seen] == [5, 10, 15, 19]
    # Queued: one outbox row each; the link and the event come when the relay claims it.
    assert sorted(_pending(host, tenant)) == sorted(groups["pending"])
    # (the valid ones' consents, recorded on paper, have their receipts queued too)
    assert _count(host, OutboxMessage, tenant, OutboxMessage.kind == KIND_REQUEST) == 13
    assert _count(host, ConsentEvent, tenant, ConsentEvent.state == "requested") == 1
    assert batch_requests.request_batch(host, tenant, actor="staff:s1").skipped_pending == 13
    assert complete_waiting_requests(host, tenant) == 12
    assert sorted(_pending(host, tenant)) == sorted(groups["ask"] + groups["pending"])
    assert _count(host, OutboxMessage, tenant, OutboxMessage.kind == KIND_REQUEST) == 13
    langs = dict(host.session().execute(
        select(OutboxMessage.client_ref, OutboxMessage.locale).where(OutboxMessage.tenant_ref == tenant)
    ).all())
    assert langs[groups["ask"][0]] == "en" and langs[groups["ask"][1]] == "sv"
    for ref in groups["ask"]:
        assert consent.client_status(host, tenant, ref).status.value == "requested"
    for ref in groups["valid"]:
        assert consent.client_status(host, tenant, ref).status.value == "valid"

    again = batch_requests.request_batch(host, tenant, actor="staff:s1")
    assert again.asked == 0 and again.skipped_pending == 13
    assert _count(host, OutboxMessage, tenant, OutboxMessage.kind == KIND_REQUEST) == 13
    assert _count(host, ConsentEvent, tenant, ConsentEvent.state == "requested") == 13
    host.session().rollback()
    assert verify_chain(host.session(), tenant).ok
    assert projection(host.session(), tenant) == replay(host.session(), tenant)


def _odd_practice(host: TestHost) -> tuple[TenantRef, list[ClientRef]]:
    """The mixed practice, and clients whose handling is easy to get wrong: an address to
    normalise, one only email-validator takes, an expired link (asked again), a client
    already waiting in the outbox (not asked twice) and one in another practice."""
    tenant, groups = _mixed_practice(host)
    odd = [
        host.new_client(tenant, name="Åsa", email="  Asa@EXAMPLE.org "),
        host.new_client(tenant, name="Jörg", email="jorg@exämple.de"),
        host.new_client(tenant, name="Tom", email="tom@localhost"),  # special-use: unusable
    ]
    waiting = host.new_client(tenant, name="Väntar", email="w@example.org")
    broke = host.new_client(tenant, name="Bruten", email="b@example.org")
    result = batch_requests.request_batch(host, tenant, actor="staff:s0", clients=[waiting, broke])
    assert result.asked == 2
    host.clients[(tenant, broke)] = ClientInfo(ref=broke, name="Bruten", email="b@", locale="sv")
    expired = host.new_client(tenant, name="Gammal", email="g@example.org")
    link = mail_requests.send_request(host, tenant, expired, actor="staff:s0")
    host.session().execute(update(ConsentRequest).where(ConsentRequest.id == link.id).values(
        expires_at=host.now() - timedelta(seconds=1)
    ))
    host.session().commit()
    elsewhere = host.new_tenant()
    host.new_client(elsewhere, email="annan@example.org")
    return tenant, [*odd, waiting, broke, expired, *[c for g in groups.values() for c in g]]


def test_the_set_based_batch_does_what_the_streamed_one_does(engine: Engine) -> None:
    """A host that offers ``client_query`` gets the set-based batch: the same clients
    asked, the same counts, and after the relay's claim the same rows, as a host that
    only streams its clients (same practice shape, same clock)."""
    outcome = {}
    for kind in (TestHost, QueryHost):
        host = kind(engine)
        tenant, clients = _odd_practice(host)
        result = batch_requests.request_batch(host, tenant, actor="staff:s1")
        assert result.total == len(clients)
        asked = set(host.session().scalars(
            select(OutboxMessage.client_ref).where(
                OutboxMessage.tenant_ref == tenant, OutboxMessage.status == "queued"
            )
        ))
        complete_waiting_requests(host, tenant)
        rows = host.session().execute(
            select(OutboxMessage.client_ref, OutboxMessage.to_addr, OutboxMessage.locale,
                   OutboxMessage.payload, OutboxMessage.status)
            .where(OutboxMessage.tenant_ref == tenant, OutboxMessage.request_id.is_not(None),
                   OutboxMessage.kind == KIND_REQUEST)
        ).all()
        ids = host.session().scalars(
            select(OutboxMessage.message_id).where(OutboxMessage.tenant_ref == tenant)
        ).all()
        assert len(set(ids)) == len(ids)
        assert all(re.fullmatch(r"<samtycke\.[0-9a-f]+\.[0-9a-f]{16}(\.\d+)?@booking\.test>", i)
                   for i in ids), ids
        position = {ref: i for i, ref in enumerate(clients)}
        outcome[kind] = (
            attrs.evolve(result, batch_key=""),
            sorted(position[ref] for ref in asked),
            sorted((position[r.client_ref], r.to_addr, r.locale, str(r.payload), r.status)
                   for r in rows),
        )
        host.session().rollback()
        assert verify_chain(host.session(), tenant).ok
        host.close()
    assert outcome[TestHost] == outcome[QueryHost]
    result = outcome[QueryHost][0]
    assert (result.asked, result.skipped_valid, result.skipped_pending, result.skipped_no_email,
            result.skipped_bad_name) == (15, 3, 2, 4, 1)


class _TwiceHost(QueryHost):
    """A host whose client query lists every client twice (a join in it, say)."""

    __test__ = False

    def client_query(self, tenant: TenantRef) -> ClientSelect:
        once = super().client_query(tenant)
        return ClientSelect(sql=f"{once.sql} UNION ALL {once.sql}", params=once.params)


def test_a_client_listed_twice_is_asked_and_counted_once(engine: Engine) -> None:
    results = []
    for kind in (QueryHost, _TwiceHost):
        host = kind(engine)
        tenant, clients = _odd_practice(host)
        result = batch_requests.request_batch(host, tenant, actor="staff:s1")
        results.append(attrs.evolve(result, batch_key=""))
        assert batch_requests.count_clients(host, tenant) == len(clients)
        host.close()
    assert results[0] == results[1]
    assert results[1].total == 25


@pytest.mark.parametrize("others", ["none", "unmailable", "waiting"])
def test_a_practice_name_unusable_in_mail_stops_a_batch_that_would_mail(
    batch_host: TestHost, others: str
) -> None:
    """Only a batch that would mail someone checks the practice's name (both batches):
    one whose clients cannot be mailed anyway runs; one whose clients are all waiting
    already stops, as a run that mails them would."""
    host = batch_host
    tenant = _practice(host)
    client = host.new_client(tenant, email=None if others == "unmailable" else "k@example.org")
    if others == "waiting":
        assert batch_requests.request_batch(host, tenant, actor="staff:s0", clients=[client]).asked == 1
    before = _count(host, OutboxMessage, tenant)
    host.practices[tenant] = attrs.evolve(host.practices[tenant], name="Lugn\nBcc: x@example.org")
    if others == "unmailable":
        assert batch_requests.request_batch(host, tenant, actor="staff:s1").skipped_no_email == 1
    else:
        with pytest.raises(InputError) as info:
            batch_requests.request_batch(host, tenant, actor="staff:s1")
        assert info.value.field == "practice_name"
    assert _count(host, OutboxMessage, tenant) == before


def test_count_clients_counts_the_practice_only(batch_host: TestHost) -> None:
    host = batch_host
    tenant, other = _practice(host), _practice(host)
    for i in range(7):
        host.new_client(tenant, email=f"k{i}@example.org")
    host.new_client(other)
    assert batch_requests.count_clients(host, tenant) == 7
    assert batch_requests.count_clients(host, other) == 1
    assert batch_requests.count_clients(host, host.new_tenant()) == 0


def test_batch_for_given_clients_skips_unknown_and_other_practices(host: TestHost) -> None:
    tenant, other = _practice(host), _practice(host)
    mine = [host.new_client(tenant) for _ in range(3)]
    theirs = host.new_client(other)
    result = batch_requests.request_batch(host, tenant, actor="staff:s1", clients=[*mine, theirs, "ghost"])
    assert (result.asked, result.skipped_unknown) == (3, 2)
    assert _count(host, ConsentRequest, other) == 0 and _count(host, ConsentEvent, other) == 0


def test_batch_replaces_expired_and_outdated_links(batch_host: TestHost) -> None:
    host = batch_host
    tenant = _practice(host, request_link_days=2)
    clients = [host.new_client(tenant) for _ in range(4)]
    assert batch_requests.request_batch(host, tenant, actor="staff:s1").asked == 4
    assert complete_waiting_requests(host, tenant) == 4
    host.advance(days=1)
    assert batch_requests.request_batch(host, tenant, actor="staff:s1").asked == 0
    host.advance(days=1, seconds=1)
    assert batch_requests.request_batch(host, tenant, actor="staff:s1").asked == 4  # expired: asked again
    assert complete_waiting_requests(host, tenant) == 4
    practice = practices.require_practice(host.session(), tenant)
    practice_texts.publish_text(host, tenant, bodies={"sv": "En helt ny text om dina personuppgifter här."},
                         kind="content", reason=None, actor="staff:s1",
                         expected_major=practice.current_major)
    host.session().commit()
    assert batch_requests.request_batch(host, tenant, actor="staff:s1").asked == 4  # new content
    assert complete_waiting_requests(host, tenant) == 4
    assert sorted(_pending(host, tenant)) == sorted(clients)
    majors = set(host.session().scalars(
        select(ConsentRequest.text_major).where(
            ConsentRequest.tenant_ref == tenant, ConsentRequest.revoked_at.is_(None)
        )
    ))
    assert majors == {2}
    cancelled = _count(host, OutboxMessage, tenant, OutboxMessage.status == "cancelled")
    assert cancelled == 8


def test_two_batches_at_once_queue_each_client_once(batch_host: TestHost) -> None:
    """L6: a double "send to all" (two requests racing on two connections)."""
    host = batch_host
    tenant = _practice(host)
    clients = [host.new_client(tenant) for _ in range(300)]
    hosts = [type(host)(host.engine) for _ in range(2)]
    if isinstance(host, QueryHost):  # the client table filled first: the racers only read it
        host.client_query(tenant)
        host.session().commit()
    for h in hosts:
        h.clients, h.practices, h.active = host.clients, host.practices, host.active
    results: list[batch_requests.BatchResult] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(h: TestHost) -> None:
        try:
            barrier.wait()
            results.append(batch_requests.request_batch(h, tenant, actor="staff:s1", chunk_size=50))
        except BaseException as exc:
            errors.append(exc)
        finally:
            h.session().rollback()
            h.close()

    threads = [threading.Thread(target=run, args=(h,)) for h in hosts]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert errors == [], [repr(e.__cause__) for e in errors]
    assert sum(r.asked for r in results) == 300
    assert sum(r.skipped_pending for r in results) == 300
    assert [r.total for r in results] == [300, 300]
    assert sum(r.skipped_valid for r in results) == 0  # the race lost is "already asked"
    host.session().rollback()
    assert complete_waiting_requests(host, tenant) == 300
    assert sorted(_pending(host, tenant)) == sorted(clients)
    assert _count(host, OutboxMessage, tenant) == 300
    assert _count(host, ConsentEvent, tenant) == 300
    host.session().rollback()
    assert verify_chain(host.session(), tenant).ok


# -- bulk ledger append ------------------------------------------------------------------------------


def test_appending_many_keeps_the_chain_and_the_projection_exact(host: TestHost) -> None:
    tenant = _practice(host)
    a, b = host.new_client(tenant), host.new_client(tenant)
    consent.record_manual(host, tenant, a, staff(), method="paper",
                          given_at=datetime(2026, 11, 1, tzinfo=UTC), note="papper")
    host.session().commit()
    now = host.now()
    events = [
        NewEvent(tenant_ref=tenant, client_ref=a, state=State.REQUESTED, channel="email",
                 actor="staff:s1", occurred_at=now, text_major=1),  # keeps a's valid consent
        NewEvent(tenant_ref=tenant, client_ref=b, state=State.REQUESTED, channel="email",
                 actor="staff:s1", occurred_at=now, text_major=1),
        NewEvent(tenant_ref=tenant, client_ref=b, state=State.GIVEN, channel="manual",
                 actor="staff:s1", occurred_at=now, text_major=1, note="ringde",
                 ip_address="198.51.100.23"),
        NewEvent(tenant_ref=tenant, client_ref=a, state=State.WITHDRAWN, channel="manual",
                 actor="staff:s1", occurred_at=now, text_major=1),
    ]
    ids = [event.id for event in append(host.session(), events)]
    host.session().commit()
    rows = host.session().scalars(
        select(ConsentEvent).where(ConsentEvent.id.in_(ids)).order_by(ConsentEvent.seq)
    ).all()
    assert [r.id for r in rows] == ids and [r.seq for r in rows] == [2, 3, 4, 5]
    evidence = host.session().get(Evidence, ids[2])
    assert evidence is not None and evidence.note == "ringde" and evidence.ip_prefix == "198.51.100.0/24"
    assert verify_chain(host.session(), tenant).ok
    snaps = projection(host.session(), tenant)
    assert snaps == replay(host.session(), tenant)
    assert (snaps[a].state, snaps[b].state) == (State.WITHDRAWN, State.GIVEN)
    assert append(host.session(), []) == []
    with pytest.raises(ValueError, match="same practice"):
        append(host.session(), [events[0], NewEvent(
            tenant_ref="other", client_ref=a, state=State.REQUESTED, channel="email",
            actor="x", occurred_at=now)])
    host.session().rollback()


# -- triggers ----------------------------------------------------------------------------------------


def test_hook_booking_client_created(host: TestHost) -> None:
    hooks = host.hooks()
    on = _practice(host, email_request_to_new_clients=True)
    off = _practice(host, email_request_to_new_clients=False)
    by_staff = host.new_client(on)
    online = host.new_client(on)
    no_email = host.new_client(on, email=None)
    elsewhere = host.new_client(off)
    for tenant, client, who in ((on, by_staff, "staff"), (on, online, "online"),
                                (on, no_email, "staff"), (off, elsewhere, "staff")):
        hooks.client_created(ClientCreated(tenant=tenant, client=client, created_by=who, at=host.now()))  # type: ignore[arg-type]
    host.session().commit()
    assert _pending(host, on) == [by_staff]
    assert _pending(host, off) == []
    assert _count(host, OutboxMessage, on) == 1
    # Called again (e.g. the host retried its transaction): still one request.
    hooks.client_created(ClientCreated(tenant=on, client=by_staff, created_by="staff", at=host.now()))
    host.session().commit()
    assert _count(host, OutboxMessage, on) == 1
    # A practice that is not through the wizard does not ask anyone yet.
    fresh = host.new_tenant()
    host.active.setdefault(fresh, set()).add("samtycke")
    hooks.activate(fresh, "samtycke", {})
    practices.require_practice(host.session(), fresh).settings["email_request_to_new_clients"] = True
    host.session().commit()
    hooks.client_created(ClientCreated(tenant=fresh, client=host.new_client(fresh), created_by="staff", at=host.now()))
    assert _pending(host, fresh) == []


def test_staff_booking_sends_a_request_when_consent_is_missing(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = _practice(host, email_request_after_staff_booking=True)
    missing, valid = host.new_client(tenant), host.new_client(tenant)
    consent.record_manual(host, tenant, valid, staff(), method="paper",
                          given_at=datetime(2026, 11, 1, tzinfo=UTC), note=None)
    host.session().commit()
    for n, client in enumerate((missing, valid, missing)):
        sub = submission(tenant, client, channel="staff")
        assert hooks.submit_check(sub) == []
        hooks.submitted(sub, BookingRef(f"b{n}"), ClientRef(client))
        host.session().commit()
    assert _pending(host, tenant) == [missing]  # once, although booked twice
    assert _count(host, OutboxMessage, tenant, OutboxMessage.kind == KIND_REQUEST) == 1
    quiet = _practice(host)  # the option is off by default
    client = host.new_client(quiet)
    hooks.submitted(submission(quiet, client, channel="staff"), BookingRef("q"), ClientRef(client))
    host.session().commit()
    assert _pending(host, quiet) == []


# -- address normalisation -----------------------------------------------------------------------

_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-."
_DTEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-."


@settings(max_examples=3000, deadline=None)
@given(
    local=st.one_of(
        st.text(alphabet=_ATEXT, min_size=1, max_size=70),
        st.sampled_from(["postmaster", "Abuse", "INFO", "Anna", "a.b", ".a", "a..b"]),
        st.text(min_size=1, max_size=10),
    ),
    domain=st.one_of(
        st.text(alphabet=_DTEXT, min_size=1, max_size=70),
        st.sampled_from(["example.org", "Example.ORG", "xn--bcher-kva.example", "ab--cd.se",
                         "mail.local", "x.test", "home.arpa", "127.0.0.1", "a.b1", "exämple.se"]),
    ),
)
def test_the_fast_address_path_agrees_with_email_validator(local: str, domain: str) -> None:
    from email_validator import EmailNotValidError, validate_email

    address = f"{local}@{domain}"
    plain = addresses._plain_address(address)
    try:
        # No SMTPUTF8: a non-ASCII local part is refused (the app cannot deliver to it).
        expected = validate_email(address, check_deliverability=False,
                                  allow_smtputf8=False).normalized
    except EmailNotValidError:
        expected = None
    if plain is not None:
        assert plain == expected, address
    if "\n" not in address and "\r" not in address and address.strip() == address:
        try:
            got = addresses.normalise_address(address)
        except InputError:
            got = None
        assert got == expected, address


_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@settings(max_examples=2000, deadline=None)
@given(value=st.text(max_size=40))
def test_the_control_character_checks_match_their_definitions(value: str) -> None:
    """Header-safe: no line break (those ``str.splitlines`` splits at), no other control
    character, no DEL; an address may contain neither a line break nor a control
    character below 32 (checked by regular expressions for speed)."""
    header_ok = not any(ch in _BREAKS or ord(ch) < 32 or ord(ch) == 127 for ch in value)
    assert addresses.header_safe(value) is header_ok
    address_bad = any(ch in _BREAKS or ord(ch) < 32 for ch in value)
    if address_bad:
        with pytest.raises(InputError):
            addresses.normalise_address(f"a{value}@example.org")
    assert len(("x" + value).splitlines()) == 1 or not header_ok

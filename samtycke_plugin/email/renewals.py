"""Renewal requests and reminders: the scheduled work that keeps consent from lapsing
silently.

* A client whose valid consent to a purpose lapses within the practice's
  ``renew_days_before`` (:func:`samtycke_plugin.rules.expires_soon`) is mailed one
  ordinary consent request for that purpose (the normal consent page; answering it
  renews the consent with a new end date).
* A client who has not answered an e-mailed consent request ``remind_after_days``
  after it was made gets one reminder with the same link
  (:func:`samtycke_plugin.rules.reminder_due`).

"At most once" rests on the database, not on the worker: each due consent (practice,
client, purpose, end date) and each reminded request gets a row
(:class:`~samtycke_plugin.models.RenewalAsked`, :class:`~samtycke_plugin.models.ReminderSent`)
inserted with ``ON CONFLICT DO NOTHING`` in the same transaction that queues the mail.
Two workers at once: the second insert waits for the first transaction and then finds
the row.  A worker killed mid-run: its transaction is rolled back whole (no row, no
mail) and the next run does the work.  A client left out (no usable address, a pending
link already asking, the client gone) keeps the row with the reason, so the next run
does not look again.

:func:`run_renewals` is called by :func:`samtycke_plugin.email.relay.send_due` (and so by
``samtycke outbox send [--loop]``) before it sends; a host whose own scheduler runs the
work may call it instead.  The mail it queues goes out with the next ``send_due``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from attrs import evolve, frozen
from sqlalchemy import exists, insert, or_, select, update
from sqlalchemy.orm import Session

from hookspecs.types import ClientInfo, ClientRef, TenantRef
from samtycke_plugin import common, practices
from samtycke_plugin.db import run_in_transaction
from samtycke_plugin.email.addresses import mail_domain
from samtycke_plugin.email.asking import _ask_chunk, _mail_address, _NotMailable
from samtycke_plugin.email.outbox import SENT, _outbox_values
from samtycke_plugin.email.tokens import PURPOSE_CONSENT
from samtycke_plugin.errors import InputError, NotActive, NotFound, SamtyckeError
from samtycke_plugin.ledger import load_snapshots
from samtycke_plugin.models import (
    KIND_REQUEST,
    ConsentRequest,
    OutboxMessage,
    Practice,
    ReminderSent,
    RenewalAsked,
)
from samtycke_plugin.purposes import DEFAULT_PURPOSE, list_purposes
from samtycke_plugin.rules import (
    SAID_NO,
    State,
    Status,
    expires_soon,
    paused,
    reminder_due,
    renewal_window,
    status,
)
from samtycke_plugin.settings import PracticeSettings
from samtycke_plugin.store import _S, expires_soon_condition

if TYPE_CHECKING:
    from hookspecs.host import Host

log = logging.getLogger("samtycke.renewals")

#: Clients per transaction (each may mean a lookup in the host).
CHUNK = 50

#: Due consents and due reminders looked at per practice and run; the rest waits for
#: the next run (a relay's loop comes back within its interval).
LIMIT = 1000

RENEWAL_ACTOR = "system:renewal"
ASKED = "asked"
QUEUED = "queued"

_WHY_GONE = "not asked: the client no longer exists in this practice"
_WHY_NOT_SOON = "not asked: the consent no longer expires soon"
_WHY_ANSWERED = "not sent: the request was answered, replaced or has expired"
_WHY_SETTLED = "not sent: the client has valid consent now"
_WHY_SAID_NO = "not sent: the client declined or withdrew"
_WHY_ERASED = "not sent: the client was erased"

_R = RenewalAsked.__table__.c
_M = ReminderSent.__table__.c
_Q = ConsentRequest.__table__.c


@frozen(kw_only=True)
class RenewalReport:
    """What one :func:`run_renewals` did."""

    #: Renewal requests queued (one per client: a request may ask for several purposes).
    renewals: int = 0
    #: Reminders queued.
    reminders: int = 0
    #: Due consents and requests left out, each with its reason stored.
    left_out: int = 0

    def __add__(self, other: RenewalReport) -> RenewalReport:
        return RenewalReport(renewals=self.renewals + other.renewals,
                             reminders=self.reminders + other.reminders,
                             left_out=self.left_out + other.left_out)


def run_renewals(
    host: Host, *, tenant: str | None = None, chunk_size: int | None = None, limit: int = LIMIT
) -> RenewalReport:
    """Queue the renewal requests and reminders that are due (of every operational
    practice, or of ``tenant``), ``chunk_size`` clients per transaction (default
    :data:`CHUNK`) and at most ``limit`` of each per practice; returns how many.

    Idempotent and safe to run from several workers at once: each due consent is asked
    once per end date and each request reminded once (see the module's notes).  It runs
    its own short units of work (:meth:`Host.unit_of_work`), each committed by the
    host: call it outside a request's transaction.  The mail is sent by the next
    :func:`samtycke_plugin.email.relay.send_due`, which calls this function first.
    """
    tenants = run_in_transaction(host, lambda s: _operational(s, tenant), commit=False)
    report = RenewalReport()
    size = max(1, CHUNK if chunk_size is None else chunk_size)
    for ref in tenants:
        # One practice's trouble (its name cannot go into a mail, the host's lookup
        # fails) must not hold up the others, nor the mail the relay sends next: it is
        # logged, what was committed stays, and the next run tries again.
        try:
            report += _renew_practice(host, ref, size, limit)
            report += _remind_practice(host, ref, size, limit)
        except SamtyckeError as exc:
            log.warning("renewal work of practice %s stopped: %s", ref, exc)
        except Exception:
            log.exception("renewal work of practice %s failed", ref)
    return report


def _operational(session: Session, tenant: str | None) -> list[str]:
    query = select(Practice.tenant_ref).where(Practice.active, Practice.setup_complete)
    if tenant is not None:
        query = query.where(Practice.tenant_ref == common.check_ref("tenant", tenant))
    return [str(t) for t in session.scalars(query.order_by(Practice.tenant_ref))]


def _majors(session: Session, practice: Practice) -> dict[str, tuple[int, int | None]]:
    """The current content version and the lifetime (days) of each of the practice's
    purposes."""
    return {
        p.key: (practices.purpose_major(session, practice, p.key),
                practices.purpose_validity(session, practice, p.key))
        for p in list_purposes(session, practice.tenant_ref)
    }


# -- renewal requests ----------------------------------------------------------------------


def _due_consents(
    host: Host, session: Session, tenant: str, limit: int
) -> list[tuple[str, str, datetime]]:
    """(client, purpose, end date) of valid consent that expires soon and was not looked
    at for renewal yet: one statement."""
    practice = practices.get_practice(session, tenant)
    if not practices.is_operational(practice):
        return []
    assert practice is not None
    settings = practices.settings_of(practice)
    if settings.renew_days_before == 0:
        return []
    now = common.now_utc(host)
    soon = [
        expires_soon_condition(major, now, renewal_window(settings, days), key)
        for key, (major, days) in _majors(session, practice).items()
    ]
    asked = exists().where(
        _R.tenant_ref == _S.tenant_ref, _R.client_ref == _S.client_ref,
        _R.purpose_key == _S.purpose_key, _R.expires_at == _S.expires_at,
    )
    rows = session.execute(
        select(_S.client_ref, _S.purpose_key, _S.expires_at)
        .where(_S.tenant_ref == tenant, or_(*soon), ~asked)
        .order_by(_S.client_ref, _S.purpose_key)
        .limit(max(0, limit))
    )
    return [(str(c), str(p), e) for c, p, e in rows]


def _renew_practice(host: Host, tenant: str, size: int, limit: int) -> RenewalReport:
    due = run_in_transaction(host, lambda s: _due_consents(host, s, tenant, limit), commit=False)
    by_client: dict[str, list[tuple[str, datetime]]] = {}
    for client, purpose, expires_at in due:
        by_client.setdefault(client, []).append((purpose, expires_at))
    clients = list(by_client)
    report = RenewalReport()
    for start in range(0, len(clients), size):
        part = {c: by_client[c] for c in clients[start : start + size]}
        report += run_in_transaction(
            host, lambda s, part=part: _renew_chunk(host, s, tenant, part)  # type: ignore[misc]
        )
    return report


def _renew_chunk(
    host: Host, session: Session, tenant: str, due: dict[str, list[tuple[str, datetime]]]
) -> RenewalReport:
    """Claim the chunk's due consents (rows another worker has claimed are skipped), ask
    their clients, and record each outcome: one transaction."""
    practice = practices.get_practice(session, tenant)
    if not practices.is_operational(practice):
        return RenewalReport()
    assert practice is not None
    now = common.now_utc(host)
    rows = [
        {"tenant_ref": tenant, "client_ref": c, "purpose_key": p, "expires_at": e,
         "asked_at": now, "request_id": None, "outcome": QUEUED}
        for c, items in due.items() for p, e in items
    ]
    claimed = session.execute(
        common._dialect_insert(session)(RenewalAsked)
        .on_conflict_do_nothing()
        .returning(_R.client_ref, _R.purpose_key, _R.expires_at),
        rows,
    ).all()
    if not claimed:
        return RenewalReport()
    settings = practices.settings_of(practice)
    majors = _majors(session, practice)
    mine: dict[str, list[str]] = {}
    outcome: dict[tuple[str, str], tuple[str, int | None]] = {}
    for client, purpose, expires_at in claimed:
        snap = load_snapshots(session, tenant, [client], purpose).get(client)
        major, days = majors.get(purpose, (0, None))
        if (purpose not in majors or snap is None or snap.expires_at != expires_at
                or not expires_soon(snap, major, now, settings, validity_days=days)):
            outcome[(client, purpose)] = (_WHY_NOT_SOON, None)
            continue
        mine.setdefault(client, []).append(purpose)
    groups: dict[tuple[str, ...], list[ClientInfo]] = {}
    for client, purposes in mine.items():
        info = host.lookup_client(TenantRef(tenant), ClientRef(client))
        if info is None:
            outcome.update({(client, p): (_WHY_GONE, None) for p in purposes})
            continue
        groups.setdefault(tuple(p for p in majors if p in purposes), []).append(info)
    asked = 0
    for purposes_, infos in groups.items():
        try:
            counts = _ask_chunk(host, session, tenant, infos, actor=RENEWAL_ACTOR,
                                batch_key=None, purposes=purposes_, renewing=True)
        except (InputError, NotActive, NotFound) as exc:
            outcome.update({(i.ref, p): (f"not asked: {exc}"[:80], None)
                            for i in infos for p in purposes_})
            continue
        asked += counts.asked
        for info in infos:
            request_id = counts.links.get(info.ref)
            why = ASKED if request_id is not None else counts.reasons.get(info.ref, "not asked")
            outcome.update({(info.ref, p): (why[:80], request_id) for p in purposes_})
    for client, purpose, expires_at in claimed:
        why, request_id = outcome.get((client, purpose), ("not asked", None))
        session.execute(
            update(RenewalAsked)
            .where(_R.tenant_ref == tenant, _R.client_ref == client, _R.purpose_key == purpose,
                   _R.expires_at == expires_at)
            .values(outcome=why, request_id=request_id)
        )
    left_out = sum(1 for why, _id in outcome.values() if why != ASKED)
    return RenewalReport(renewals=asked, left_out=left_out)


# -- reminders -----------------------------------------------------------------------------


def _due_requests(host: Host, session: Session, tenant: str, limit: int) -> list[int]:
    """Ids of the practice's e-mailed consent requests a reminder is due for: one
    statement (each is checked again by :func:`rules.reminder_due` when claimed)."""
    practice = practices.get_practice(session, tenant)
    if not practices.is_operational(practice):
        return []
    assert practice is not None
    days = practices.settings_of(practice).remind_after_days
    if days == 0:
        return []
    now = common.now_utc(host)
    reminded = exists().where(_M.request_id == _Q.id)
    return [int(i) for i in session.scalars(
        select(_Q.id).where(
            _Q.tenant_ref == tenant, _Q.purpose == PURPOSE_CONSENT, _Q.used_at.is_(None),
            _Q.revoked_at.is_(None), _Q.delivery == SENT, _Q.expires_at > now,
            _Q.created_at <= now - timedelta(days=days), ~reminded,
        ).order_by(_Q.id).limit(max(0, limit))
    )]


def _remind_practice(host: Host, tenant: str, size: int, limit: int) -> RenewalReport:
    due = run_in_transaction(host, lambda s: _due_requests(host, s, tenant, limit), commit=False)
    report = RenewalReport()
    for start in range(0, len(due), size):
        part = due[start : start + size]
        report += run_in_transaction(
            host, lambda s, part=part: _remind_chunk(host, s, tenant, part)  # type: ignore[misc]
        )
    return report


def _remind_chunk(host: Host, session: Session, tenant: str, ids: Sequence[int]) -> RenewalReport:
    """Claim the chunk's requests (rows another worker has claimed are skipped) and queue
    a reminder for each one still unanswered whose client may be mailed: one
    transaction."""
    practice = practices.get_practice(session, tenant)
    if not practices.is_operational(practice):
        return RenewalReport()
    assert practice is not None
    now = common.now_utc(host)
    claimed = [int(i) for i in session.execute(
        common._dialect_insert(session)(ReminderSent).on_conflict_do_nothing()
        .returning(_M.request_id),
        [{"tenant_ref": tenant, "request_id": i, "reminded_at": now, "outbox_id": None,
          "outcome": QUEUED} for i in ids],
    ).scalars()]
    settings = practices.settings_of(practice)
    majors = _majors(session, practice)
    domain = mail_domain(host, tenant)
    report = RenewalReport()
    for request_id in claimed:
        why, outbox_id = _remind_one(host, session, tenant, request_id, majors, now, domain,
                                     settings)
        session.execute(update(ReminderSent).where(_M.request_id == request_id)
                        .values(outcome=why[:80], outbox_id=outbox_id))
        report = (evolve(report, reminders=report.reminders + 1) if outbox_id is not None
                  else evolve(report, left_out=report.left_out + 1))
    return report


def _remind_one(
    host: Host, session: Session, tenant: str, request_id: int,
    majors: dict[str, tuple[int, int | None]], now: datetime, domain: str,
    settings: PracticeSettings,
) -> tuple[str, int | None]:
    """Queue the reminder of one claimed request: (outcome, outbox row id or ``None``)."""
    req = session.get(ConsentRequest, request_id, populate_existing=True)
    if req is None or req.tenant_ref != tenant or not reminder_due(
        requested_at=req.created_at, link_expires_at=req.expires_at,
        answered=req.used_at is not None or req.revoked_at is not None,
        delivered=req.delivery == SENT, reminded=False, now=now, settings=settings,
    ):
        return _WHY_ANSWERED, None
    client = req.client_ref
    asked = [str(k) for k in req.purpose_majors] if isinstance(req.purpose_majors, dict) \
        else [DEFAULT_PURPOSE]
    settled = True
    for purpose in asked:
        snap = load_snapshots(session, tenant, [client], purpose).get(client)
        if snap is not None and snap.state is State.ERASED:
            return _WHY_ERASED, None
        if snap is not None and snap.state in SAID_NO and paused(snap, settings, now):
            return _WHY_SAID_NO, None
        if purpose not in majors:
            continue  # archived since: nothing to remind of
        major, days = majors[purpose]
        if status(snap, major, now) is not Status.VALID or expires_soon(
                snap, major, now, settings, validity_days=days):
            settled = False
    if settled:
        return _WHY_SETTLED, None
    info = host.lookup_client(TenantRef(tenant), ClientRef(client))
    if info is None:
        return _WHY_GONE, None
    address = _mail_address(info.email, info.name)
    if isinstance(address, _NotMailable):
        return address.why, None
    outbox_id = session.execute(
        insert(OutboxMessage).values(**_outbox_values(
            domain, tenant=tenant, client=client, request_id=request_id, kind=KIND_REQUEST,
            to_addr=address, locale=info.locale,
            payload={"name": (info.name or "").strip(), "occasion": "reminder"}, now=now,
        )).returning(OutboxMessage.id)
    ).scalar_one()
    return QUEUED, int(outbox_id)

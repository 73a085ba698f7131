"""Sending the outbox: :func:`send_due` delivers what is due, at least once.

The request and its outbox row are written in the same transaction (see
:mod:`samtycke_plugin.email.outbox`); then:

* each row is **claimed** (``status = 'sending'`` with a lease, committed) before it is
  sent, so two relays never send the same row at once; a relay that dies after the SMTP
  server accepted the message leaves the claim to expire and the row is sent again —
  with the same ``Message-ID`` and the same link (the token is derived from the
  request's nonce, never stored), so the worst case is a recognisable duplicate and,
  because a link works once, never a second consent;
* transient failures are retried (see :mod:`samtycke_plugin.email.transport`); 5xx
  replies for the recipient or the message mark the row and its request ``bounced`` and
  the client's badge says "Address rejected";
* mail for a link that was used, revoked or has expired meanwhile is not sent
  (``cancelled``).

Before sending, ``send_due`` runs the batch jobs the batch page recorded
(:mod:`samtycke_plugin.email.jobs`), handles the "send me my link" forms
(:func:`samtycke_plugin.email.page_mail.handle_wishes`) and queues the renewal requests
and reminders that are due (:mod:`samtycke_plugin.email.renewals`), so the worker that
sends the mail also does this work outside the web request.  ``send_due`` is a plain
function a host's task queue (Celery, RQ, cron) can call; the CLI's
``samtycke outbox send [--loop]`` calls it too.  It manages its own short units of
work (:meth:`Host.unit_of_work`), each committed by the host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from email.errors import NonASCIILocalPartDefect
from typing import TYPE_CHECKING, Any

from attrs import frozen
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from hookspecs.types import DeliveryResult, TenantRef
from samtycke_plugin import common, consent
from samtycke_plugin.db import run_in_transaction
from samtycke_plugin.email import asking, outbox, page_mail
from samtycke_plugin.email import jobs as batch_jobs
from samtycke_plugin.email import receipts as receipt_mail
from samtycke_plugin.email import renewals as renewal_work
from samtycke_plugin.email.messages import Rendered, RenderError, render_message
from samtycke_plugin.email.transport import (
    MailConfigError,
    RetryPolicy,
    SmtpSettings,
    SmtpTransport,
    Transport,
    classify,
)
from samtycke_plugin.errors import InputError
from samtycke_plugin.models import (
    KIND_REQUEST,
    ConsentRequest,
    OutboxMessage,
)

if TYPE_CHECKING:
    from hookspecs.host import Host


log = logging.getLogger("samtycke.mail")


QUEUED, SENDING, SENT, RETRY, BOUNCED, FAILED, CANCELLED = (
    outbox.QUEUED, outbox.SENDING, outbox.SENT, outbox.RETRY, outbox.BOUNCED, outbox.FAILED,
    outbox.CANCELLED,
)


DUE_STATES = (QUEUED, RETRY, SENDING)


@frozen(kw_only=True)
class SendReport:
    """What one :func:`send_due` run did."""

    sent: int = 0
    retried: int = 0
    bounced: int = 0
    failed: int = 0
    cancelled: int = 0
    #: Configuration problems met (each once), for the operator.
    problems: tuple[str, ...] = ()
    #: Batch jobs run to their end before the mail was sent (:mod:`.jobs`).
    jobs: int = 0
    #: Renewal requests and reminders queued before the mail was sent (:mod:`.renewals`).
    renewals: int = 0
    reminders: int = 0

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.bounced + self.failed + self.cancelled


def due_ids(session: Session, now: datetime, limit: int, tenant: str | None = None) -> list[int]:
    """Outbox rows due now: queued, waiting for a retry, or claimed by a relay whose lease
    ran out (it died).  Oldest first; every practice unless ``tenant`` is given."""
    query = select(OutboxMessage.id).where(
        OutboxMessage.status.in_(DUE_STATES), OutboxMessage.next_attempt_at <= now
    )
    if tenant is not None:
        query = query.where(OutboxMessage.tenant_ref == common.check_ref("tenant", tenant))
    return [
        int(i)
        for i in session.scalars(
            query.order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(max(0, limit))
        )
    ]


@frozen(kw_only=True)
class _Row:
    """The identity of a claimed outbox row (plain values, no ORM object)."""

    id: int
    tenant: str
    client: str | None
    request_id: int | None
    kind: str
    attempts: int


def _finish(
    session: Session,
    row: _Row,
    *,
    status: str,
    now: datetime,
    error: str | None = None,
    next_at: datetime | None = None,
) -> None:
    """Record the outcome on the outbox row, its request, and — for the client's current
    consent request still waiting for an answer — the badge (``bounced`` → "Address
    rejected")."""
    values: dict[str, Any] = {"status": status, "last_error": error}
    if status == SENT:
        values["sent_at"] = now
    if next_at is not None:
        values["next_attempt_at"] = next_at
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row.id, OutboxMessage.tenant_ref == row.tenant)
        .values(**values)
    )
    if row.request_id is None or status == CANCELLED:
        return
    session.execute(
        update(ConsentRequest)
        .where(ConsentRequest.id == row.request_id, ConsentRequest.tenant_ref == row.tenant)
        .values(delivery=status)
    )
    if row.kind == KIND_REQUEST and row.client is not None:
        consent.delivery(session, row.tenant, row.client, row.request_id, status)


@frozen(kw_only=True)
class _Claimed:
    row: _Row
    rendered: Rendered | None = None
    outcome: str | None = None  # set when the row was settled without sending


#: Rows claimed per transaction.  Each claim is a lease of ``RetryPolicy.lease``
#: (10 min by default) that must cover sending the whole group, so keep it small.
CLAIM_GROUP = 10


def _claim_group(
    host: Host, ids: list[int], policy: RetryPolicy
) -> Callable[[Session], list[_Claimed]]:
    """Claim due rows (one conditional UPDATE … RETURNING) and render them, or settle
    those that must not be sent (link used/replaced/expired, given up, unrenderable)."""

    def job(session: Session) -> list[_Claimed]:
        now = common.now_utc(host)
        claimed = session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id.in_(ids),
                OutboxMessage.status.in_(DUE_STATES),
                OutboxMessage.next_attempt_at <= now,
            )
            .values(
                status=SENDING, attempts=OutboxMessage.attempts + 1,
                next_attempt_at=now + policy.lease,
            )
            .returning(OutboxMessage.id)
        ).scalars().all()
        out: list[_Claimed] = []
        msgs = [session.get(OutboxMessage, i, populate_existing=True) for i in sorted(claimed)]
        # Requests queued by a batch get their links now, the claim's rows together (a
        # waiting row is claimed once: its claim gives it a request id).
        minted = asking.complete_requests(host, session, [
            m for m in msgs if m is not None and m.kind == KIND_REQUEST and m.request_id is None
        ])
        for msg in msgs:
            assert msg is not None
            row = _Row(id=msg.id, tenant=msg.tenant_ref, client=msg.client_ref,
                       request_id=msg.request_id, kind=msg.kind, attempts=msg.attempts)
            if msg.attempts > 1 and now - msg.created_at > policy.give_up:
                _finish(session, row, status=FAILED, now=now,
                        error=f"gave up after {msg.attempts - 1} attempts: {msg.last_error or ''}")
                out.append(_Claimed(row=row, outcome=FAILED))
                continue
            if msg.id in minted or (msg.kind == outbox.KIND_RECEIPT and msg.request_id is None):
                # A request queued by a batch (done above), or a receipt queued at booking:
                # its link and address are made now.
                why = (
                    minted[msg.id] if msg.id in minted
                    else receipt_mail.complete_receipt(host, session, msg)
                )
                if why is not None:
                    _finish(session, row, status=CANCELLED, now=now, error=why)
                    out.append(_Claimed(row=row, outcome=CANCELLED))
                    continue
                row = _Row(id=msg.id, tenant=msg.tenant_ref, client=msg.client_ref,
                           request_id=msg.request_id, kind=msg.kind, attempts=msg.attempts)
            req = (
                session.get(ConsentRequest, msg.request_id, populate_existing=True)
                if msg.request_id else None
            )
            if msg.kind in page_mail.KINDS:
                pass  # no consent or withdrawal link: nothing can have used it up
            elif req is None or req.used_at is not None or req.revoked_at is not None \
                    or req.expires_at <= now:
                _finish(session, row, status=CANCELLED, now=now,
                        error="the link was used, replaced or has expired; not sent")
                out.append(_Claimed(row=row, outcome=CANCELLED))
                continue
            try:
                rendered = render_message(host, session, msg)
            except (RenderError, InputError) as exc:
                _finish(session, row, status=FAILED, now=now, error=str(exc))
                log.warning("outbox %d (practice %s) cannot be sent: %s", msg.id, msg.tenant_ref,
                            exc)
                out.append(_Claimed(row=row, outcome=FAILED))
                continue
            out.append(_Claimed(row=row, rendered=rendered))
        return out

    return job


def _settle(
    host: Host, row: _Row, verdict: str, detail: str, policy: RetryPolicy
) -> Callable[[Session], None]:
    def job(session: Session) -> None:
        now = common.now_utc(host)
        if verdict == RETRY:
            _finish(session, row, status=RETRY, now=now, error=detail,
                    next_at=now + policy.delay(row.attempts))
        else:
            _finish(session, row, status=verdict, now=now, error=detail or None)

    return job


def send_due(
    host: Host,
    *,
    transport: Transport | None = None,
    limit: int = 100,
    rate: float | None = None,
    policy: RetryPolicy | None = None,
    tenant: str | None = None,
    jobs: bool = True,
    renewals: bool = True,
) -> SendReport:
    """Run the batch jobs that are due (:func:`samtycke_plugin.email.jobs.run_pending`,
    unless ``jobs`` is false), queue the renewal requests and reminders that are due
    (:func:`samtycke_plugin.email.renewals.run_renewals`, unless ``renewals`` is false),
    then deliver up to ``limit`` due outbox messages (of
    every practice, or of ``tenant``); returns what happened.

    Rows are claimed :data:`CLAIM_GROUP` at a time; each message's outcome is committed
    right after it was handed over, so a crash re-sends at most the message in flight
    (and the rest of its claimed group only after the lease).

    :param transport: where mail goes when the host's ``deliver_email`` returns ``None``
        (default: :class:`SmtpTransport` with :meth:`SmtpSettings.from_env`, opened only
        when needed, reused for the run and closed at the end).
    :param rate: at most this many messages per second (throttling), ``None`` for no limit.
    :param policy: retry/give-up timing (default: :meth:`RetryPolicy.from_env`).
    """
    policy = policy or RetryPolicy.from_env()
    ran = batch_jobs.run_pending(host, tenant=tenant) if jobs else 0
    if jobs:
        page_mail.handle_wishes(host)
    renewed = (
        renewal_work.run_renewals(host, tenant=tenant) if renewals
        else renewal_work.RenewalReport()
    )
    ids = run_in_transaction(
        host, lambda s: due_ids(s, common.now_utc(host), limit, tenant), commit=False
    )
    counts = {SENT: 0, RETRY: 0, BOUNCED: 0, FAILED: 0, CANCELLED: 0}
    problems: list[str] = []
    own: list[SmtpTransport] = []

    def get_transport() -> Transport:
        if transport is not None:
            return transport
        if not own:
            own.append(SmtpTransport(SmtpSettings.from_env()))
        return own[0]

    pause = 1.0 / rate if rate else 0.0
    try:
        for start in range(0, len(ids), CLAIM_GROUP):
            group = run_in_transaction(
                host, _claim_group(host, ids[start : start + CLAIM_GROUP], policy)
            )
            for claimed in group:
                if claimed.rendered is None:
                    if claimed.outcome in counts:
                        counts[claimed.outcome] += 1
                    continue
                started = time.monotonic()
                verdict, detail = _deliver(host, claimed.rendered, get_transport, problems)
                run_in_transaction(host, _settle(host, claimed.row, verdict, detail,
                                                         policy))
                counts[verdict] += 1
                if pause:
                    time.sleep(max(0.0, pause - (time.monotonic() - started)))
    finally:
        for t_ in own:
            t_.close()
    return SendReport(
        sent=counts[SENT], retried=counts[RETRY], bounced=counts[BOUNCED],
        failed=counts[FAILED], cancelled=counts[CANCELLED], problems=tuple(problems),
        jobs=ran, renewals=renewed.renewals, reminders=renewed.reminders,
    )


def _deliver(
    host: Host,
    rendered: Rendered,
    get_transport: Callable[[], Transport],
    problems: list[str],
) -> tuple[str, str]:
    """Hand one message to the host's mailer, or to the transport when the host returns
    ``None``: (``sent``/``retry``/``bounced``/``failed``, detail for the outbox row)."""
    try:
        result = host.deliver_email(TenantRef(rendered.tenant), rendered.outgoing())
    except Exception:
        log.exception("outbox %d: the host's deliver_email failed; will retry",
                      rendered.outbox_id)
        return RETRY, "the host's mailer failed"
    if isinstance(result, DeliveryResult):
        if result.status == "sent":
            return SENT, ""
        if result.status == "rejected":
            return BOUNCED, result.detail or "rejected by the host's mailer"
        return RETRY, result.detail or "the host's mailer asked to retry"
    try:
        transport = get_transport()
    except MailConfigError as exc:
        if str(exc) not in problems:
            problems.append(str(exc))
            log.error("%s", exc)
        return RETRY, str(exc)
    try:
        message = rendered.email(transport.from_addr, common.now_utc(host))
    except NonASCIILocalPartDefect:  # an address the request step refuses: never sent
        return FAILED, "the address has non-ASCII letters before the @; nothing was sent"
    except ValueError:
        return FAILED, "a header would contain a line break; nothing was sent"
    try:
        transport.send(message)
    except Exception as exc:
        verdict, detail = classify(exc)
        log.warning("outbox %d: %s", rendered.outbox_id, detail)
        return (BOUNCED if verdict == "bounce" else RETRY), detail
    return SENT, ""


def pending_count(session: Session) -> int:
    """Messages still to be delivered (queued, retrying or in flight), every practice."""
    return int(
        session.scalar(
            select(func.count()).select_from(OutboxMessage).where(
                or_(*(OutboxMessage.status == s for s in DUE_STATES))
            )
        )
        or 0
    )

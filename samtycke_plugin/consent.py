"""Consent state changes: the one domain API through which everything is recorded.

Online booking, the manual record, the consent and withdrawal links, the staff's
withdrawal, e-mail requests (single and batch), the relay's delivery outcomes and
erasure all call these functions; each builds the ledger event(s) and hands them to
:func:`samtycke_plugin.ledger.append`, the only writer of the ledger and of the status
projection.  They work in the caller's transaction and never commit.  Validation of
what a person typed (refs, notes, dates) happens before, at the edge that received it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from attrs import frozen
from sqlalchemy import select
from sqlalchemy.orm import Session

from samtycke_plugin import ledger
from samtycke_plugin.errors import Conflict
from samtycke_plugin.i18n import N_
from samtycke_plugin.ledger import NewEvent, load_snapshot, lock_practice
from samtycke_plugin.models import ConsentEvent
from samtycke_plugin.rules import VALID_STATES, Snapshot, State, grant_state


class ShownText(Protocol):
    """The text version a client was shown (a stored ``TextVersion`` fits)."""

    @property
    def id(self) -> int: ...
    @property
    def major(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def language(self) -> str: ...


@frozen(kw_only=True)
class How:
    """How, where and by whom a change was made, with its evidence."""

    channel: str
    actor: str
    method: str | None = None
    booking_ref: str | None = None
    request_id: int | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    note: str | None = None


class _Unread:
    """Marks a projection the caller has not read (it is then read under the lock)."""


UNREAD = _Unread()


@frozen(kw_only=True)
class Asked:
    """One client asked by e-mail: the request row and the text it asks about."""

    client: str
    text: ShownText
    request_id: int


def expiry(validity_days: int | None, given_at: datetime) -> datetime | None:
    """When a consent given at ``given_at`` lapses (``None``: it does not)."""
    return given_at + timedelta(days=validity_days) if validity_days else None


def _previous(
    session: Session, tenant: str, client: str, previous: Snapshot | _Unread | None
) -> Snapshot | None:
    if isinstance(previous, _Unread):
        lock_practice(session, tenant)  # decide and append under the practice's lock
        return load_snapshot(session, tenant, client)
    return previous


def _event(
    tenant: str, client: str, state: State, how: How, now: datetime, *,
    text: ShownText | None = None, given_at: datetime | None = None,
    expires_at: datetime | None = None, text_major: int | None = None,
    text_version_id: int | None = None, text_sha256: str | None = None,
    language: str | None = None,
) -> NewEvent:
    return NewEvent(
        tenant_ref=tenant, client_ref=client, state=state, channel=how.channel,
        method=how.method, actor=how.actor[:160], occurred_at=now, given_at=given_at,
        expires_at=expires_at,
        text_version_id=text.id if text is not None else text_version_id,
        text_major=text.major if text is not None else text_major,
        text_sha256=text.sha256 if text is not None else text_sha256,
        language=text.language if text is not None else language,
        booking_ref=how.booking_ref, request_id=how.request_id,
        ip_address=how.ip_address, user_agent=how.user_agent, note=how.note,
    )


def grant(
    session: Session, tenant: str, client: str, text: ShownText, how: How, *,
    now: datetime, validity_days: int | None, given_at: datetime | None = None,
    previous: Snapshot | _Unread | None = UNREAD, head: ledger.Head | None = None,
) -> ConsentEvent:
    """Record consent given to ``text``: ``given``, or ``renewed`` when the client had
    given consent before.  ``given_at`` is when the client gave it (a manual record may
    name an earlier day); the validity runs from then.  ``previous`` and ``head``: what
    the caller read under the practice's lock in this transaction (see
    :func:`samtycke_plugin.ledger.append`)."""
    before = _previous(session, tenant, client, previous)
    given = given_at or now
    new = _event(tenant, client, grant_state(before), how, now, text=text, given_at=given,
                 expires_at=expiry(validity_days, given))
    return ledger.append(session, [new], previous={client: before}, head=head)[0]


def refuse(
    session: Session, tenant: str, client: str, text: ShownText, how: How, *,
    now: datetime, previous: Snapshot | _Unread | None = UNREAD,
    head: ledger.Head | None = None,
) -> ConsentEvent:
    """Record that the client declined the consent ``text`` asked for."""
    new = _event(tenant, client, State.REFUSED, how, now, text=text)
    known = {} if isinstance(previous, _Unread) else {client: previous}
    return ledger.append(session, [new], previous=known, head=head)[0]


def end(
    session: Session, tenant: str, client: str, how: How, *, now: datetime, by_client: bool
) -> ConsentEvent:
    """End a given consent: ``withdrawn`` (the client's decision, also when staff record
    it for them) or ``revoked`` (the practice ended it).  The event names the text
    version of the consent it ends.  :class:`Conflict` when there is none to end."""
    lock_practice(session, tenant)  # two withdrawals at once: one event
    before = load_snapshot(session, tenant, client)
    if before is None or before.state not in VALID_STATES:
        raise Conflict(N_("There is no given consent to withdraw for this client."))
    given = session.scalars(
        select(ConsentEvent)
        .where(
            ConsentEvent.tenant_ref == tenant,
            ConsentEvent.client_ref == client,
            ConsentEvent.state.in_([s.value for s in VALID_STATES]),
        )
        .order_by(ConsentEvent.seq.desc())
        .limit(1)
    ).first()
    new = _event(
        tenant, client, State.WITHDRAWN if by_client else State.REVOKED, how, now,
        text_version_id=given.text_version_id if given else None,
        text_major=given.text_major if given else None,
        text_sha256=given.text_sha256 if given else None,
        language=given.language if given else None,
    )
    return ledger.append(session, [new], previous={client: before})[0]


def request(
    session: Session, tenant: str, asked: Sequence[Asked], *, actor: str, now: datetime
) -> list[ConsentEvent]:
    """Record that clients were asked by e-mail (``requested``; a consent still given for
    the same or a newer text stays valid)."""
    return ledger.append(session, [
        _event(tenant, a.client, State.REQUESTED,
               How(channel="email", method="link", actor=actor, request_id=a.request_id),
               now, text=a.text)
        for a in asked
    ])


def erase(session: Session, tenant: str, client: str, how: How, *, now: datetime) -> ConsentEvent:
    """Record that the client's personal data was erased (the pseudonymous proof stays)."""
    return ledger.append(session, [_event(tenant, client, State.ERASED, how, now)])[0]


def delivery(
    session: Session, tenant: str, client: str, request_id: int, outcome: str
) -> None:
    """Show how the mail of the client's open request fared (``bounced``, ``failed``, …)
    on their status."""
    ledger.set_delivery(session, tenant, client, request_id, outcome)

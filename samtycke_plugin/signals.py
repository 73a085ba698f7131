"""Consent as the platform's other apps see it: a lookup and a signal after commit.

* :func:`lookup` answers "may these clients' data be used for this purpose now?" for
  any number of clients in one statement (``booking_consent_lookup``).
* :func:`note` is called by the projection's one writer
  (:func:`samtycke_plugin.ledger._write_projection`) for every (practice, client,
  purpose) it changes.  It issues no SQL: it only remembers the change in the session
  of the unit of work or hook (:data:`samtycke_plugin.hostdb.CHANGED`).  When that
  transaction commits, :func:`committed` reads the new statuses in one statement and
  calls ``booking_consent_changed`` once per change; a rolled-back transaction takes its
  notes with it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, and_, select, tuple_
from sqlalchemy.orm import Session

from hookspecs.facade import hooks_of
from hookspecs.host import OnCommit
from hookspecs.types import ClientRef, ConsentAnswer, ConsentChange, TenantRef, UnknownPurpose
from samtycke_plugin import db, hostdb, purposes
from samtycke_plugin.common import check_ref, now_utc
from samtycke_plugin.errors import InputError
from samtycke_plugin.models import ConsentStateRow, Purpose
from samtycke_plugin.rules import VALID_STATES, Snapshot, State, Status, status

if TYPE_CHECKING:
    from hookspecs.host import Host

log = logging.getLogger(__name__)

#: Values per ``IN (…)`` list, well under every backend's bind-parameter limit.
BIND_LIMIT = 900

Change = tuple[str, str, str]  # (tenant, client, purpose)

_S = cast(Table, ConsentStateRow.__table__).c
_PU = cast(Table, Purpose.__table__).c
_STATE = (_S.client_ref, _S.state, _S.text_major, _S.expires_at, _S.since, _S.delivery)


def note(session: Session, tenant: str, changed: Iterable[tuple[str, str]]) -> None:
    """Remember that the consent of each ``(client, purpose)`` of ``changed`` changed in
    the session's transaction (no SQL).  Sessions not opened by
    :mod:`~samtycke_plugin.hostdb` (a script's own) keep no notes and signal nothing."""
    noted: set[Change] | None = session.info.get(hostdb.CHANGED)
    if noted is not None:
        noted.update((tenant, client, purpose) for client, purpose in changed)


def _answer(snapshot: Snapshot | None, current_major: int | None, now: datetime
            ) -> ConsentAnswer:
    if snapshot is None or current_major is None:
        return ConsentAnswer(may_use=False, status=Status.UNKNOWN.value, since=None,
                             expires_at=None)
    current = status(snapshot, current_major, now)
    return ConsentAnswer(
        may_use=current is Status.VALID,
        status=current.value,
        since=snapshot.since,
        expires_at=snapshot.expires_at if snapshot.state in VALID_STATES else None,
    )


def _snapshot(row: Any) -> Snapshot | None:
    if row.state is None:
        return None
    return Snapshot(state=State(row.state), text_major=row.text_major,
                    expires_at=row.expires_at, since=row.since, delivery=row.delivery)


def check_purpose(purpose: object) -> str:
    """``purpose`` as a purpose key, else :class:`UnknownPurpose`."""
    try:
        return purposes.check_key(purpose)
    except InputError:
        raise UnknownPurpose(f"{purpose!r} is not a purpose key") from None


def _has_purposes(session: Session, tenant: str) -> bool:
    return session.scalar(select(_PU.key).where(_PU.tenant_ref == tenant).limit(1)) is not None


def lookup(
    host: Host, tenant: str, clients: Sequence[str], purpose: str
) -> dict[ClientRef, ConsentAnswer]:
    """An answer for every client in ``clients``: one statement per :data:`BIND_LIMIT`
    clients (the purpose's current text and the clients' statuses together)."""
    check_purpose(purpose)
    tenant = check_ref("tenant", tenant)
    if isinstance(clients, str | bytes) or not isinstance(clients, Iterable):
        raise InputError("clients", "must be a list of client references")
    refs = list(dict.fromkeys(check_ref("client", c) for c in clients))
    answers: dict[ClientRef, ConsentAnswer] = {}
    if not refs:
        return answers
    now = now_utc(host)
    with hostdb.session(host) as session:
        for start in range(0, len(refs), BIND_LIMIT):
            chunk = refs[start : start + BIND_LIMIT]
            # The purpose's row outer-joined to the clients' rows: one row even when
            # none of them has a status, none when the practice has no such purpose.
            rows = session.execute(
                select(_PU.current_major, *_STATE)
                .select_from(Purpose)
                .outerjoin(ConsentStateRow, and_(_S.tenant_ref == _PU.tenant_ref,
                                                 _S.purpose_key == _PU.key,
                                                 _S.client_ref.in_(chunk)))
                .where(_PU.tenant_ref == tenant, _PU.key == purpose)
            ).all()
            if not rows and _has_purposes(session, tenant):
                raise UnknownPurpose(f"the practice has no consent purpose {purpose!r}")
            major = rows[0].current_major if rows else None
            found = {row.client_ref: _snapshot(row) for row in rows if row.client_ref}
            for ref in chunk:
                answers[ClientRef(ref)] = _answer(found.get(ref), major, now)
    return answers


def _changes(session: Session, host: Host, keys: Sequence[Change]) -> list[ConsentChange]:
    """The statuses after commit of every change, one statement per
    :data:`BIND_LIMIT` bound values."""
    found: dict[Change, tuple[Snapshot | None, int]] = {}
    step = BIND_LIMIT // 3
    for start in range(0, len(keys), step):
        rows = session.execute(
            select(_S.tenant_ref, _S.purpose_key, _PU.current_major, *_STATE)
            .join(Purpose, and_(_PU.tenant_ref == _S.tenant_ref, _PU.key == _S.purpose_key))
            .where(tuple_(_S.tenant_ref, _S.client_ref, _S.purpose_key)
                   .in_(list(keys[start : start + step])))
        )
        for row in rows:
            found[(row.tenant_ref, row.client_ref, row.purpose_key)] = (
                _snapshot(row), row.current_major)
    out, now = [], now_utc(host)
    for tenant, client, purpose in keys:
        snapshot, major = found.get((tenant, client, purpose), (None, None))
        answer = _answer(snapshot, major, now)
        out.append(ConsentChange(
            tenant=TenantRef(tenant), client=ClientRef(client), purpose=purpose,
            status=answer.status, may_use=answer.may_use, since=answer.since,
            expires_at=answer.expires_at,
        ))
    return out


def committed(host: Host, changed: Collection[Change]) -> None:
    """The transaction in which ``changed`` were noted has committed: call
    ``booking_consent_changed`` once per change, through the facade built for ``host``.

    Never raises: the work is committed, and a failure here (reading the statuses, an
    app's implementation) is logged.  Reads nothing when no active app listens."""
    try:
        facade = hooks_of(host)
        if facade is None:
            return
        tenants = {tenant for tenant, _client, _purpose in changed}
        heard = {t for t in tenants if facade.listens_to_consent(TenantRef(t))}
        keys = sorted(k for k in set(changed) if k[0] in heard)
        if not keys:
            return
        changes = db.run_in_transaction(host, lambda s: _changes(s, host, keys), commit=False)
        facade.consent_changed(changes)
    except Exception:
        log.exception("signalling %d committed consent change(s) failed", len(changed))


def after_host_commit(host: Host, changed: Collection[Change]) -> None:
    """Changes noted by a hook in the host's transaction: signalled when the host says
    that transaction committed (:class:`hookspecs.host.OnCommit`); a host without
    ``on_commit`` gets no signal for them."""
    if isinstance(host, OnCommit):
        keys = frozenset(changed)
        host.on_commit(lambda: committed(host, keys))

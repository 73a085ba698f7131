"""The practice's status list: one CSV row per client, streamed in bounded memory."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from hookspecs.types import ClientInfo, TenantRef
from samtycke_plugin import access_log, hostdb, status_text
from samtycke_plugin.access_log import Viewer
from samtycke_plugin.common import now_utc
from samtycke_plugin.db import run_in_transaction
from samtycke_plugin.export.common import csv_safe, csv_text, get_practice
from samtycke_plugin.i18n import lang
from samtycke_plugin.ledger import snapshot_of
from samtycke_plugin.models import ConsentStateRow
from samtycke_plugin.purposes import DEFAULT_PURPOSE, list_purposes
from samtycke_plugin.receipts import DPV_STATUS
from samtycke_plugin.rules import State, Status, status

if TYPE_CHECKING:
    from hookspecs.host import Host

#: Columns of the practice status CSV (one row per client).
STATUS_COLUMNS = (
    "client_ref", "name", "email", "status", "status_label", "state", "dpv_status",
    "text_version", "since", "expires_at", "last_seq", "purpose",
)

#: Rows per chunk of the streamed status CSV (and per host-client lookup query).
STATUS_CHUNK = 1000


def _status_row(
    labels: dict[Status, str],
    client: str,
    info: ClientInfo | None,
    row: Any | None,
    current_major: int,
    now: datetime,
    purpose: str = DEFAULT_PURPOSE,
) -> list[str]:
    snap = snapshot_of(row) if row is not None else None
    current = status(snap, current_major, now)
    state = State(row.state) if row is not None else None
    return [
        csv_safe(client),
        csv_safe(info.name if info else None),
        csv_safe(info.email if info else None),
        current.value,
        labels[current],
        state.value if state else "",
        (DPV_STATUS.get(state) or "") if state else "",
        csv_safe(row.text_major if row is not None else None),
        csv_safe(row.since if row is not None else None),
        csv_safe(row.expires_at if row is not None else None),
        csv_safe(row.last_seq if row is not None else None),
        csv_safe(purpose),
    ]


_STATE_COLUMNS = (
    ConsentStateRow.client_ref,
    ConsentStateRow.state,
    ConsentStateRow.text_major,
    ConsentStateRow.expires_at,
    ConsentStateRow.since,
    ConsentStateRow.delivery,
    ConsentStateRow.last_seq,
)


def _chunks(items: Iterable[ClientInfo], size: int) -> Iterator[list[ClientInfo]]:
    chunk: list[ClientInfo] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _majors(session: Session, tenant: str) -> dict[str, int]:
    """The practice's purposes (the order it asks for them) and their current content."""
    return {p.key: p.current_major for p in list_purposes(session, tenant)}


def practice_status_count(host: Host, tenant: str) -> int:
    """How many (client, purpose) statuses the app holds for the purposes the practice
    asks for (the rows of a database-only export)."""
    with hostdb.session(host) as session:
        practice = get_practice(session, tenant)
        return int(
            session.scalar(
                select(func.count())
                .select_from(ConsentStateRow)
                .where(
                    ConsentStateRow.tenant_ref == practice.tenant_ref,
                    ConsentStateRow.purpose_key.in_(list(_majors(session, practice.tenant_ref))),
                )
            )
            or 0
        )


def practice_status_csv(
    host: Host,
    tenant: str,
    *,
    by: Viewer,
    locale: str | None = None,
    from_host: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """The practice's status list as CSV text chunks (columns: :data:`STATUS_COLUMNS`).

    ``from_host=True``: one row per client the host lists (:meth:`Host.iter_clients`,
    in the host's order), with name and e-mail, including clients never asked
    (``unknown``).  ``from_host=False`` (no host client directory, e.g. the CLI without
    ``--host``): one row per client the app holds a status for, by client reference.

    Streamed: memory stays bounded by :data:`STATUS_CHUNK` rows whatever the size of
    the practice.  ``progress`` is called with the number of rows after each chunk.
    The first step records ``by`` in the access log (client: the whole practice), so
    a stream nobody starts to read discloses nothing and logs nothing.
    """

    def start(session: Session) -> tuple[str, str, dict[str, int]]:
        practice = get_practice(session, tenant)
        access_log.record(
            session, host, practice.tenant_ref, by, "export_status_list",
            detail="with_names" if from_host else "refs_only",
        )
        majors = _majors(session, practice.tenant_ref)
        return (practice.tenant_ref, lang(locale or practice.default_language), majors)

    # A session per step, never held across a ``yield``: the consumer may pause the
    # stream (a streamed HTTP response) and do other work in between.
    tenant, language, majors = run_in_transaction(host, start)
    labels = {s: csv_safe(status_text.label(s, language)) for s in Status}
    now = now_utc(host)
    yield csv_text([STATUS_COLUMNS])
    if from_host:
        for chunk in _chunks(host.iter_clients(TenantRef(tenant)), STATUS_CHUNK):
            refs = [c.ref for c in chunk]
            with hostdb.session(host) as session:
                # The purpose is picked here, not in SQL, so that the list is looked up
                # by primary key (see ledger.load_snapshots).
                found = {
                    (r.client_ref, r.purpose_key): r
                    for r in session.execute(
                        select(*_STATE_COLUMNS, ConsentStateRow.purpose_key).where(
                            ConsentStateRow.tenant_ref == tenant,
                            ConsentStateRow.client_ref.in_(refs),
                        )
                    )
                    if r.purpose_key in majors
                }
            yield csv_text(
                _status_row(labels, c.ref, c, found.get((c.ref, key)), major, now, key)
                for c in chunk
                for key, major in majors.items()
            )
            if progress is not None:
                progress(len(chunk))
        return
    after: tuple[str, str] | None = None
    while True:  # keyset pages by (client reference, purpose)
        query = select(*_STATE_COLUMNS, ConsentStateRow.purpose_key).where(
            ConsentStateRow.tenant_ref == tenant, ConsentStateRow.purpose_key.in_(list(majors))
        )
        if after is not None:
            query = query.where(
                tuple_(ConsentStateRow.client_ref, ConsentStateRow.purpose_key) > tuple_(*after)
            )
        with hostdb.session(host) as session:
            part = session.execute(
                query.order_by(ConsentStateRow.client_ref, ConsentStateRow.purpose_key)
                .limit(STATUS_CHUNK)
            ).all()
        if not part:
            return
        after = (part[-1].client_ref, part[-1].purpose_key)
        yield csv_text(
            _status_row(labels, r.client_ref, None, r, majors[r.purpose_key], now, r.purpose_key)
            for r in part
        )
        if progress is not None:
            progress(len(part))


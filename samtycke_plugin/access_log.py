"""The access log: who viewed or exported which client's consent data, when and how.

Every page, download and command that shows a person a client's consent history, its
proof or the practice's status list records one row here through :func:`record`, in
the same transaction as the read: the row and the disclosure stand or fall together,
and a database that cannot take the row shows nothing (fail closed).  Rows are never
changed or deleted (the database refuses it) and name the client only by the host's
opaque reference; ``detail`` is a short code (a format, a language), never free text.

A page that shows personal data answers a GET, and GET changes nothing in the app's
consent state; writing the access-log row of that view is the one exception, as in
health-care access logging.  A read-only unit of work that holds access-log rows is
committed (:func:`keeps`) and one that also changed consent state is refused.

Erasure of a client keeps their rows unchanged: they hold no personal detail of the
client, and "who looked at this record before it was erased" must stay answerable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from attrs import frozen
from sqlalchemy import select
from sqlalchemy.orm import Session

from hookspecs.types import StaffContext
from samtycke_plugin import hostdb
from samtycke_plugin.common import check_ref, now_utc
from samtycke_plugin.i18n import N_
from samtycke_plugin.models import AccessLogEntry

if TYPE_CHECKING:
    from hookspecs.host import Host

#: What was viewed or exported, in words for the log's readers.
ACTIONS = {
    "view_history": N_("Viewed the consent history"),
    "view_proof_page": N_("Opened the printable proof page"),
    "download_bundle": N_("Downloaded the proof bundle"),
    "download_json": N_("Downloaded the history (JSON)"),
    "download_csv": N_("Downloaded the history (CSV)"),
    "export_status_list": N_("Exported the practice's status list"),
    "download_attachment": N_("Downloaded the scan of a signed paper form"),
}

#: How: the app's practitioner pages, a host's download route, or the command line.
VIA = {
    "page": N_("Samtycke's pages"),
    "download": N_("Download in the booking platform"),
    "cli": N_("Command line"),
}

#: ``session.info`` key: how many access-log rows the unit of work holds.
_RECORDED = "samtycke.access_logged"
_DETAIL = re.compile(r"[a-z0-9_=.,:-]{1,80}")
#: Rows per page of the log.
PAGE_SIZE = 50


@frozen(kw_only=True)
class Viewer:
    """Who reads, and through what: ``actor`` is ``staff:<ref>`` (on the pages and the
    command line alike), ``via`` is ``page``, ``cli`` or the like."""

    actor: str
    via: str

    @classmethod
    def staff(cls, staff: StaffContext, via: str = "page") -> Viewer:
        return cls(actor=f"staff:{check_ref('staff', staff.ref)}", via=via)


@frozen(kw_only=True)
class Entry:
    id: int
    at: datetime
    actor: str
    action: str
    via: str
    client: str | None
    detail: str | None


@frozen(kw_only=True)
class Page:
    """Entries newest first; ``older`` is the ``before`` of the next page, if any."""

    entries: Sequence[Entry]
    older: int | None


def record(
    session: Session,
    host: Host,
    tenant: str,
    by: Viewer,
    action: str,
    *,
    client: str | None = None,
    detail: str | None = None,
) -> None:
    """Append one row to the practice's access log in ``session``'s transaction."""
    if action not in ACTIONS:
        raise ValueError(f"unknown access-log action {action!r}")
    if by.via not in VIA:
        raise ValueError(f"unknown access-log channel {by.via!r}")
    if detail is not None and not _DETAIL.fullmatch(detail):
        raise ValueError("an access-log detail is a short code, never free text")
    session.add(
        AccessLogEntry(
            tenant_ref=check_ref("tenant", tenant),
            at=now_utc(host),
            actor=by.actor,
            action=action,
            via=by.via,
            client_ref=None if client is None else check_ref("client", client),
            detail=detail,
        )
    )
    session.flush()
    session.info[_RECORDED] = session.info.get(_RECORDED, 0) + 1


def keeps(session: Session) -> bool:
    """Whether a read-only unit of work commits all the same: it holds access-log rows.

    Such a unit may hold nothing else; one in which the ledger noted a consent change
    is a programming error, refused (and so rolled back) here.
    """
    if not session.info.get(_RECORDED):
        return False
    if session.info.get(hostdb.CHANGED):
        raise RuntimeError("a read-only unit of work changed consent state; rolled back")
    return True


def _entry(row: AccessLogEntry) -> Entry:
    return Entry(id=row.id, at=row.at, actor=row.actor, action=row.action, via=row.via,
                 client=row.client_ref, detail=row.detail)


def entries(
    host: Host,
    tenant: str,
    *,
    client: str | None = None,
    before: int | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """One page of the practice's access log, newest first, only this practice's rows;
    with ``client``, only that client's; ``before`` (an entry id) pages back."""
    tenant = check_ref("tenant", tenant)
    query = select(AccessLogEntry).where(AccessLogEntry.tenant_ref == tenant)
    if client is not None:
        query = query.where(AccessLogEntry.client_ref == check_ref("client", client))
    if before is not None:
        query = query.where(AccessLogEntry.id < before)
    with hostdb.session(host) as session:
        rows = list(session.scalars(query.order_by(AccessLogEntry.id.desc()).limit(limit + 1)))
    found = [_entry(r) for r in rows[:limit]]
    return Page(entries=found, older=found[-1].id if len(rows) > limit else None)


def all_entries(host: Host, tenant: str, *, client: str | None = None) -> Iterator[Entry]:
    """Every entry of the practice (or of one client), newest first, page by page."""
    before: int | None = None
    while True:
        page = entries(host, tenant, client=client, before=before, limit=500)
        yield from page.entries
        if page.older is None:
            return
        before = page.older


#: Columns of the access log as CSV.
COLUMNS = ("id", "at", "actor", "action", "via", "client_ref", "detail")


def csv_rows(items: Iterator[Entry] | Sequence[Entry]) -> Iterator[list[object]]:
    yield list(COLUMNS)
    for e in items:
        yield [e.id, e.at, e.actor, e.action, e.via, e.client, e.detail]


__all__ = ["ACTIONS", "COLUMNS", "VIA", "Entry", "Page", "Viewer", "all_entries", "csv_rows",
           "entries", "keeps", "record"]

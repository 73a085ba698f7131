"""Exports for proof of consent (F10, F16): a client's history (JSON, CSV, printable
HTML), the practice's status list (CSV, streamed) and the one-step proof bundle.

Every function takes the host and a practice (tenant) and reads only that practice's
rows: another practice's client gives an empty history or :class:`NotFound`, never
someone else's data.  Nothing here writes or commits.  Exports work after the app was
deactivated (the data is kept) and after a client was erased (the pseudonymous proof
is kept; name and e-mail come from the host and are then simply unknown).

CSV files are RFC 4180 (comma, CRLF, UTF-8).  Text that a spreadsheet would run as a
formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) is prefixed
with an apostrophe, so a note or user agent cannot become a formula in Excel.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from hookspecs.types import ClientInfo, ClientRef, TenantRef
from samtycke_plugin import checkpoint, status_text
from samtycke_plugin.chain import VerifyResult, verify_chain
from samtycke_plugin.common import check_ref, now_utc, version_label
from samtycke_plugin.errors import NotFound
from samtycke_plugin.i18n import N_, lang, t
from samtycke_plugin.integrity import ReplayedState, describe_status, replay_step
from samtycke_plugin.ledger import snapshot_of
from samtycke_plugin.models import ConsentEvent, ConsentStateRow, Evidence, Practice, TextVersion
from samtycke_plugin.receipts import (
    DPV_STATUS,
    RECEIPT_STATES,
    receipt_for,
    receipt_id,
)
from samtycke_plugin.render import render, trusted_html
from samtycke_plugin.rules import State, Status, status
from samtycke_plugin.status_text import CHANNEL_LABELS, METHOD_LABELS, STATE_LABELS, code_label

if TYPE_CHECKING:
    from hookspecs.host import Host

HISTORY_FORMAT = "samtycke-client-history/1"
BUNDLE_FORMAT = "samtycke-proof-bundle/1"

#: Columns of the client history CSV (one row per ledger event).
HISTORY_COLUMNS = (
    "seq", "occurred_at", "given_at", "expires_at", "state", "dpv_status", "channel",
    "method", "actor", "text_version", "text_language", "text_sha256", "booking_ref",
    "request_id", "ip_prefix", "user_agent", "note", "evidence", "receipt_id", "row_hash",
)

#: Columns of the practice status CSV (one row per client).
STATUS_COLUMNS = (
    "client_ref", "name", "email", "status", "status_label", "state", "dpv_status",
    "text_version", "since", "expires_at", "last_seq",
)

#: Rows per chunk of the streamed status CSV (and per host-client lookup query).
STATUS_CHUNK = 1000




EVIDENCE_LABELS = {
    "present": N_("Kept"),
    "erased": N_("Erased with the client's personal data"),
    "none": N_("None recorded"),
}

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# -- small helpers ---------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` (or ``None``)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def human_time(value: str | None) -> str:
    """An ISO 8601 UTC time as ``YYYY-MM-DD HH:MM UTC`` for people (empty for ``None``)."""
    if not value:
        return ""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")


def csv_safe(value: object) -> str:
    """A CSV cell: ``None`` → empty; formula-like text gets a leading apostrophe."""
    if value is None:
        return ""
    text = iso(value) if isinstance(value, datetime) else str(value)
    assert text is not None
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def actor_label(locale: str, actor: str) -> str:
    """Who recorded an event, in words."""
    if actor == "client":
        return t(locale, "The client")
    if actor.startswith("staff:"):
        return t(locale, "Staff member %(ref)s", ref=actor.removeprefix("staff:"))
    if actor == "host":
        return t(locale, "The booking platform")
    if actor == "system":
        return t(locale, "The system")
    return actor


def _practice(session: Session, tenant: str) -> Practice:
    practice = session.get(Practice, check_ref("tenant", tenant))
    if practice is None:
        raise NotFound(N_("Samtycke has no data for this practice."))
    return practice


def _chain_summary(result: VerifyResult, at: datetime) -> dict[str, Any]:
    broken = result.broken
    return {
        "verified_at": iso(at),
        "ok": result.ok,
        "events": result.events,
        "head_seq": result.head_seq,
        "head_hash": result.head_hash,
        "broken": (
            {"seq": broken.seq, "kind": broken.kind, "detail": broken.detail} if broken else None
        ),
    }


# -- the client history (F10) --------------------------------------------------------------------


def _events(
    session: Session, tenant: str, client: str
) -> list[tuple[ConsentEvent, Evidence | None]]:
    result = session.execute(
        select(ConsentEvent, Evidence)
        .outerjoin(
            Evidence,
            and_(Evidence.event_id == ConsentEvent.id, Evidence.tenant_ref == tenant),
        )
        .where(ConsentEvent.tenant_ref == tenant, ConsentEvent.client_ref == client)
        .order_by(ConsentEvent.seq)
    )
    return [(ev, evd) for ev, evd in result]


def _texts(session: Session, tenant: str, ids: Iterable[int]) -> list[TextVersion]:
    wanted = sorted(set(ids))
    if not wanted:
        return []
    return list(
        session.scalars(
            select(TextVersion)
            .where(TextVersion.tenant_ref == tenant, TextVersion.id.in_(wanted))
            .order_by(TextVersion.major, TextVersion.minor, TextVersion.language)
        )
    )


def _evidence_state(event: ConsentEvent, evidence: Evidence | None) -> str:
    if evidence is not None:
        return "present"
    return "erased" if event.evidence_sha256 is not None else "none"


def client_history(
    host: Host, tenant: str, client: str, *, verify: bool = True, locale: str | None = None
) -> dict[str, Any]:
    """Everything the app can show about one client's consent, as plain JSON data.

    Every event (oldest first) with its text version, channel, method, time, evidence
    and who recorded it; the full text of every version shown; the current status; and
    (with ``verify``) the result of verifying the practice's whole chain now, plus the
    latest stored checkpoint.  A client with no events gives an empty event list.
    """
    session = host.session()
    practice = _practice(session, tenant)
    tenant = practice.tenant_ref
    client = check_ref("client", client)
    language = lang(locale or practice.default_language)
    now = now_utc(host)
    info = host.lookup_client(TenantRef(tenant), ClientRef(client))
    pinfo = host.practice_info(TenantRef(tenant))
    rows = _events(session, tenant, client)
    texts = _texts(session, tenant, (ev.text_version_id for ev, _ in rows if ev.text_version_id))
    by_id = {tv.id: tv for tv in texts}
    state_row = session.get(ConsentStateRow, (tenant, client))
    replayed: ReplayedState | None = None
    for ev, _ in rows:
        replayed = replay_step(
            replayed, ev.seq, ev.state, ev.text_major, ev.expires_at, ev.occurred_at
        )
    stored_differs = describe_status(client, state_row, replayed)
    shown = snapshot_of(state_row)
    if stored_differs is not None:  # the ledger is the proof: show what it says
        shown = replayed.snapshot if replayed is not None else None
    current = status(shown, practice.current_major, now)
    events = []
    for ev, evd in rows:
        text = by_id.get(ev.text_version_id) if ev.text_version_id else None
        state = State(ev.state)
        events.append({
            "seq": ev.seq,
            "state": ev.state,
            "dpv_status": DPV_STATUS.get(state),
            "occurred_at": iso(ev.occurred_at),
            "given_at": iso(ev.given_at),
            "expires_at": iso(ev.expires_at),
            "channel": ev.channel,
            "method": ev.method,
            "actor": ev.actor,
            "text": (
                {
                    "id": text.id, "version": version_label(text.major, text.minor),
                    "language": text.language, "sha256": text.sha256,
                }
                if text is not None
                else None
            ),
            "text_sha256": ev.text_sha256,
            "booking_ref": ev.booking_ref,
            "request_id": ev.request_id,
            "evidence": (
                {"ip_prefix": evd.ip_prefix, "user_agent": evd.user_agent, "note": evd.note}
                if evd is not None
                else None
            ),
            "evidence_status": _evidence_state(ev, evd),
            "evidence_sha256": ev.evidence_sha256,
            "receipt_id": (
                receipt_id(ev) if state in RECEIPT_STATES and ev.text_version_id else None
            ),
            "prev_hash": ev.prev_hash,
            "row_hash": ev.row_hash,
        })
    history: dict[str, Any] = {
        "format": HISTORY_FORMAT,
        "generated_at": iso(now),
        "language": language,
        "practice": {
            "ref": tenant,
            "name": pinfo.name if pinfo else None,
            "email": pinfo.email if pinfo else None,
            "phone": pinfo.phone if pinfo else None,
            "active": practice.active,
            "current_version": practice.current_major,
        },
        "client": {
            "ref": client,
            "known_to_host": info is not None,
            "name": info.name if info else None,
            "email": info.email if info else None,
        },
        "status": {
            "code": current.value,
            "label": status_text.label(current, language),
            "reason": status_text.reason(current, language),
            "stored_differs": stored_differs,
        },
        "events": events,
        "texts": [
            {
                "id": tv.id,
                "version": version_label(tv.major, tv.minor),
                "language": tv.language,
                "sha256": tv.sha256,
                "change_kind": tv.change_kind,
                "reason": tv.reason,
                "created_by": tv.created_by,
                "created_at": iso(tv.created_at),
                "body": tv.body,
            }
            for tv in texts
        ],
        "chain": None,
        "checkpoint": None,
    }
    if verify:
        history["chain"] = _chain_summary(verify_chain(session, tenant), now)
        history["checkpoint"] = checkpoint.latest(session, tenant)
    return history


def client_history_json(
    host: Host, tenant: str, client: str, *, verify: bool = True, locale: str | None = None
) -> str:
    """:func:`client_history` as pretty-printed UTF-8 JSON text."""
    data = client_history(host, tenant, client, verify=verify, locale=locale)
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def _history_rows(history: dict[str, Any]) -> Iterator[list[str]]:
    yield list(HISTORY_COLUMNS)
    for ev in history["events"]:
        text = ev["text"] or {}
        evd = ev["evidence"] or {}
        values = {
            **ev,
            "text_version": text.get("version"),
            "text_language": text.get("language"),
            "text_sha256": ev["text_sha256"],
            "ip_prefix": evd.get("ip_prefix"),
            "user_agent": evd.get("user_agent"),
            "note": evd.get("note"),
            "evidence": ev["evidence_status"],
        }
        yield [csv_safe(values.get(col)) for col in HISTORY_COLUMNS]


def _csv_text(rows: Iterable[Sequence[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerows(rows)
    return buf.getvalue()


def client_history_csv(host: Host, tenant: str, client: str) -> str:
    """One row per ledger event of the client (columns: :data:`HISTORY_COLUMNS`)."""
    return _csv_text(_history_rows(client_history(host, tenant, client, verify=False)))


def client_history_html(
    host: Host, tenant: str, client: str, *, locale: str | None = None, verify: bool = True
) -> str:
    """A printable, self-contained HTML page of the client's history (save as PDF from
    the browser), in the practice's language unless ``locale`` is given."""
    history = client_history(host, tenant, client, verify=verify, locale=locale)
    return _history_html(host.session(), history)


def _history_html(session: Session, history: dict[str, Any]) -> str:
    language = history["language"]
    texts = {
        tv.id: tv
        for tv in _texts(session, history["practice"]["ref"], (x["id"] for x in history["texts"]))
    }
    rows = [
        {
            **ev,
            "state_label": code_label(STATE_LABELS, ev["state"], language),
            "channel_label": code_label(CHANNEL_LABELS, ev["channel"], language),
            "method_label": code_label(METHOD_LABELS, ev["method"], language),
            "actor_label": actor_label(language, ev["actor"]),
            "evidence_label": t(language, EVIDENCE_LABELS[ev["evidence_status"]]),
            "occurred": human_time(ev["occurred_at"]),
            "given": (
                ev["given_at"][:10] if ev["channel"] == "manual" and ev["given_at"]
                else human_time(ev["given_at"])
            ),
            "given_differs": ev["given_at"] is not None and ev["given_at"] != ev["occurred_at"],
            "expires": human_time(ev["expires_at"]),
        }
        for ev in history["events"]
    ]
    shown = [
        {
            **tv,
            "html": trusted_html(texts[tv["id"]].html),
            "published": human_time(tv["created_at"]),
        }
        for tv in history["texts"]
        if tv["id"] in texts
    ]
    return render(
        "export_client.html", language, history=history, rows=rows, texts=shown,
        practice=history["practice"], client=history["client"], chain=history["chain"],
        checkpoint=history["checkpoint"], status=history["status"],
        generated=human_time(history["generated_at"]),
        verified=human_time(history["chain"]["verified_at"]) if history["chain"] else "",
        signed=human_time(history["checkpoint"]["created_at"]) if history["checkpoint"] else "",
    )


# -- the practice status list ----------------------------------------------------------------------


def _status_row(
    labels: dict[Status, str],
    client: str,
    info: ClientInfo | None,
    row: Any | None,
    current_major: int,
    now: datetime,
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


def practice_status_count(host: Host, tenant: str) -> int:
    """How many clients the app holds a status for (the rows of a database-only export)."""
    session = host.session()
    practice = _practice(session, tenant)
    return int(
        session.scalar(
            select(func.count())
            .select_from(ConsentStateRow)
            .where(ConsentStateRow.tenant_ref == practice.tenant_ref)
        )
        or 0
    )


def practice_status_csv(
    host: Host,
    tenant: str,
    *,
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
    """
    session = host.session()
    practice = _practice(session, tenant)
    tenant = practice.tenant_ref
    language = lang(locale or practice.default_language)
    labels = {s: csv_safe(status_text.label(s, language)) for s in Status}
    now = now_utc(host)
    major = practice.current_major
    yield _csv_text([STATUS_COLUMNS])
    if from_host:
        for chunk in _chunks(host.iter_clients(TenantRef(tenant)), STATUS_CHUNK):
            refs = [c.ref for c in chunk]
            found = {
                r.client_ref: r
                for r in session.execute(
                    select(*_STATE_COLUMNS).where(
                        ConsentStateRow.tenant_ref == tenant,
                        ConsentStateRow.client_ref.in_(refs),
                    )
                )
            }
            yield _csv_text(
                _status_row(labels, c.ref, c, found.get(c.ref), major, now) for c in chunk
            )
            if progress is not None:
                progress(len(chunk))
        return
    result = session.execute(
        select(*_STATE_COLUMNS)
        .where(ConsentStateRow.tenant_ref == tenant)
        .order_by(ConsentStateRow.client_ref)
        .execution_options(yield_per=STATUS_CHUNK)
    )
    for part in result.partitions():
        yield _csv_text(_status_row(labels, r.client_ref, None, r, major, now) for r in part)
        if progress is not None:
            progress(len(part))


# -- the proof bundle ------------------------------------------------------------------------------


def _bundle_readme(language: str, history: dict[str, Any]) -> str:
    client = history["client"]
    practice = history["practice"]
    chain = history["chain"]
    lines = [
        t(language, "Proof of consent"),
        "",
        t(language, "Practice: %(name)s (%(ref)s)", name=practice["name"] or practice["ref"],
          ref=practice["ref"]),
        t(language, "Client: %(name)s (reference %(ref)s)",
          name=client["name"] or t(language, "name not known (erased or unknown)"),
          ref=client["ref"]),
        t(language, "Produced: %(at)s", at=history["generated_at"]),
        "",
    ]
    if chain is not None and chain["ok"]:
        lines.append(t(
            language,
            "The practice's consent ledger was verified when this bundle was produced: "
            "%(n)s events, unbroken up to event #%(seq)s.",
            n=chain["events"], seq=chain["head_seq"],
        ))
    elif chain is not None:
        broken = chain["broken"]
        lines.append(t(
            language,
            "WARNING: the practice's consent ledger did NOT verify: the first broken event is "
            "#%(seq)s (%(kind)s).",
            seq=broken["seq"], kind=broken["kind"],
        ))
    if history["status"]["stored_differs"] is not None:
        lines.append(t(
            language,
            "WARNING: the status stored for this client does not match the ledger; the "
            "status shown here is the ledger's. Rebuild the stored status (samtycke "
            "rebuild-status).",
        ))
    if history["checkpoint"] is not None:
        lines.append(t(
            language,
            "The latest signed checkpoint covers event #%(seq)s (signed %(at)s with key "
            "%(key)s).",
            seq=history["checkpoint"]["seq"], at=history["checkpoint"]["created_at"],
            key=history["checkpoint"]["key_id"],
        ))
    lines += [
        "",
        t(language, "Files:"),
        t(language, "history.html: the history to read or print"),
        t(language, "history.json, history.csv: the same history for computers"),
        t(language, "receipts/: a standard receipt (Kantara, ISO/IEC TS 27560, DPV) per consent"),
        t(language, "texts/: the exact texts the client was shown"),
        t(language, "verification.json: the ledger check and the latest checkpoint"),
        t(language, "MANIFEST.sha256: the SHA-256 of every file in this bundle"),
        "",
    ]
    return "\n".join(lines)


def proof_bundle(host: Host, tenant: str, client: str, *, locale: str | None = None) -> bytes:
    """Everything needed to prove one client's consent, in one ZIP file.

    Contents: ``README.txt``, ``history.html``, ``history.json``, ``history.csv``,
    ``receipts/receipt-<seq>.json`` (one per consent given, given again, withdrawn or
    revoked), ``texts/text-<version>-<language>.md`` (the exact texts shown),
    ``verification.json`` (the chain verified now and the latest checkpoint) and
    ``MANIFEST.sha256``.  The practice's chain is verified once for all of them.
    """
    session = host.session()
    practice = _practice(session, tenant)
    history = client_history(host, practice.tenant_ref, client, locale=locale)
    language = history["language"]
    files: dict[str, bytes] = {}
    files["history.json"] = (json.dumps(history, ensure_ascii=False, indent=2) + "\n").encode()
    files["history.csv"] = _csv_text(_history_rows(history)).encode()
    files["history.html"] = _history_html(session, history).encode()
    event_ids = [
        ev.id for ev, _ in _events(session, practice.tenant_ref, history["client"]["ref"])
        if State(ev.state) in RECEIPT_STATES and ev.text_version_id
    ]
    for event_id in event_ids:
        event = session.get(ConsentEvent, event_id)
        assert event is not None
        receipt = receipt_for(host, event)
        files[f"receipts/receipt-{event.seq:06d}.json"] = (
            json.dumps(receipt, ensure_ascii=False, indent=2) + "\n"
        ).encode()
    for text in history["texts"]:
        name = f"texts/text-{text['version']}-{text['language']}.md"
        files[name] = text["body"].encode()
    files["verification.json"] = (
        json.dumps(
            {"format": BUNDLE_FORMAT, "chain": history["chain"],
             "status": {"ok": history["status"]["stored_differs"] is None,
                        "detail": history["status"]["stored_differs"]},
             "checkpoint": history["checkpoint"]},
            ensure_ascii=False, indent=2,
        )
        + "\n"
    ).encode()
    files["README.txt"] = _bundle_readme(language, history).encode()
    manifest = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items())
    )
    files["MANIFEST.sha256"] = manifest.encode()
    stamp = now_utc(host).timetuple()[:6]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in ("README.txt", *sorted(n for n in files if n != "README.txt")):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return buf.getvalue()


def bundle_filename(tenant: str, client: str, at: datetime) -> str:
    """A safe file name for a proof bundle."""
    return f"samtycke-proof-{check_ref('tenant', tenant)}-{check_ref('client', client)}-" + (
        at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") + ".zip"
    )


__all__ = [
    "HISTORY_COLUMNS",
    "STATUS_COLUMNS",
    "bundle_filename",
    "client_history",
    "client_history_csv",
    "client_history_html",
    "client_history_json",
    "csv_safe",
    "practice_status_count",
    "practice_status_csv",
    "proof_bundle",
]

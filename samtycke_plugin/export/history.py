"""One client's consent history: as JSON data, CSV (one row per event) and a
printable HTML page."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from hookspecs.types import ClientRef, TenantRef
from samtycke_plugin import access_log, checkpoint, hostdb, status_text
from samtycke_plugin.access_log import Viewer
from samtycke_plugin.chain import VerifyResult, verify_chain
from samtycke_plugin.common import check_ref, now_utc, version_label
from samtycke_plugin.db import run_in_transaction
from samtycke_plugin.export.common import csv_safe, csv_text, get_practice, human_time, iso
from samtycke_plugin.i18n import N_, lang, t
from samtycke_plugin.integrity import ReplayedState, describe_status, replay_step
from samtycke_plugin.ledger import snapshot_of
from samtycke_plugin.models import ConsentEvent, ConsentStateRow, Evidence, TextVersion
from samtycke_plugin.panels import purpose_label
from samtycke_plugin.purposes import DEFAULT_PURPOSE, list_purposes
from samtycke_plugin.receipts import DPV_STATUS, RECEIPT_STATES, receipt_id
from samtycke_plugin.render import render, trusted_html
from samtycke_plugin.rules import State, status
from samtycke_plugin.status_text import CHANNEL_LABELS, METHOD_LABELS, STATE_LABELS, code_label

if TYPE_CHECKING:
    from hookspecs.host import Host

HISTORY_FORMAT = "samtycke-client-history/1"

#: Columns of the client history CSV (one row per ledger event).
HISTORY_COLUMNS = (
    "seq", "occurred_at", "given_at", "expires_at", "state", "dpv_status", "channel",
    "method", "actor", "text_version", "text_language", "text_sha256", "booking_ref",
    "request_id", "ip_prefix", "user_agent", "note", "evidence", "receipt_id", "row_hash",
    "purpose", "purpose_name",
)

EVIDENCE_LABELS = {
    "present": N_("Kept"),
    "erased": N_("Erased with the client's personal data"),
    "none": N_("None recorded"),
}


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



def client_events(
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
    host: Host,
    tenant: str,
    client: str,
    *,
    by: Viewer,
    verify: bool = True,
    locale: str | None = None,
) -> dict[str, Any]:
    """Everything the app can show about one client's consent, as plain JSON data.

    Every event (oldest first) with its text version, channel, method, time, evidence
    and who recorded it; the full text of every version shown; the current status; and
    (with ``verify``) the result of verifying the practice's whole chain now, plus the
    latest stored checkpoint.  A client with no events gives an empty event list.

    It is the content of the JSON download: ``by`` is recorded in the access log as
    ``download_json``, in the transaction of the read.
    """
    return run_in_transaction(
        host, lambda s: _logged(s, host, tenant, client, by, "download_json", verify, locale)
    )


def _logged(
    session: Session,
    host: Host,
    tenant: str,
    client: str,
    by: Viewer,
    action: str,
    verify: bool,
    locale: str | None,
) -> dict[str, Any]:
    history = history_data(host, tenant, client, verify=verify, locale=locale)
    access_log.record(
        session, host, history["practice"]["ref"], by, action,
        client=history["client"]["ref"], detail=f"locale={history['language']}",
    )
    return history


def history_data(
    host: Host, tenant: str, client: str, *, verify: bool = True, locale: str | None = None
) -> dict[str, Any]:
    """:func:`client_history` without an access-log row: the building block of the
    exports, each of which records its own row."""
    with hostdb.session(host) as session:
        practice = get_practice(session, tenant)
        tenant = practice.tenant_ref
        client = check_ref("client", client)
        language = lang(locale or practice.default_language)
        now = now_utc(host)
        info = host.lookup_client(TenantRef(tenant), ClientRef(client))
        pinfo = host.practice_info(TenantRef(tenant))
        rows = client_events(session, tenant, client)
        texts = _texts(session, tenant,
                       (ev.text_version_id for ev, _ in rows if ev.text_version_id))
        by_id = {tv.id: tv for tv in texts}
        purposes = list_purposes(session, tenant, include_archived=True)
        names = {p.key: purpose_label(p, language) for p in purposes}
        major = next(p.current_major for p in purposes if p.key == DEFAULT_PURPOSE)
        # The status shown is the default purpose's (what the history page describes).
        state_row = session.get(ConsentStateRow, (tenant, client, DEFAULT_PURPOSE))
        replayed: ReplayedState | None = None
        for ev, _ in rows:
            if ev.purpose_key != DEFAULT_PURPOSE:
                continue
            replayed = replay_step(
                replayed, ev.seq, ev.state, ev.text_major, ev.expires_at, ev.occurred_at
            )
        stored_differs = describe_status(client, state_row, replayed)
        shown = snapshot_of(state_row)
        if stored_differs is not None:  # the ledger is the proof: show what it says
            shown = replayed.snapshot if replayed is not None else None
        current = status(shown, major, now)
        events = []
        for ev, evd in rows:
            text = by_id.get(ev.text_version_id) if ev.text_version_id else None
            state = State(ev.state)
            events.append({
                "seq": ev.seq,
                "purpose": ev.purpose_key,
                "purpose_name": names.get(ev.purpose_key, ev.purpose_key),
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
                "current_version": major,
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
                    "purpose": tv.purpose_key,
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
    host: Host,
    tenant: str,
    client: str,
    *,
    by: Viewer,
    verify: bool = True,
    locale: str | None = None,
) -> str:
    """:func:`client_history` as pretty-printed UTF-8 JSON text (one access-log row)."""
    data = client_history(host, tenant, client, by=by, verify=verify, locale=locale)
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"

def history_rows(history: dict[str, Any]) -> Iterator[list[str]]:
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



def client_history_csv(host: Host, tenant: str, client: str, *, by: Viewer) -> str:
    """One row per ledger event of the client (columns: :data:`HISTORY_COLUMNS`); one
    access-log row."""
    history = run_in_transaction(
        host, lambda s: _logged(s, host, tenant, client, by, "download_csv", False, None)
    )
    return csv_text(history_rows(history))


def client_history_html(
    host: Host,
    tenant: str,
    client: str,
    *,
    by: Viewer,
    locale: str | None = None,
    verify: bool = True,
) -> str:
    """A printable, self-contained HTML page of the client's history (save as PDF from
    the browser), in the practice's language unless ``locale`` is given; one
    access-log row."""

    def page(session: Session) -> str:
        history = _logged(session, host, tenant, client, by, "view_proof_page", verify, locale)
        return history_html(session, history)

    return run_in_transaction(host, page)


def history_html(session: Session, history: dict[str, Any]) -> str:
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


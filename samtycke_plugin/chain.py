"""The per-practice hash chain over the ledger: canonical hashing and verification.

``row_hash = sha256(prev_hash || "\\n" || JCS(fields))`` where JCS is the JSON
Canonicalization Scheme (RFC 8785) and ``fields`` are the event's columns
except ``id``, ``prev_hash`` and ``row_hash``.  Personal evidence (IP, user
agent, note) is not in the chain itself: only its salted hash is, so erasing
the evidence keeps the chain verifiable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import rfc8785
from attrs import frozen
from sqlalchemy import select
from sqlalchemy.orm import Session

from samtycke_plugin.models import GENESIS_HASH, ConsentEvent, Evidence, Practice

CHAINED_FIELDS = (
    "tenant_ref",
    "seq",
    "client_ref",
    "state",
    "text_version_id",
    "text_major",
    "text_sha256",
    "language",
    "channel",
    "method",
    "actor",
    "given_at",
    "occurred_at",
    "expires_at",
    "booking_ref",
    "request_id",
    "evidence_sha256",
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def canonical(fields: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of the chained fields."""
    result: bytes = rfc8785.dumps({k: _jsonable(fields[k]) for k in CHAINED_FIELDS})
    return result


def row_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """The hash of one event, given the previous event's hash."""
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical(fields)).hexdigest()


def evidence_hash(
    salt: str, ip_prefix: str | None, user_agent: str | None, note: str | None
) -> str:
    """Salted hash of an event's personal evidence (the salt goes with the evidence)."""
    payload = rfc8785.dumps({"ip": ip_prefix, "ua": user_agent, "note": note})
    return hashlib.sha256(salt.encode("ascii") + b"\n" + payload).hexdigest()


BreakKind = Literal["changed", "missing", "inserted", "reordered", "head", "evidence"]


@frozen(kw_only=True)
class ChainBreak:
    """The first broken link of a practice's chain."""

    tenant_ref: str
    seq: int
    kind: BreakKind
    detail: str


@frozen(kw_only=True)
class VerifyResult:
    tenant_ref: str
    events: int
    head_seq: int
    head_hash: str
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _fields(ev: ConsentEvent) -> dict[str, Any]:
    return {k: getattr(ev, k) for k in CHAINED_FIELDS}


def verify_events(
    tenant_ref: str,
    events: Iterable[ConsentEvent],
    *,
    head_seq: int | None,
    head_hash: str | None,
    evidence: Mapping[int, Evidence] | None = None,
) -> VerifyResult:
    """Walk events in ``seq`` order and name the first broken link."""
    expected_seq = 1
    prev = GENESIS_HASH
    seen_hashes: set[str] = set()
    count = 0
    for ev in events:
        count += 1
        own = row_hash(ev.prev_hash, _fields(ev))
        if ev.seq != expected_seq:
            kind: BreakKind = "missing" if ev.seq > expected_seq else "reordered"
            return VerifyResult(
                tenant_ref=tenant_ref,
                events=count,
                head_seq=ev.seq,
                head_hash=ev.row_hash,
                broken=ChainBreak(
                    tenant_ref=tenant_ref,
                    seq=expected_seq,
                    kind=kind,
                    detail=f"expected event #{expected_seq}, found #{ev.seq}",
                ),
            )
        if own != ev.row_hash:
            return VerifyResult(
                tenant_ref=tenant_ref,
                events=count,
                head_seq=ev.seq,
                head_hash=ev.row_hash,
                broken=ChainBreak(
                    tenant_ref=tenant_ref,
                    seq=ev.seq,
                    kind="changed",
                    detail="the event's contents do not match its hash (a column was altered)",
                ),
            )
        if ev.prev_hash != prev:
            kind = "reordered" if ev.prev_hash in seen_hashes else "inserted"
            return VerifyResult(
                tenant_ref=tenant_ref,
                events=count,
                head_seq=ev.seq,
                head_hash=ev.row_hash,
                broken=ChainBreak(
                    tenant_ref=tenant_ref,
                    seq=ev.seq,
                    kind=kind,
                    detail="the event does not follow the previous event's hash",
                ),
            )
        if evidence is not None and ev.evidence_sha256 is not None:
            evd = evidence.get(ev.id)
            if (
                evd is not None
                and evidence_hash(evd.salt, evd.ip_prefix, evd.user_agent, evd.note)
                != ev.evidence_sha256
            ):
                return VerifyResult(
                    tenant_ref=tenant_ref,
                    events=count,
                    head_seq=ev.seq,
                    head_hash=ev.row_hash,
                    broken=ChainBreak(
                        tenant_ref=tenant_ref,
                        seq=ev.seq,
                        kind="evidence",
                        detail="the event's evidence (IP, user agent, note) was altered",
                    ),
                )
        seen_hashes.add(ev.row_hash)
        prev = ev.row_hash
        expected_seq += 1
    last_seq = expected_seq - 1
    if head_seq is not None and (head_seq != last_seq or head_hash != prev):
        return VerifyResult(
            tenant_ref=tenant_ref,
            events=count,
            head_seq=last_seq,
            head_hash=prev,
            broken=ChainBreak(
                tenant_ref=tenant_ref,
                seq=min(last_seq + 1, head_seq),
                kind="missing" if head_seq > last_seq else "head",
                detail=(
                    f"the practice's chain head says #{head_seq}, the ledger ends at #{last_seq}"
                ),
            ),
        )
    return VerifyResult(
        tenant_ref=tenant_ref, events=count, head_seq=last_seq, head_hash=prev, broken=None
    )


def verify_chain(session: Session, tenant_ref: str, *, check_evidence: bool = True) -> VerifyResult:
    """Recompute one practice's chain from the database (streamed in ``seq`` order)."""
    practice = session.get(Practice, tenant_ref)
    events = session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.tenant_ref == tenant_ref)
        .order_by(ConsentEvent.seq)
        .execution_options(yield_per=2000)
    )
    evidence: dict[int, Evidence] | None = None
    if check_evidence:
        evidence = {
            e.event_id: e
            for e in session.scalars(select(Evidence).where(Evidence.tenant_ref == tenant_ref))
        }
    return verify_events(
        tenant_ref,
        events,
        head_seq=practice.head_seq if practice else None,
        head_hash=practice.head_hash if practice else None,
        evidence=evidence,
    )

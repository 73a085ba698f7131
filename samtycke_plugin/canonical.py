"""The hash of one ledger event: its canonical form and its link to the event before.

``row_hash = sha256(prev_hash || "\\n" || JCS(fields))`` where JCS is the JSON
Canonicalization Scheme (RFC 8785) and ``fields`` are the event's columns
except ``id``, ``prev_hash`` and ``row_hash``; ``purpose_key`` is left out when it is
the default purpose and ``change_note_sha256`` and ``attachment_sha256`` when empty,
so events recorded before those columns existed keep their hashes.  Personal evidence
(IP, user agent, note) is not in the chain itself: only its salted hash is, so erasing
the evidence keeps the chain verifiable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import rfc8785

from samtycke_plugin.purposes import DEFAULT_PURPOSE

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
    "purpose_key",
    "change_note_sha256",
    "attachment_sha256",
)
#: Chained fields left out of the canonical form while they hold this value.
OMITTED_DEFAULTS = {
    "purpose_key": DEFAULT_PURPOSE, "change_note_sha256": None, "attachment_sha256": None,
}


def _utc_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def jsonable(value: Any) -> Any:
    return _utc_text(value) if isinstance(value, datetime) else value


def jcs(members: Mapping[str, Any]) -> bytes:
    """RFC 8785 (JCS) canonical JSON of an object (the ``rfc8785`` implementation)."""
    return bytes(rfc8785.dumps(dict(members)))


def chained_members(values: Iterable[Any]) -> dict[str, Any]:
    """The JSON object of the chained fields, given their values in
    :data:`CHAINED_FIELDS` order (extra trailing values are ignored), without the
    :data:`OMITTED_DEFAULTS` that hold their default."""
    return {
        k: _utc_text(v) if isinstance(v, datetime) else v
        for k, v in zip(CHAINED_FIELDS, values, strict=False)
        if k not in OMITTED_DEFAULTS or v != OMITTED_DEFAULTS[k]
    }


def _values(fields: Mapping[str, Any]) -> Iterator[Any]:
    """The chained fields' values in order; an omitted default may be absent."""
    return (fields.get(k, OMITTED_DEFAULTS[k]) if k in OMITTED_DEFAULTS else fields[k]
            for k in CHAINED_FIELDS)


def canonical(fields: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of the chained fields."""
    return jcs(chained_members(_values(fields)))


def link_hash(prev_hash: str, members: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + jcs(members)).hexdigest()


def row_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """The hash of one event, given the previous event's hash."""
    return link_hash(prev_hash, chained_members(_values(fields)))


def evidence_hash(
    salt: str, ip_prefix: str | None, user_agent: str | None, note: str | None
) -> str:
    """Salted hash of an event's personal evidence (the salt goes with the evidence)."""
    payload = jcs({"ip": ip_prefix, "ua": user_agent, "note": note})
    return hashlib.sha256(salt.encode("ascii") + b"\n" + payload).hexdigest()

"""Small helpers every part of the app shares: the app's key and mount point, reference
and note checks, the host's clock in UTC, version labels.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from samtycke_plugin.errors import InputError
from samtycke_plugin.inputs import check_text

if TYPE_CHECKING:
    from hookspecs.host import Host


APP_KEY = "samtycke"


MOUNT_PREFIX = "/apps/samtycke"


MAX_NOTE = 2000


_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")


def check_ref(field: str, value: object) -> str:
    """A tenant/client/booking reference: a short string of safe characters."""
    if not isinstance(value, str) or not _REF.fullmatch(value):  # "$" would allow "ref\n"
        raise InputError(
            field, "must be 1-64 letters, digits or . _ : @ - (got " + repr(value)[:80] + ")"
        )
    return value


def now_utc(host: Host) -> datetime:
    now = host.now()
    if now.tzinfo is None:
        raise InputError("host.now", "must return a timezone-aware datetime")
    return now.astimezone(UTC)


def storable(field: str, value: str) -> str:
    """Refuse text no database can store: lone surrogates (a host's JSON API can hand
    them over, e.g. ``json.loads('"\\ud800"')``) fail inside the driver otherwise."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            field, "contains characters that cannot be stored (a broken encoding); retype it"
        ) from None
    return value


def clean_note(note: str | None, field: str = "note") -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise InputError(field, "must be text")
    # NUL, other control characters and a broken encoding are refused, not removed: the
    # note is evidence, kept as the practitioner wrote it (only CR of CRLF is dropped).
    note = check_text(field, note).replace("\r", "").strip()
    if len(note) > MAX_NOTE:
        raise InputError(field, f"is too long ({len(note)} characters; at most {MAX_NOTE})")
    return note or None


def version_label(major: int | None, minor: int | None = None) -> str:
    if major is None:
        return ""
    return f"{major}.{minor}" if minor is not None else f"{major}"


def _dialect_insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert

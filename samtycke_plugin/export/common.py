"""What every export shares: times for machines and people, safe CSV cells and the
practice lookup that scopes an export to one practice."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from samtycke_plugin.common import check_ref
from samtycke_plugin.errors import NotFound
from samtycke_plugin.i18n import N_
from samtycke_plugin.models import Practice

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


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


def get_practice(session: Session, tenant: str) -> Practice:
    practice = session.get(Practice, check_ref("tenant", tenant))
    if practice is None:
        raise NotFound(N_("Samtycke has no data for this practice."))
    return practice

def csv_text(rows: Iterable[Sequence[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerows(rows)
    return buf.getvalue()


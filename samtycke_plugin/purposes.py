"""A practice's purposes: what it asks consent for, each with its own texts and status.

Every practice has the purpose :data:`DEFAULT_PURPOSE` from its activation on; what was
recorded before purposes existed belongs to it.  A key names a purpose for good: it is
never changed nor given to another purpose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from samtycke_plugin.common import _dialect_insert
from samtycke_plugin.errors import InputError
from samtycke_plugin.models import Purpose

#: The key of every practice's first purpose.
DEFAULT_PURPOSE = "care"

#: What a purpose key looks like (lower case, starts with a letter, at most 32 characters).
KEY_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def check_key(value: object, field: str = "purpose") -> str:
    """``value`` as a purpose key, or :class:`InputError` naming ``field``."""
    if not isinstance(value, str) or KEY_PATTERN.fullmatch(value) is None:
        raise InputError(
            field, "must be 1-32 lower-case letters, digits, '-' or '_', starting with a letter"
        )
    return value


def create_default(
    session: Session,
    tenant: str,
    *,
    required: bool,
    validity_days: int | None,
    current_major: int,
    created_at: datetime,
    names: Mapping[str, str] | None = None,
    legal_basis: Mapping[str, str] | None = None,
) -> None:
    """Give a practice its :data:`DEFAULT_PURPOSE` (nothing when it has one already)."""
    session.execute(
        _dialect_insert(session)(Purpose)
        .values(
            tenant_ref=tenant, key=DEFAULT_PURPOSE, position=0, required=required,
            validity_days=validity_days, names=dict(names or {}),
            legal_basis=dict(legal_basis or {}), current_major=current_major,
            created_at=created_at, archived_at=None,
        )
        .on_conflict_do_nothing(index_elements=["tenant_ref", "key"])
    )

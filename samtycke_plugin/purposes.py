"""A practice's purposes: what it asks consent for, each with its own texts and status.

Every practice has the purpose :data:`DEFAULT_PURPOSE` from its activation on; what was
recorded before purposes existed belongs to it.  A key names a purpose for good: it is
never changed nor given to another purpose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from attrs import frozen
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from samtycke_plugin.common import _dialect_insert, clean_note
from samtycke_plugin.errors import Conflict, InputError, NotFound
from samtycke_plugin.i18n import N_, lang
from samtycke_plugin.models import Purpose, TextVersion
from samtycke_plugin.text import LANGUAGES, normalise_body, render_html, sha256

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


@frozen(kw_only=True)
class PurposeInfo:
    """A practice's purpose as pages, hooks and exports show it."""

    key: str
    position: int
    required: bool
    validity_days: int | None
    names: Mapping[str, str]
    legal_basis: Mapping[str, str]
    current_major: int
    archived: bool

    def name(self, language: str) -> str:
        """The practice's name for the purpose in ``language`` (else another language's,
        else the key)."""
        return self.names.get(language) or next(iter(self.names.values()), self.key)


def _info(row: Purpose) -> PurposeInfo:
    return PurposeInfo(
        key=row.key, position=row.position, required=row.required,
        validity_days=row.validity_days, names=dict(row.names or {}),
        legal_basis=dict(row.legal_basis or {}), current_major=row.current_major,
        archived=row.archived_at is not None,
    )


def list_purposes(
    session: Session, tenant: str, *, include_archived: bool = False
) -> list[PurposeInfo]:
    """The practice's purposes in the order it asks for them (the default one first)."""
    query = select(Purpose).where(Purpose.tenant_ref == tenant)
    if not include_archived:
        query = query.where(Purpose.archived_at.is_(None))
    return [_info(row) for row in session.scalars(query.order_by(Purpose.position, Purpose.key))]


def _names(value: Mapping[str, str], field: str) -> dict[str, str]:
    out = {k: clean_note(v, field) or "" for k, v in value.items() if k in LANGUAGES}
    out = {k: v for k, v in out.items() if v}
    if any(len(v) > 120 for v in out.values()):
        raise InputError(field, "is too long (at most 120 characters)")
    return out


def _checked(names: Mapping[str, str], validity_days: int | None) -> dict[str, str]:
    """The purpose's names, cleaned, after checking them and its lifetime."""
    clean_names = _names(names, "name")
    if not clean_names:
        raise InputError("name", "give the purpose a name")
    if validity_days is not None and not 1 <= validity_days <= 3650:
        raise InputError("validity_days", "must be a whole number of days from 1 to 3650")
    return clean_names


def add(
    session: Session,
    tenant: str,
    *,
    key: str,
    names: Mapping[str, str],
    legal_basis: Mapping[str, str],
    required: bool,
    validity_days: int | None,
    bodies: Mapping[str, str],
    actor: str,
    now: datetime,
) -> PurposeInfo:
    """Add a purpose with its first text version (1.0) in each language of ``bodies``.
    A key the practice has used before, archived or not, is :class:`Conflict`."""
    key = check_key(key)
    clean_names = _checked(names, validity_days)
    texts = {lang(k): normalise_body(v) for k, v in bodies.items()}
    if not texts or any(len(b.strip()) < 20 for b in texts.values()):
        raise InputError("text", "give the purpose's consent text (at least 20 characters)")
    position = session.scalar(
        select(func.coalesce(func.max(Purpose.position), 0)).where(Purpose.tenant_ref == tenant)
    )
    inserted = session.execute(
        _dialect_insert(session)(Purpose)
        .values(
            tenant_ref=tenant, key=key, position=int(position or 0) + 1, required=required,
            validity_days=validity_days, names=clean_names,
            legal_basis=_names(legal_basis, "legal_basis"), current_major=1,
            created_at=now, archived_at=None,
        )
        .on_conflict_do_nothing(index_elements=["tenant_ref", "key"])
        .returning(Purpose.key)
    ).scalar_one_or_none()
    if inserted is None:
        raise Conflict(N_("The practice already has a purpose with that key. Choose another key."))
    session.add_all([
        TextVersion(
            tenant_ref=tenant, purpose_key=key, language=language, major=1, minor=0,
            body=body, html=render_html(body), sha256=sha256(body), change_kind="initial",
            reason=None, created_by=actor, created_at=now,
        )
        for language, body in sorted(texts.items())
    ])
    session.flush()
    row = session.get(Purpose, (tenant, key))
    assert row is not None
    return _info(row)


def update(
    session: Session,
    tenant: str,
    key: str,
    *,
    names: Mapping[str, str],
    legal_basis: Mapping[str, str],
    required: bool,
    validity_days: int | None,
) -> PurposeInfo:
    """Change a purpose's names, legal-basis note, requirement and lifetime (its texts
    change through :func:`samtycke_plugin.practice_texts.publish_text`).  The default
    purpose's requirement and lifetime are chosen in the activation wizard (saved with
    the practice's settings) and stay as they are here."""
    row = session.get(Purpose, (tenant, check_key(key)))
    if row is None or row.archived_at is not None:
        raise NotFound(N_("This practice does not ask consent for that purpose."))
    row.names = _checked(names, validity_days)
    row.legal_basis = _names(legal_basis, "legal_basis")
    if row.key != DEFAULT_PURPOSE:
        row.required, row.validity_days = required, validity_days
    session.flush()
    return _info(row)


def archive(session: Session, tenant: str, key: str, now: datetime) -> None:
    """Stop asking consent for a purpose (the default one stays).  Its ledger, texts and
    statuses are kept, and its key is never given to another purpose."""
    if check_key(key) == DEFAULT_PURPOSE:
        raise InputError("purpose", "the practice's first purpose cannot be removed")
    row = session.get(Purpose, (tenant, key))
    if row is None:
        raise NotFound(N_("This practice does not ask consent for that purpose."))
    if row.archived_at is None:
        row.archived_at = now
        session.flush()

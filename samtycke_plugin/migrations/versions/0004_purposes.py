"""consent per purpose

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 15:30:00

A practice has purposes (``samtycke_purpose``); events, text versions and the status
projection name theirs (``purpose_key``, ``care`` for everything recorded before), and
the projection holds one row per client and purpose.  Every practice gets its ``care``
purpose from its settings.

SQLite cannot change a table's constraints in place, and the migration runs in the
caller's transaction, where foreign keys cannot be switched off.  A table whose
constraints change is therefore copied aside, dropped and created again under the
same name, never renamed (a rename would rewrite the foreign keys that name it); the
text versions' foreign-key references from events are checked at commit
(``defer_foreign_keys``), after the copied rows are back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
CARE = "care"
TEXTS = "samtycke_text_version"
EVENTS = "samtycke_consent_event"
STATES = "samtycke_consent_state"
TEXT_COLUMNS = ("id", "tenant_ref", "language", "major", "minor", "body", "html", "sha256",
                "change_kind", "reason", "created_by", "created_at")
STATE_COLUMNS = ("tenant_ref", "client_ref", "state", "text_major", "expires_at", "since",
                 "last_seq", "delivery")
OLD_TEXT_UNIQUE = "uq_samtycke_text_version_tenant_ref_language_major_minor"
NEW_TEXT_UNIQUE = "uq_samtycke_text_version_purpose_version"
STATE_INDEX = "ix_samtycke_consent_state_valid"
STATE_INDEX_OLD = ["tenant_ref", "text_major", "state", "expires_at", "client_ref"]
STATE_INDEX_NEW = ["tenant_ref", "purpose_key", "text_major", "state", "expires_at", "client_ref"]


def _purpose_key() -> sa.Column[Any]:
    return sa.Column("purpose_key", sa.String(length=32), server_default=CARE, nullable=False)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    op.create_table(
        "samtycke_purpose",
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("validity_days", sa.Integer(), nullable=True),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("legal_basis", sa.JSON(), nullable=False),
        sa.Column("current_major", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_ref", "key", name=op.f("pk_samtycke_purpose")),
    )
    _insert_care_purposes()

    # A new column with a constant default fires no row triggers on either backend.
    op.add_column(EVENTS, _purpose_key())
    op.add_column(EVENTS, sa.Column("change_note_sha256", sa.String(length=64), nullable=True))

    if _sqlite():
        _copy_through(TEXTS, TEXT_COLUMNS, _create_texts_new, append_only=True)
        _copy_through(STATES, STATE_COLUMNS, _create_states_new, append_only=False)
        op.create_index(STATE_INDEX, STATES, STATE_INDEX_NEW, unique=False)
    else:
        op.add_column(TEXTS, _purpose_key())
        op.drop_constraint(OLD_TEXT_UNIQUE, TEXTS, type_="unique")
        op.create_unique_constraint(
            NEW_TEXT_UNIQUE, TEXTS, ["tenant_ref", "purpose_key", "language", "major", "minor"]
        )
        op.add_column(STATES, _purpose_key())
        op.drop_constraint("pk_samtycke_consent_state", STATES, type_="primary")
        op.create_primary_key(
            "pk_samtycke_consent_state", STATES, ["tenant_ref", "client_ref", "purpose_key"]
        )
        op.drop_index(STATE_INDEX, table_name=STATES)
        op.create_index(STATE_INDEX, STATES, STATE_INDEX_NEW, unique=False)


def downgrade() -> None:
    _refuse_to_lose_purposes()
    if _sqlite():
        _copy_through(TEXTS, TEXT_COLUMNS, _create_texts_old, append_only=True)
        _copy_through(STATES, STATE_COLUMNS, _create_states_old, append_only=False)
        op.create_index(STATE_INDEX, STATES, STATE_INDEX_OLD, unique=False)
        # DROP COLUMN (SQLite 3.35+) rewrites no other table and fires no triggers.
        op.execute(f"ALTER TABLE {EVENTS} DROP COLUMN change_note_sha256")
        op.execute(f"ALTER TABLE {EVENTS} DROP COLUMN purpose_key")
    else:
        op.drop_index(STATE_INDEX, table_name=STATES)
        op.drop_constraint("pk_samtycke_consent_state", STATES, type_="primary")
        op.drop_column(STATES, "purpose_key")
        op.create_primary_key("pk_samtycke_consent_state", STATES, ["tenant_ref", "client_ref"])
        op.create_index(STATE_INDEX, STATES, STATE_INDEX_OLD, unique=False)
        op.drop_constraint(NEW_TEXT_UNIQUE, TEXTS, type_="unique")
        op.drop_column(TEXTS, "purpose_key")
        op.create_unique_constraint(
            OLD_TEXT_UNIQUE, TEXTS, ["tenant_ref", "language", "major", "minor"]
        )
        op.drop_column(EVENTS, "change_note_sha256")
        op.drop_column(EVENTS, "purpose_key")
    op.drop_table("samtycke_purpose")


# -- data ------------------------------------------------------------------------------------


def _flag(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "on", "yes")
    return bool(value)


def _days(value: object) -> int | None:
    if value in (None, ""):
        return None
    return int(value)  # type: ignore[call-overload,no-any-return]


def _insert_care_purposes() -> None:
    """One ``care`` purpose per practice, asked as the practice's settings ask for consent
    today, at the practice's current text version."""
    bind = op.get_bind()
    practices = sa.table(
        "samtycke_practice", sa.column("tenant_ref"), sa.column("settings", sa.JSON()),
        sa.column("current_major"), sa.column("activated_at", sa.DateTime(timezone=True)),
    )
    purpose = sa.table(
        "samtycke_purpose", sa.column("tenant_ref"), sa.column("key"), sa.column("position"),
        sa.column("required"), sa.column("validity_days"), sa.column("names", sa.JSON()),
        sa.column("legal_basis", sa.JSON()), sa.column("current_major"),
        sa.column("created_at", sa.DateTime(timezone=True)), sa.column("archived_at"),
    )
    rows = []
    for tenant, settings, major, activated in bind.execute(
        sa.select(practices).order_by(practices.c.tenant_ref)
    ):
        data = json.loads(settings) if isinstance(settings, str) else dict(settings or {})
        rows.append({
            "tenant_ref": tenant, "key": CARE, "position": 0,
            "required": _flag(data.get("require_consent_for_online_booking", False)),
            "validity_days": _days(data.get("validity_days")),
            "names": {}, "legal_basis": {}, "current_major": major,
            "created_at": activated, "archived_at": None,
        })
    if rows:
        bind.execute(purpose.insert(), rows)


def _refuse_to_lose_purposes() -> None:
    """Going back to one consent per practice would drop what only a purpose says: an
    event of another purpose (whose hash covers its purpose) or with a change note."""
    bind = op.get_bind()
    events = sa.table(EVENTS, sa.column("purpose_key"), sa.column("change_note_sha256"))
    texts = sa.table(TEXTS, sa.column("purpose_key"))
    found = bind.execute(
        sa.select(sa.literal(1)).where(sa.or_(
            sa.exists().where(sa.or_(events.c.purpose_key != CARE,
                                     events.c.change_note_sha256.is_not(None))),
            sa.exists().where(texts.c.purpose_key != CARE),
        ))
    ).first()
    if found is not None:
        raise RuntimeError(
            "cannot downgrade below 0004: the ledger or the texts hold purposes other than "
            f"'{CARE}' or change notes, which the older schema cannot keep"
        )


# -- SQLite: a table copied aside and created again under its own name -----------------------


def _copy_through(
    table: str, columns: tuple[str, ...], create: Callable[[], None], *, append_only: bool
) -> None:
    """Copy ``table`` aside, drop it, ``create()`` it anew and copy the rows back (with
    their ids, and ``purpose_key`` from its default where the new table has it)."""
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute(f"CREATE TEMP TABLE samtycke_keep AS SELECT * FROM {table}")  # noqa: S608
    # Dropping a table deletes its rows without firing triggers (and drops them).
    op.execute(f"DROP TABLE {table}")
    create()
    names = ", ".join(columns)
    op.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM samtycke_keep")  # noqa: S608
    op.execute("DROP TABLE samtycke_keep")
    if append_only:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
            )


def _text_columns() -> list[sa.schema.SchemaItem]:
    return [
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("major", sa.Integer(), nullable=False),
        sa.Column("minor", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("change_kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=160), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samtycke_text_version")),
    ]


def _create_texts_new() -> None:
    op.create_table(
        TEXTS, *_text_columns(), _purpose_key(),
        sa.UniqueConstraint("tenant_ref", "purpose_key", "language", "major", "minor",
                            name=NEW_TEXT_UNIQUE),
    )


def _create_texts_old() -> None:
    op.create_table(
        TEXTS, *_text_columns(),
        sa.UniqueConstraint("tenant_ref", "language", "major", "minor", name=OLD_TEXT_UNIQUE),
    )


def _state_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("client_ref", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("text_major", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("delivery", sa.String(length=16), nullable=True),
    ]


def _create_states_new() -> None:
    op.create_table(
        STATES, *_state_columns(), _purpose_key(),
        sa.PrimaryKeyConstraint("tenant_ref", "client_ref", "purpose_key",
                                name="pk_samtycke_consent_state"),
    )


def _create_states_old() -> None:
    op.create_table(
        STATES, *_state_columns(),
        sa.PrimaryKeyConstraint("tenant_ref", "client_ref", name="pk_samtycke_consent_state"),
    )

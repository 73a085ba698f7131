"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-29 01:36:11.133277
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

#: 64-bit ids on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = ("samtycke_consent_event", "samtycke_text_version")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "samtycke_checkpoint",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samtycke_checkpoint")),
        sa.UniqueConstraint(
            "tenant_ref", "seq", "key_id", name=op.f("uq_samtycke_checkpoint_tenant_ref_seq_key_id")
        ),
    )
    op.create_table(
        "samtycke_consent_request",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("client_ref", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("text_version_id", ID, nullable=True),
        sa.Column("text_major", sa.Integer(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=160), nullable=False),
        sa.Column("delivery", sa.String(length=16), nullable=False),
        sa.Column("batch_key", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samtycke_consent_request")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_samtycke_consent_request_token_hash")),
        sqlite_autoincrement=True,  # erasure deletes requests: never reuse an id
    )
    with op.batch_alter_table("samtycke_consent_request", schema=None) as batch_op:
        batch_op.create_index(
            "uq_samtycke_consent_request_pending",
            ["tenant_ref", "client_ref", "purpose"],
            unique=True,
            sqlite_where=sa.text("used_at IS NULL AND revoked_at IS NULL"),
            postgresql_where=sa.text("used_at IS NULL AND revoked_at IS NULL"),
        )

    op.create_table(
        "samtycke_consent_state",
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("client_ref", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("text_major", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("delivery", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("tenant_ref", "client_ref", name=op.f("pk_samtycke_consent_state")),
    )
    with op.batch_alter_table("samtycke_consent_state", schema=None) as batch_op:
        batch_op.create_index(
            "ix_samtycke_consent_state_valid",
            ["tenant_ref", "text_major", "state", "expires_at", "client_ref"],
            unique=False,
        )

    op.create_table(
        "samtycke_outbox",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("client_ref", sa.String(length=64), nullable=True),
        sa.Column("request_id", ID, nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("to_addr", sa.String(length=320), nullable=True),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samtycke_outbox")),
        sa.UniqueConstraint("message_id", name=op.f("uq_samtycke_outbox_message_id")),
        sqlite_autoincrement=True,  # erasure deletes mail: never reuse an id
    )
    with op.batch_alter_table("samtycke_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_samtycke_outbox_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "samtycke_practice",
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("setup_complete", sa.Boolean(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("current_major", sa.Integer(), nullable=False),
        sa.Column("default_language", sa.String(length=8), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_ref", name=op.f("pk_samtycke_practice")),
    )
    op.create_table(
        "samtycke_text_version",
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
        sa.UniqueConstraint(
            "tenant_ref",
            "language",
            "major",
            "minor",
            name=op.f("uq_samtycke_text_version_tenant_ref_language_major_minor"),
        ),
    )
    op.create_table(
        "samtycke_consent_event",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("client_ref", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("text_version_id", ID, nullable=True),
        sa.Column("text_major", sa.Integer(), nullable=True),
        sa.Column("text_sha256", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("channel", sa.String(length=24), nullable=False),
        sa.Column("method", sa.String(length=24), nullable=True),
        sa.Column("actor", sa.String(length=160), nullable=False),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("booking_ref", sa.String(length=64), nullable=True),
        sa.Column("request_id", ID, nullable=True),
        sa.Column("evidence_sha256", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["text_version_id"],
            ["samtycke_text_version.id"],
            name=op.f("fk_samtycke_consent_event_text_version_id_samtycke_text_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samtycke_consent_event")),
        sa.UniqueConstraint(
            "tenant_ref", "seq", name=op.f("uq_samtycke_consent_event_tenant_ref_seq")
        ),
    )
    with op.batch_alter_table("samtycke_consent_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_samtycke_consent_event_client", ["tenant_ref", "client_ref", "seq"], unique=False
        )

    op.create_table(
        "samtycke_evidence",
        sa.Column("event_id", ID, nullable=False),
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("client_ref", sa.String(length=64), nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("ip_prefix", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["samtycke_consent_event.id"],
            name=op.f("fk_samtycke_evidence_event_id_samtycke_consent_event"),
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_samtycke_evidence")),
    )
    with op.batch_alter_table("samtycke_evidence", schema=None) as batch_op:
        batch_op.create_index(
            "ix_samtycke_evidence_client", ["tenant_ref", "client_ref"], unique=False
        )

    _create_append_only_triggers()


def _create_append_only_triggers() -> None:
    """The database itself refuses UPDATE and DELETE on ledger and text rows."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION samtycke_refuse_change() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP "
            "USING ERRCODE = 'restrict_violation'; END $$ LANGUAGE plpgsql"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION samtycke_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION samtycke_refuse_change()"
            )
    else:
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
                )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS samtycke_refuse_change()")
    else:
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")


def downgrade() -> None:
    _drop_append_only_triggers()
    with op.batch_alter_table("samtycke_evidence", schema=None) as batch_op:
        batch_op.drop_index("ix_samtycke_evidence_client")

    op.drop_table("samtycke_evidence")
    with op.batch_alter_table("samtycke_consent_event", schema=None) as batch_op:
        batch_op.drop_index("ix_samtycke_consent_event_client")

    op.drop_table("samtycke_consent_event")
    op.drop_table("samtycke_text_version")
    op.drop_table("samtycke_practice")
    with op.batch_alter_table("samtycke_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_samtycke_outbox_due")

    op.drop_table("samtycke_outbox")
    with op.batch_alter_table("samtycke_consent_state", schema=None) as batch_op:
        batch_op.drop_index("ix_samtycke_consent_state_valid")

    op.drop_table("samtycke_consent_state")
    with op.batch_alter_table("samtycke_consent_request", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_samtycke_consent_request_pending",
            sqlite_where=sa.text("used_at IS NULL AND revoked_at IS NULL"),
            postgresql_where=sa.text("used_at IS NULL AND revoked_at IS NULL"),
        )

    op.drop_table("samtycke_consent_request")
    op.drop_table("samtycke_checkpoint")

"""the scan of a signed paper form, in the hash chain

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 18:40:00

``samtycke_attachment`` holds the scan or photo of a paper consent form, one row per
practice, client and file; the consent event names it by its SHA-256
(``attachment_sha256``), which the hash chain covers only when set, so events recorded
before keep their hashes.  Erasure of the client empties ``data``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "samtycke_attachment"
EVENTS = "samtycke_consent_event"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("client_ref", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samtycke_attachment")),
        sa.UniqueConstraint("tenant_ref", "client_ref", "sha256",
                            name=op.f("uq_samtycke_attachment_tenant_ref_client_ref_sha256")),
        sqlite_autoincrement=True,
    )
    # A new nullable column fires no row triggers on either backend (the ledger is
    # append-only).
    op.add_column(EVENTS, sa.Column("attachment_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    _refuse_to_lose_attachments()
    if op.get_bind().dialect.name == "sqlite":
        # DROP COLUMN (SQLite 3.35+) rewrites no other table and fires no triggers.
        op.execute("ALTER TABLE samtycke_consent_event DROP COLUMN attachment_sha256")
    else:
        op.drop_column(EVENTS, "attachment_sha256")
    op.drop_table(TABLE)


def _refuse_to_lose_attachments() -> None:
    """An event whose hash covers an attachment cannot lose the column without breaking
    the chain: going back is refused while one exists."""
    events = sa.table(EVENTS, sa.column("attachment_sha256"))
    found = op.get_bind().execute(
        sa.select(sa.literal(1)).where(events.c.attachment_sha256.is_not(None)).limit(1)
    ).first()
    if found is not None:
        raise RuntimeError(
            "cannot downgrade below 0008: ledger events name attached scans of paper "
            "consent forms, which the older schema cannot keep"
        )

"""renewal requests and reminders, each at most once

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 19:00:00

``samtycke_renewal`` holds one row per consent (practice, client, purpose, end date)
the worker looked at for a renewal request; ``samtycke_reminder`` one row per e-mailed
request that got its reminder.  Each row is written in the transaction that queues the
mail, so the primary keys keep concurrent or restarted workers from mailing twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "samtycke_renewal",
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("client_ref", sa.String(length=64), nullable=False),
        sa.Column("purpose_key", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", ID, nullable=True),
        sa.Column("outcome", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_ref", "client_ref", "purpose_key", "expires_at",
            name=op.f("pk_samtycke_renewal"),
        ),
    )
    op.create_table(
        "samtycke_reminder",
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("request_id", ID, autoincrement=False, nullable=False),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outbox_id", ID, nullable=True),
        sa.Column("outcome", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_samtycke_reminder")),
    )


def downgrade() -> None:
    op.drop_table("samtycke_reminder")
    op.drop_table("samtycke_renewal")

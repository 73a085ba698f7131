"""Booking reminders: when a booking's reminder was sent.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("host_booking") as batch:
        batch.add_column(sa.Column("reminder_sent_at", sa.DateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("host_booking") as batch:
        batch.drop_column("reminder_sent_at")

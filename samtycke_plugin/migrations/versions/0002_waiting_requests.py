"""batch requests wait in the outbox for their link

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 08:30:00

A batch request now writes one outbox row per client and the relay mints the
link when it claims the row.  A partial unique index lets such a row wait at most
once per client.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WAITING = "kind = 'consent_request' AND request_id IS NULL AND status = 'queued'"


def upgrade() -> None:
    with op.batch_alter_table("samtycke_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "uq_samtycke_outbox_waiting_request",
            ["tenant_ref", "client_ref"],
            unique=True,
            sqlite_where=sa.text(WAITING),
            postgresql_where=sa.text(WAITING),
        )


def downgrade() -> None:
    with op.batch_alter_table("samtycke_outbox", schema=None) as batch_op:
        batch_op.drop_index("uq_samtycke_outbox_waiting_request")

"""a consent request names the purposes it asks for

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 17:00:00

``purpose_majors`` holds ``{purpose key: content version asked about}`` of an e-mailed
consent request.  Rows written before it (NULL) asked for the default purpose only, at
their ``text_major``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLE = "samtycke_consent_request"


def upgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.add_column(sa.Column("purpose_majors", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_column("purpose_majors")

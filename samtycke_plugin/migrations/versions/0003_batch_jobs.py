"""batch requests run as jobs outside the web request

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 12:30:00

The batch page records a job and the relay runs it in chunks.  A partial unique index
allows at most one unfinished job per practice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UNFINISHED = "state IN ('queued', 'running')"


def upgrade() -> None:
    op.create_table(
        "samtycke_batch_job",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=160), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("batch_key", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("runner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("after_ref", sa.String(length=64), nullable=True),
        sa.Column("asked", sa.Integer(), nullable=False),
        sa.Column("skipped_valid", sa.Integer(), nullable=False),
        sa.Column("skipped_pending", sa.Integer(), nullable=False),
        sa.Column("skipped_no_email", sa.Integer(), nullable=False),
        sa.Column("skipped_bad_name", sa.Integer(), nullable=False),
        sa.Column("skipped_withdrawn", sa.Integer(), nullable=False),
        sa.Column("skipped_refused", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samtycke_batch_job")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("samtycke_batch_job", schema=None) as batch_op:
        batch_op.create_index(
            "uq_samtycke_batch_job_unfinished",
            ["tenant_ref"],
            unique=True,
            sqlite_where=sa.text(UNFINISHED),
            postgresql_where=sa.text(UNFINISHED),
        )
        batch_op.create_index("ix_samtycke_batch_job_state", ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("samtycke_batch_job", schema=None) as batch_op:
        batch_op.drop_index("ix_samtycke_batch_job_state")
        batch_op.drop_index("uq_samtycke_batch_job_unfinished")
    op.drop_table("samtycke_batch_job")

"""the access log: who viewed or exported which client's consent data

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-08 10:00:00

One append-only row per view or export of personal consent data by a person.  Like
the ledger, the database refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLE = "samtycke_access_log"
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=160), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("client_ref", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=80), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samtycke_access_log")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(
            "ix_samtycke_access_log_practice", ["tenant_ref", "id"], unique=False
        )
        batch_op.create_index(
            "ix_samtycke_access_log_client", ["tenant_ref", "client_ref", "id"], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        # samtycke_refuse_change() is the ledger's trigger function (revision 0001).
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION samtycke_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION samtycke_refuse_change()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{action.lower()} BEFORE {action} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: {action} refused'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}")
    else:
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_{action}")
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index("ix_samtycke_access_log_client")
        batch_op.drop_index("ix_samtycke_access_log_practice")
    op.drop_table(TABLE)

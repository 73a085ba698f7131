"""the access log: who viewed or exported which client's consent data

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 16:00:00

One append-only row per view or export of personal consent data by a person.  Like
the ledger, the database refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
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
            "CREATE TRIGGER samtycke_access_log_append_only BEFORE UPDATE OR DELETE ON "
            "samtycke_access_log FOR EACH ROW EXECUTE FUNCTION samtycke_refuse_change()"
        )
        op.execute(
            "CREATE TRIGGER samtycke_access_log_no_truncate BEFORE TRUNCATE ON "
            "samtycke_access_log FOR EACH STATEMENT EXECUTE FUNCTION samtycke_refuse_change()"
        )
    else:
        op.execute(
            "CREATE TRIGGER samtycke_access_log_no_update BEFORE UPDATE ON samtycke_access_log "
            "BEGIN SELECT RAISE(ABORT, 'samtycke_access_log is append-only: UPDATE refused'); END"
        )
        op.execute(
            "CREATE TRIGGER samtycke_access_log_no_delete BEFORE DELETE ON samtycke_access_log "
            "BEGIN SELECT RAISE(ABORT, 'samtycke_access_log is append-only: DELETE refused'); END"
        )

def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS samtycke_access_log_append_only ON samtycke_access_log")
        op.execute("DROP TRIGGER IF EXISTS samtycke_access_log_no_truncate ON samtycke_access_log")
    else:
        op.execute("DROP TRIGGER IF EXISTS samtycke_access_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS samtycke_access_log_no_delete")
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index("ix_samtycke_access_log_client")
        batch_op.drop_index("ix_samtycke_access_log_practice")
    op.drop_table(TABLE)

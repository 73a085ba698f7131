"""the client's own page ("Mina samtycken"): its links, and the "send me my link" queue

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 19:00:00

``samtycke_page_link``: one row per link to a client's page, the token stored only as
its hash (the nonce lets the relay derive it again for a mail).  ``samtycke_link_wish``:
one row per "send me my link" form sent, whether the address is known or not; the relay
looks the address up and deletes the row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "samtycke_page_link",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("client_ref", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=160), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samtycke_page_link")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_samtycke_page_link_token_hash")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("samtycke_page_link", schema=None) as batch_op:
        batch_op.create_index("ix_samtycke_page_link_client", ["tenant_ref", "client_ref"])
    op.create_table(
        "samtycke_link_wish",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tenant_ref", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samtycke_link_wish")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("samtycke_link_wish")
    with op.batch_alter_table("samtycke_page_link", schema=None) as batch_op:
        batch_op.drop_index("ix_samtycke_page_link_client")
    op.drop_table("samtycke_page_link")

"""The booking platform's tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "host_practice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(60), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("phone", sa.String(40), nullable=True),
        sa.Column("city", sa.String(80), nullable=True),
        sa.Column("locale", sa.String(8), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_host_practice"),
        sa.UniqueConstraint("slug", name="uq_host_practice_slug"),
    )
    op.create_table(
        "host_staff",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("practice_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("can_record_consent", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["host_practice.id"], name="fk_host_staff_practice_id_host_practice"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_host_staff"),
        sa.UniqueConstraint("email", name="uq_host_staff_email"),
    )
    op.create_index("ix_host_staff_practice_id", "host_staff", ["practice_id"])
    op.create_table(
        "host_service",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("practice_id", sa.Integer(), nullable=False),
        sa.Column("name_sv", sa.String(120), nullable=False),
        sa.Column("name_en", sa.String(120), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("price_sek", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["host_practice.id"], name="fk_host_service_practice_id_host_practice"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_host_service"),
    )
    op.create_index("ix_host_service_practice_id", "host_service", ["practice_id"])
    op.create_table(
        "host_client",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("practice_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("phone", sa.String(40), nullable=True),
        sa.Column("locale", sa.String(8), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(10), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["host_practice.id"], name="fk_host_client_practice_id_host_practice"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_host_client"),
    )
    op.create_index("ix_host_client_practice_name", "host_client", ["practice_id", "name", "id"])
    op.create_index("ix_host_client_practice_email", "host_client", ["practice_id", "email"])
    op.create_table(
        "host_booking",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("practice_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", UTC, nullable=False),
        sa.Column("ends_at", UTC, nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["host_practice.id"], name="fk_host_booking_practice_id_host_practice"
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["host_client.id"], name="fk_host_booking_client_id_host_client"
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["host_service.id"], name="fk_host_booking_service_id_host_service"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_host_booking"),
        sa.UniqueConstraint(
            "practice_id", "starts_at", name="uq_host_booking_practice_id_starts_at"
        ),
    )
    op.create_index("ix_host_booking_client_id", "host_booking", ["client_id"])
    op.create_table(
        "host_app_activation",
        sa.Column("practice_id", sa.Integer(), nullable=False),
        sa.Column("app_key", sa.String(60), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("changed_at", UTC, nullable=False),
        sa.Column("changed_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["host_practice.id"],
            name="fk_host_app_activation_practice_id_host_practice",
        ),
        sa.PrimaryKeyConstraint("practice_id", "app_key", name="pk_host_app_activation"),
    )
    op.create_table(
        "host_dev_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("practice_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("to", sa.String(254), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(300), nullable=False),
        sa.Column("sent_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_host_dev_mail"),
    )
    op.create_index("ix_host_dev_mail_practice_id", "host_dev_mail", ["practice_id"])


def downgrade() -> None:
    for table in (
        "host_dev_mail", "host_app_activation", "host_booking", "host_client",
        "host_service", "host_staff", "host_practice",
    ):
        op.drop_table(table)

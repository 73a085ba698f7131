"""Live staff sessions, sign-in failures, and one client per practice and e-mail address.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03

Clients that already share an address (case-insensitively) within a practice stay as
they are: the oldest gets the key, the others keep their address without one, so no
booking or consent history moves between clients.  Staff can erase a duplicate on its
profile; online bookings with that address go to the client holding the key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def _key(email: str | None) -> str | None:
    # The rule of models.email_key as of this revision (kept here: a migration does not
    # change meaning when the model's code does).
    return email.strip().lower() if email and email.strip() else None


def upgrade() -> None:
    op.create_table(
        "host_staff_session",
        sa.Column("sid_hash", sa.String(64), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["host_staff.id"], name="fk_host_staff_session_staff_id_host_staff"
        ),
        sa.PrimaryKeyConstraint("sid_hash", name="pk_host_staff_session"),
    )
    op.create_index("ix_host_staff_session_staff_id", "host_staff_session", ["staff_id"])
    op.create_index("ix_host_staff_session_created_at", "host_staff_session", ["created_at"])
    op.create_table(
        "host_sign_in_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("failed_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_host_sign_in_failure"),
    )
    op.create_index("ix_host_sign_in_failure_subject_at", "host_sign_in_failure",
                    ["subject", "failed_at"])
    op.create_index("ix_host_sign_in_failure_failed_at", "host_sign_in_failure", ["failed_at"])

    with op.batch_alter_table("host_client") as batch:
        batch.add_column(sa.Column("email_key", sa.String(254), nullable=True))
    clients = sa.table("host_client", sa.column("id", sa.Integer()),
                       sa.column("practice_id", sa.Integer()), sa.column("email", sa.String()),
                       sa.column("email_key", sa.String()))
    bind = op.get_bind()
    seen: set[tuple[int, str]] = set()
    keys: list[dict[str, object]] = []
    rows = bind.execute(sa.select(clients.c.id, clients.c.practice_id, clients.c.email)
                        .where(clients.c.email.is_not(None)).order_by(clients.c.id))
    for client_id, practice_id, email in rows:
        key = _key(email)
        if key is not None and (practice_id, key) not in seen:  # the oldest client keeps it
            seen.add((practice_id, key))
            keys.append({"cid": client_id, "key": key})
    if keys:
        bind.execute(clients.update().where(clients.c.id == sa.bindparam("cid"))
                     .values(email_key=sa.bindparam("key")), keys)
    with op.batch_alter_table("host_client") as batch:
        batch.create_unique_constraint("uq_host_client_practice_email_key",
                                       ["practice_id", "email_key"])


def downgrade() -> None:
    with op.batch_alter_table("host_client") as batch:
        batch.drop_constraint("uq_host_client_practice_email_key", type_="unique")
        batch.drop_column("email_key")
    op.drop_table("host_sign_in_failure")
    op.drop_table("host_staff_session")

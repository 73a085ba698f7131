"""Alembic environment of the booking platform: only ``host_`` tables, own version table."""

from __future__ import annotations

from typing import Any

from alembic import context

from examples.host_app.models import Base

VERSION_TABLE = "host_alembic_version"


def include_name(name: str | None, type_: str, _parent: Any) -> bool:
    """Never look at other tables (Samtycke keeps its own ``samtycke_`` tables)."""
    if type_ == "table":
        return bool(name) and str(name).startswith("host_")
    return True


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    include_name=include_name,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

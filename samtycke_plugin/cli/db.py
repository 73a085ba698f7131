"""``samtycke db``: create, upgrade and downgrade the app's own tables."""

from __future__ import annotations

import click

from samtycke_plugin import db
from samtycke_plugin.cli.context import Context, pass_ctx


@click.group("db")
def db_group() -> None:
    """The app's tables (its own migrations and version table)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_ctx
def db_upgrade(ctx: Context, revision: str) -> None:
    """Create or upgrade the app's tables (never touches host tables)."""
    db.upgrade(ctx.engine, revision)
    click.echo(f"Samtycke tables are at revision {revision}.")


@db_group.command("downgrade")
@click.argument("revision")
@pass_ctx
def db_downgrade(ctx: Context, revision: str) -> None:
    """Downgrade the app's tables to REVISION ("base" removes them all)."""
    db.downgrade(ctx.engine, revision)
    click.echo(f"Samtycke tables are at revision {revision}.")


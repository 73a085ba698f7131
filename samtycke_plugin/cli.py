"""The ``samtycke`` command line (click).

Commands that only need the database take ``--database-url`` (or
``SAMTYCKE_DATABASE_URL``).  Commands that need the host's clients (names,
e-mail addresses) also take ``--host module:factory`` (or ``SAMTYCKE_HOST``): a
callable in the host platform that returns a :class:`hookspecs.host.Host`.
"""

from __future__ import annotations

import importlib
import os
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from hookspecs.host import Host
from hookspecs.types import (
    ClientInfo,
    ClientRef,
    DeliveryResult,
    OutgoingEmail,
    PracticeInfo,
    TenantRef,
)
from samtycke_plugin import db


class StandaloneHost:
    """A host for database-only commands: no client directory, the app's own SMTP."""

    def __init__(self, engine: Engine, base_url: str) -> None:
        self._session = Session(engine, expire_on_commit=False)
        self.base_url = base_url.rstrip("/")
        secret = os.environ.get("SAMTYCKE_SECRET_KEY")
        self._secret = secret.encode() if secret else None

    def session(self) -> Session:
        return self._session

    def now(self) -> datetime:
        return datetime.now(UTC)

    def lookup_client(self, tenant: TenantRef, client: ClientRef) -> ClientInfo | None:
        return None

    def iter_clients(self, tenant: TenantRef) -> Iterable[ClientInfo]:
        raise click.UsageError(
            "This command needs the host's client list: pass --host module:factory "
            "(or set SAMTYCKE_HOST)."
        )

    def practice_info(self, tenant: TenantRef) -> PracticeInfo | None:
        return None

    def absolute_url(self, tenant: TenantRef, path: str) -> str:
        return self.base_url + path

    def app_secret(self, app: str) -> bytes:
        if self._secret is None:
            raise click.UsageError(
                "Set SAMTYCKE_SECRET_KEY (the same secret the host uses) or pass --host."
            )
        return self._secret

    def deliver_email(self, tenant: TenantRef, message: OutgoingEmail) -> DeliveryResult | None:
        return None


class Context:
    """Lazily built engine and host for the commands."""

    def __init__(self, database_url: str | None, host_spec: str | None, base_url: str) -> None:
        self.database_url = database_url
        self.host_spec = host_spec
        self.base_url = base_url
        self._engine: Engine | None = None
        self._host: Host | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            if not self.database_url:
                raise click.UsageError(
                    "No database given: pass --database-url or set SAMTYCKE_DATABASE_URL."
                )
            self._engine = db.make_engine(self.database_url)
        return self._engine

    @property
    def host(self) -> Host:
        if self._host is None:
            if self.host_spec:
                module, _, attr = self.host_spec.partition(":")
                factory: Any = getattr(importlib.import_module(module), attr or "make_host")
                self._host = factory()
            else:
                self._host = StandaloneHost(self.engine, self.base_url)
        return self._host


pass_ctx = click.make_pass_decorator(Context)


@click.group()
@click.option("--database-url", envvar="SAMTYCKE_DATABASE_URL", help="SQLAlchemy URL of the database.")
@click.option("--host", "host_spec", envvar="SAMTYCKE_HOST", help="module:factory returning the host.")
@click.option(
    "--base-url", envvar="SAMTYCKE_BASE_URL", default="http://127.0.0.1:5000",
    show_default=True, help="Public base URL for links when no host is given.",
)
@click.pass_context
def main(ctx: click.Context, database_url: str | None, host_spec: str | None, base_url: str) -> None:
    """Samtycke: GDPR client consent for booking platforms."""
    ctx.obj = Context(database_url, host_spec, base_url)


@main.group("db")
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


@main.command("secret")
def new_secret() -> None:
    """Print a new random secret suitable for SAMTYCKE_SECRET_KEY."""
    click.echo(secrets.token_urlsafe(48))


# Command groups of other areas register themselves below (one line each).

"""What every ``samtycke`` command shares: the engine and the host, built lazily from
the global options (``--database-url``, ``--host``, ``--base-url``), and the stand-in
host for commands run without ``--host``."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager
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
from samtycke_plugin.integrations.sqlalchemy import dbapi_of, session_unit_of_work


class StandaloneHost:
    """A host for database-only commands: no client directory, the app's own SMTP."""

    def __init__(self, engine: Engine, base_url: str) -> None:
        self._session = Session(engine, expire_on_commit=False)
        self.base_url = base_url.rstrip("/")
        secret = os.environ.get("SAMTYCKE_SECRET_KEY")
        self._secret = secret.encode() if secret else None

    def connection(self) -> Any:
        return dbapi_of(self._session)

    def unit_of_work(self) -> AbstractContextManager[Any]:
        return session_unit_of_work(self._session)

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

"""The benchmark's host: a booking platform that owns a ``host_client`` table and
shares its database and session with the app, as a real platform does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Index,
    MetaData,
    Select,
    String,
    Table,
    bindparam,
    create_engine,
    select,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from hookspecs.facade import AppHooks, make_plugin_manager
from hookspecs.types import (
    ClientInfo,
    ClientRef,
    DeliveryResult,
    OutgoingEmail,
    PracticeInfo,
    TenantRef,
)

#: The benchmark's "now": every generated timestamp lies before it.
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

host_metadata = MetaData()

#: The host's own client table (not the app's: no ``samtycke_`` prefix).
host_client = Table(
    "host_client",
    host_metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("email", String(320)),
    Column("locale", String(8), nullable=False),
    # The host's client list is ordered by name within a practice.
    Index("ix_host_client_tenant_name", "tenant", "name", "id"),
)

_LOOKUP = select(host_client.c.id, host_client.c.name, host_client.c.email, host_client.c.locale)
_LOOKUP_ONE = _LOOKUP.where(
    host_client.c.tenant == bindparam("tenant"), host_client.c.id == bindparam("client")
)


class BenchHost:
    """Implements :class:`hookspecs.host.Host` (and :class:`hookspecs.host.ClientQuery`)
    over one engine and the ``host_client`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = Session(engine, expire_on_commit=False)
        #: A plain engine for streaming reads beside the session (no write lock on SQLite).
        self._reader = create_engine(engine.url, poolclass=NullPool)
        self.clock = NOW
        self.active: dict[str, frozenset[str]] = {}
        self.mail: list[OutgoingEmail] = []

    # -- the Host protocol -------------------------------------------------------
    def session(self) -> Session:
        return self._session

    def now(self) -> datetime:
        return self.clock

    def lookup_client(self, tenant: TenantRef, client: ClientRef) -> ClientInfo | None:
        row = self._session.execute(_LOOKUP_ONE, {"tenant": tenant, "client": client}).one_or_none()
        return None if row is None else ClientInfo(
            ref=ClientRef(row.id), name=row.name, email=row.email, locale=row.locale
        )

    def iter_clients(self, tenant: TenantRef) -> Iterator[ClientInfo]:
        """Every client of the practice, streamed from a server-side cursor in batches,
        on a connection of its own (the batch request commits its session per chunk)."""
        with self._reader.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=1000).execute(
                _LOOKUP.where(host_client.c.tenant == tenant).order_by(host_client.c.id)
            )
            for row in result:
                yield ClientInfo(
                    ref=ClientRef(row.id), name=row.name, email=row.email, locale=row.locale
                )

    # -- hookspecs.host.ClientQuery ---------------------------------------------------
    def client_query(self, tenant: TenantRef) -> Select[Any]:
        c = host_client.c
        return select(c.id.label("ref"), c.name, c.email).where(c.tenant == tenant)

    def practice_info(self, tenant: TenantRef) -> PracticeInfo | None:
        return PracticeInfo(
            ref=tenant, name=f"Praktik {tenant}", email=f"info@{tenant}.example",
            phone="08-123 45 67", locale="sv",
        )

    def absolute_url(self, tenant: TenantRef, path: str) -> str:
        return "https://booking.example" + path

    def app_secret(self, app: str) -> bytes:
        return b"bench-secret-" + app.encode() + b"-0123456789abcdef0123456789"

    def deliver_email(self, tenant: TenantRef, message: OutgoingEmail) -> DeliveryResult | None:
        return None  # the app's own outbox and relay

    # -- helpers -----------------------------------------------------------------
    def hooks(self) -> AppHooks:
        """The plugin manager loaded from the entry point, exactly as a platform does."""
        pm = make_plugin_manager(strict=True)
        return AppHooks(pm, self, self._active_apps)

    def _active_apps(self, tenant: TenantRef) -> frozenset[str]:
        return self.active.get(tenant, frozenset())

    def close(self) -> None:
        self._session.close()
        self._reader.dispose()

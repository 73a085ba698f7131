"""A small but real host for tests: one SQLAlchemy session whose DB-API connection the
app borrows, clients, a clock, and a plugin manager loaded through the entry point,
exactly as a platform does."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    String,
    Table,
    delete,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from hookspecs.facade import AppHooks, make_plugin_manager
from hookspecs.types import (
    ALL_PERMISSIONS,
    BookingSubmission,
    ClientInfo,
    ClientRef,
    ClientSelect,
    DeliveryResult,
    OutgoingEmail,
    Permission,
    PracticeInfo,
    StaffContext,
    StaffRef,
    TenantRef,
)
from samtycke_plugin.integrations.sqlalchemy import dbapi_of, session_unit_of_work
from samtycke_plugin.models import WAITING_REQUEST, OutboxMessage

#: Under CI=true a missing PostgreSQL, SMTP server or browser fails a test instead of skipping it.
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class TestHost:
    """Implements :class:`hookspecs.host.Host` over one engine.

    The host's own work (and the tests' checks) run in :meth:`session`; hooks borrow its
    DB-API connection (:meth:`connection`), and the app's units of work run on it too
    and commit it (:meth:`unit_of_work`): a host with one session, like a script.
    """

    __test__ = False

    def __init__(self, engine: Engine, *, locale: str = "sv") -> None:
        self.engine = engine
        self._session = Session(engine, expire_on_commit=False)
        self.clock = START
        self.clients: dict[tuple[str, str], ClientInfo] = {}
        self.practices: dict[str, PracticeInfo] = {}
        self.mail: list[OutgoingEmail] = []
        #: None → the app uses its own SMTP transport; else a callable returning a result.
        self.mailer: Any = None
        self.base_url = "http://booking.test"
        self.locale = locale
        self.active: dict[str, set[str]] = {}

    # -- the Host protocol -------------------------------------------------------
    def connection(self) -> Any:
        return dbapi_of(self._session)

    def unit_of_work(self) -> AbstractContextManager[Any]:
        return session_unit_of_work(self._session)

    # -- the host's own session ------------------------------------------------------
    def session(self) -> Session:
        return self._session

    def rollback(self) -> None:
        """Roll back the host's transaction, as a host's error handling does: when the
        connection died under the app's statements, the first rollback finds it lost
        (SQLAlchemy then invalidates it) and the session starts over on a new one."""
        try:
            self._session.rollback()
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            self._session.rollback()

    def now(self) -> datetime:
        return self.clock

    def lookup_client(self, tenant: TenantRef, client: ClientRef) -> ClientInfo | None:
        return self.clients.get((tenant, client))

    def iter_clients(self, tenant: TenantRef) -> Iterator[ClientInfo]:
        for (t, _ref), info in list(self.clients.items()):
            if t == tenant:
                yield info

    def practice_info(self, tenant: TenantRef) -> PracticeInfo | None:
        return self.practices.get(tenant)

    def absolute_url(self, tenant: TenantRef, path: str) -> str:
        return self.base_url + path

    def app_secret(self, app: str) -> bytes:
        return b"test-secret-" + app.encode() + b"-0123456789abcdef0123456789"

    def deliver_email(self, tenant: TenantRef, message: OutgoingEmail) -> DeliveryResult | None:
        if self.mailer is None:
            return None
        self.mail.append(message)
        result: DeliveryResult = self.mailer(message)
        return result

    # -- helpers for tests ---------------------------------------------------------
    def advance(self, **delta: float) -> None:
        self.clock = self.clock + timedelta(**delta)

    def new_tenant(self, name: str = "Kliniken Lugn & Ro") -> TenantRef:
        tenant = TenantRef(f"t{uuid.uuid4().hex[:12]}")
        self.practices[tenant] = PracticeInfo(
            ref=tenant,
            name=name,
            email="info@lugnochro.example",
            phone="08-123 45 67",
            locale=self.locale,
        )
        return tenant

    def new_client(
        self,
        tenant: str,
        name: str = "Anna Svensson",
        email: str | None = "anna@example.org",
        locale: str = "sv",
    ) -> ClientRef:
        ref = ClientRef(f"c{uuid.uuid4().hex[:12]}")
        self.clients[(tenant, ref)] = ClientInfo(ref=ref, name=name, email=email, locale=locale)
        return ref

    def hooks(self) -> AppHooks:
        pm = make_plugin_manager(strict=True)
        return AppHooks(pm, self, lambda tenant: self.active.get(tenant, set()))

    def activate(self, hooks: AppHooks, tenant: TenantRef, **settings: object) -> None:
        self.active.setdefault(tenant, set()).add("samtycke")
        hooks.activate(tenant, "samtycke", settings)
        self._session.commit()
        self._session.expire_all()  # the app wrote through a session of its own

    def close(self) -> None:
        self._session.close()


#: The client table of :class:`QueryHost` (the host's own table: no ``samtycke_`` prefix).
_host_metadata = MetaData()
hostkit_client = Table(
    "hostkit_client",
    _host_metadata,
    Column("tenant", String(64), primary_key=True),
    Column("ref", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320)),
)


def create_client_table(engine: Engine) -> None:
    _host_metadata.create_all(engine)


def clients_of(tenant: str) -> ClientSelect:
    """A practice's clients in :data:`hostkit_client`, as ``ClientQuery`` gives them."""
    return ClientSelect(
        sql="SELECT ref, name, email FROM hostkit_client WHERE tenant = :tenant",
        params={"tenant": tenant},
    )


class QueryHost(TestHost):
    """A :class:`TestHost` that also implements :class:`hookspecs.host.ClientQuery`: its
    clients are in a table of the shared database as well.  ``client_query`` first
    copies the practice's clients from ``self.clients`` into the table (in the session's
    transaction), so tests can keep editing ``self.clients``."""

    __test__ = False

    def __init__(self, engine: Engine, *, locale: str = "sv") -> None:
        super().__init__(engine, locale=locale)
        create_client_table(engine)
        self.queries = 0

    def client_query(self, tenant: TenantRef) -> ClientSelect:
        self.queries += 1
        session = self.session()
        c = hostkit_client.c
        rows = [
            {"tenant": t, "ref": ref, "name": info.name, "email": info.email}
            for (t, ref), info in self.clients.items() if t == tenant
        ]
        stored = session.execute(select(c.tenant, c.ref, c.name, c.email).where(c.tenant == tenant))
        query = clients_of(tenant)
        if sorted(tuple(r) for r in stored) == sorted(tuple(r.values()) for r in rows):
            return query  # nothing to write: racing hosts only read
        session.execute(delete(hostkit_client).where(c.tenant == tenant))
        if rows:
            session.execute(insert(hostkit_client), rows)
        return query


def staff(can_record: bool = True) -> StaffContext:
    """The practice's owner (every permission), or without ``can_record`` everything but
    recording consent."""
    allowed = ALL_PERMISSIONS if can_record else ALL_PERMISSIONS - {Permission.RECORD_CONSENT}
    return StaffContext(ref=StaffRef("s1"), name="Dr. Berg", permissions=allowed)


def submission(
    tenant: str,
    client: str | None,
    *,
    ticked: bool | None = None,
    text_id: int | None = None,
    is_new: bool = False,
    locale: str = "sv",
    channel: str = "online",
) -> BookingSubmission:
    fields: dict[str, str] = {"service": "massage"}
    if ticked:
        fields["samtycke_consent"] = "yes"
    if text_id is not None:
        fields["samtycke_text"] = str(text_id)
    return BookingSubmission(
        tenant=TenantRef(tenant),
        client=ClientRef(client) if client else None,
        is_new_client=is_new,
        channel=channel,  # type: ignore[arg-type]
        fields=fields,
        locale=locale,
        ip_address="203.0.113.77",
        user_agent="Mozilla/5.0 (test)",
    )


@contextmanager
def count_statements(engine: Engine) -> Iterator[list[str]]:
    """Collect the SQL statements executed on ``engine``'s database inside the block: by
    the host on ``engine`` and by the app on the connections it borrows."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", before)


def pg_admin_url() -> str:
    return os.environ.get("SAMTYCKE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def complete_waiting_requests(host: Any, tenant: str) -> int:
    """Do what the relay's claim does to the practice's requests queued by a batch (mint
    each link, record its ``requested`` event, fill in the row), and commit, so a test
    can look at requests and events without sending the mail.  Returns how many got a
    link (the others were cancelled with their reason, as the relay does)."""
    from samtycke_plugin.email import asking, outbox

    session = host.session()
    rows = session.scalars(select(OutboxMessage).where(
        OutboxMessage.tenant_ref == tenant, text(WAITING_REQUEST)).order_by(OutboxMessage.id)).all()
    outcome = asking.complete_requests(host, session, rows)
    for msg in rows:
        if outcome[msg.id] is not None:
            msg.status, msg.last_error = outbox.CANCELLED, outcome[msg.id]
    session.commit()
    return sum(why is None for why in outcome.values())

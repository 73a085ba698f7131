"""The small typed interface through which an app calls back into its host.

Nothing here is a type of the host's framework or SQL layer: the database crosses
the boundary as a plain PEP 249 (DB-API 2) connection of the host's own driver
(``sqlite3`` or psycopg 3), so a Django, Flask or hand-written platform implements
it the same way.  :mod:`samtycke_plugin.integrations` carries ready-made
implementations for Django and for SQLAlchemy/Flask hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from hookspecs.types import (
        AppPage,
        ClientInfo,
        ClientRef,
        ClientSelect,
        DeliveryResult,
        OutgoingEmail,
        PracticeInfo,
        StaffContext,
        StaffRef,
        TenantRef,
    )

#: A PEP 249 connection of the host's driver (``sqlite3.Connection`` or
#: ``psycopg.Connection``).  Typed loosely on purpose: drivers share no base class.
DBAPIConnection = Any


@runtime_checkable
class Host(Protocol):
    """Implemented by the host and passed into every hook as ``host``."""

    def connection(self) -> DBAPIConnection:
        """The DB-API connection that holds the host's open transaction on this thread.

        Used by hooks only (activation, booking record, client created, erasure and the
        read hooks).  The app writes through it and never commits, rolls back or closes
        it: the host commits, so its own rows and the app's evidence commit or roll back
        together.  A write hook called while this connection would commit each
        statement on its own (autocommit, no transaction open) raises
        :class:`hookspecs.types.NoHostTransaction` before writing anything.
        """

    def unit_of_work(self) -> AbstractContextManager[DBAPIConnection]:
        """A new transaction that the app owns, for its own pages, mail relay and CLI.

        Entering gives a DB-API connection in a fresh transaction (on SQLite one that
        takes the write lock at once: ``BEGIN IMMEDIATE``); leaving the block commits
        it, and an exception rolls it back and propagates.  The app may run a unit
        again after a transient failure (busy database, serialization failure).
        """

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC). Injectable for tests."""

    def lookup_client(self, tenant: TenantRef, client: ClientRef) -> ClientInfo | None:
        """The client's name, e-mail and locale, or ``None`` if unknown in this tenant."""

    def iter_clients(self, tenant: TenantRef) -> Iterable[ClientInfo]:
        """Every client of the practice, streamed (used by batch requests; may be large)."""

    def practice_info(self, tenant: TenantRef) -> PracticeInfo | None:
        """The practice's name and contact details, or ``None`` if unknown."""

    def absolute_url(self, tenant: TenantRef, path: str) -> str:
        """An absolute URL (scheme and host from configuration, never from a request)."""

    def app_secret(self, app: str) -> bytes:
        """A stable secret of at least 32 bytes for ``app`` (signing CSRF and link tokens).

        Derive it from the host's own secret key; rotate by changing that key.
        """

    def deliver_email(self, tenant: TenantRef, message: OutgoingEmail) -> DeliveryResult | None:
        """Deliver or queue an e-mail; ``None`` means "use the app's own SMTP transport"."""


@runtime_checkable
class ClientQuery(Protocol):
    """Optional: a host whose client table is in the shared database may also offer it as
    SQL.  Implement it beside :class:`Host` (``isinstance(host, ClientQuery)`` is how the
    app asks); hosts without it keep working through :meth:`Host.iter_clients`."""

    def client_query(self, tenant: TenantRef) -> ClientSelect:
        """Every client of the practice as one ``SELECT`` on the shared database, with
        three columns named ``ref`` (the client reference as text, as
        :meth:`Host.lookup_client` takes it), ``name`` and ``email``; each client once.

        The app wraps it in its own statements (a subquery: no ordering needed) and runs
        them on the host's connection.  A batch request to a whole practice then
        decides, counts and queues in a few set-based statements in the database instead
        of streaming every client through Python.
        """


@runtime_checkable
class PageLayout(Protocol):
    """Optional: the host's own page layout around the app's practitioner pages.

    Implement it beside :class:`Host`; without it the app's pages stand alone with a
    plain header and the ``booking.home`` back link.
    """

    def page_layout(self, page: AppPage) -> str:
        """A complete HTML document: the host's layout (menu, sign-out, language
        switch) with ``page.body_html`` as its main content and ``page.head_html`` in
        its ``<head>``.  ``page.title`` and ``page.back`` are plain text the host
        escapes.  Called once per page the app renders for a signed-in practitioner.
        """

    def client_path(self, tenant: TenantRef, client: ClientRef) -> str | None:
        """The root-relative path of the client's profile page in the host, or ``None``.

        The app's pages about one client (obtain consent, history) link back to it.
        """


@runtime_checkable
class OnCommit(Protocol):
    """Optional: tells an app when the host's transaction commits, so that it can signal
    changes its hooks made in it (``booking_consent_changed``) only once they are
    committed.  Implement it beside :class:`Host`.  Without it, changes made by hooks in
    the host's transaction (bookings, client erasure) are not signalled; changes made in
    the app's own units of work (its pages, mail relay, CLI) are, since the app sees
    those commit itself."""

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once, after the host's transaction now open on
        :meth:`Host.connection` commits, outside that transaction (it may open a unit of
        work); forget it when that transaction rolls back.  Django:
        ``transaction.on_commit``; SQLAlchemy:
        :func:`samtycke_plugin.integrations.sqlalchemy.on_commit`.
        """


@runtime_checkable
class StaffDirectory(Protocol):
    """Optional: who a practice's staff member is, by reference, outside a web request.

    The app's command line asks it when a command acts on clients' personal data or
    mails clients for a staff member (``samtycke --host … export client --staff 7``):
    the command checks that person's permissions as the pages do and records them as
    the actor.  Implement it beside :class:`Host`; without it those commands refuse to
    run (saying the host must provide it), while the operator's commands that touch no
    personal data (``verify``, ``checkpoint``, ``db``, ``outbox send``) keep working.
    """

    def staff_member(self, tenant: TenantRef, staff: StaffRef) -> StaffContext | None:
        """The :class:`StaffContext` of staff member ``staff`` of practice ``tenant``,
        with the permissions the host's role mapping gives them (the same the signed-in
        person gets on the pages), or ``None`` when no such person works there (unknown,
        removed, or at another practice).  Called inside a unit of work of the app
        (:meth:`Host.unit_of_work`), so it may read the shared database.
        """

"""The small typed interface through which an app calls back into its host."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.orm import Session

    from hookspecs.types import (
        ClientInfo,
        ClientRef,
        DeliveryResult,
        OutgoingEmail,
        PracticeInfo,
        TenantRef,
    )


@runtime_checkable
class Host(Protocol):
    """Implemented by the host and passed into every hook as ``host``."""

    def session(self) -> Session:
        """The host's current SQLAlchemy session (unit of work) on the shared database.

        Apps write through it and never commit it in a hook: the host commits, so its
        own rows and the app's evidence commit or roll back together.
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
    a query.  Implement it beside :class:`Host` (``isinstance(host, ClientQuery)`` is how
    the app asks); hosts without it keep working through :meth:`Host.iter_clients`."""

    def client_query(self, tenant: TenantRef) -> Select[Any]:
        """Every client of the practice as one SQLAlchemy ``SELECT`` on the shared
        database, with three columns labelled ``ref`` (the client reference as a string,
        as :meth:`Host.lookup_client` takes it), ``name`` and ``email``; each client once.

        The app wraps it in its own statements (a subquery: no ordering needed) and runs
        them on :meth:`Host.session`.  A batch request to a whole practice then decides,
        counts and queues in a few set-based statements in the database instead of
        streaming every client through Python, and the batch page counts the practice's
        clients with one ``count(*)``.
        """

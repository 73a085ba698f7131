"""The database, clock, secret and mail part of :class:`hookspecs.host.Host` for a
Django project, and the SQLite ``OPTIONS`` the app needs.

A Django host subclasses :class:`DjangoHost` and adds what only it knows: its
clients, its practices, who is signed in and which apps each practice has active.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import smtplib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from hookspecs.host import DBAPIConnection
from hookspecs.types import (
    ClientInfo,
    ClientRef,
    DeliveryResult,
    OutgoingEmail,
    PracticeInfo,
    StaffContext,
    StaffRef,
    TenantRef,
)
from samtycke_plugin.roles import role_permissions

if TYPE_CHECKING:  # importing auth models needs the app registry: settings import this module
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

log = logging.getLogger("samtycke.integrations.django")

#: Seconds a SQLite writer waits for the lock before "database is locked".
SQLITE_TIMEOUT = 30


def sqlite_options() -> dict[str, object]:
    """``DATABASES[...]["OPTIONS"]`` for a SQLite database the app shares with Django.

    The same behaviour :func:`samtycke_plugin.db.configure_sqlite` gives an engine:
    every transaction takes the write lock at once (``BEGIN IMMEDIATE``, so a unit that
    reads and then writes never fails on a lock upgrade), a writer waits up to
    :data:`SQLITE_TIMEOUT` seconds for the lock, WAL lets readers run beside the writer,
    ``synchronous=FULL`` makes a commit durable and foreign keys are enforced::

        DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                                 "NAME": BASE_DIR / "clinic.sqlite3",
                                 "OPTIONS": sqlite_options()}}
    """
    return {
        "transaction_mode": "IMMEDIATE",
        "timeout": SQLITE_TIMEOUT,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
        "PRAGMA foreign_keys=ON",
    }


def app_settings() -> dict[str, Any]:
    """The project's ``SAMTYCKE`` setting (a dict; see the package docs for its keys)."""
    value = getattr(settings, "SAMTYCKE", {})
    if not isinstance(value, dict):
        raise TypeError("settings.SAMTYCKE must be a dict, e.g. {'HOST': 'clinic.glue.make_host'}")
    return value


class DjangoHost:
    """Implements the framework part of :class:`hookspecs.host.Host` on Django.

    * :meth:`connection` is the raw driver connection of ``connections[using]``: inside
      the host's ``transaction.atomic()`` block it holds the host's open transaction,
      so the app's evidence commits or rolls back with the host's rows;
    * :meth:`unit_of_work` is a new ``transaction.atomic(durable=True)`` block the app
      owns (its pages, mail relay and CLI); it refuses to run nested inside another
      ``atomic`` block, where it could not commit on its own;
    * :meth:`on_commit` is ``transaction.on_commit``: changes the app's hooks made in the
      host's transaction are signalled to the other apps once it commits;
    * :meth:`deliver_email` sends through Django's mail backend (``EMAIL_BACKEND``),
      keeping the app's ``Message-ID``;
    * :meth:`app_secret` is derived from ``SECRET_KEY``, one secret per app.

    Subclasses implement :meth:`lookup_client`, :meth:`iter_clients`,
    :meth:`practice_info`, :meth:`active_apps` and :meth:`staff`; :meth:`staff_member`
    (the command line's staff) follows from :meth:`staff`.
    """

    #: The database alias the app shares with the host (as ``SAMTYCKE["DATABASE"]``).
    using: str = DEFAULT_DB_ALIAS

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))

    # -- the database -------------------------------------------------------------------

    def connection(self) -> DBAPIConnection:
        wrapper = connections[self.using]
        wrapper.ensure_connection()
        return wrapper.connection

    @contextmanager
    def unit_of_work(self) -> Iterator[DBAPIConnection]:
        with transaction.atomic(using=self.using, durable=True):
            yield self.connection()

    def on_commit(self, callback: Callable[[], None]) -> None:
        transaction.on_commit(callback, using=self.using)

    # -- clock, secret, URLs ------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock()

    def app_secret(self, app: str) -> bytes:
        key = str(settings.SECRET_KEY).encode()
        return hmac.new(key, b"booking-app-secret:" + app.encode(), hashlib.sha256).digest()

    def absolute_url(self, tenant: TenantRef, path: str) -> str:
        """``SAMTYCKE["BASE_URL"]`` + ``path``: from configuration, never from a request."""
        base = app_settings().get("BASE_URL")
        if not isinstance(base, str) or not base:
            raise ValueError("set settings.SAMTYCKE['BASE_URL'] (e.g. 'https://clinic.example')")
        return base.rstrip("/") + path

    # -- e-mail -------------------------------------------------------------------------

    def from_email(self, tenant: TenantRef) -> str | None:
        """The sender of the app's mail (``None``: ``DEFAULT_FROM_EMAIL``)."""
        return None

    def deliver_email(self, tenant: TenantRef, message: OutgoingEmail) -> DeliveryResult | None:
        mail = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=self.from_email(tenant),
            to=[message.to],
            headers={**message.headers, "Message-ID": message.message_id},
        )
        if message.html is not None:
            mail.attach_alternative(message.html, "text/html")
        try:
            mail.send()
        except smtplib.SMTPRecipientsRefused as exc:
            return DeliveryResult(status="rejected", detail=str(exc)[:200])
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("sending an app e-mail failed; it will be retried: %s", exc)
            return DeliveryResult(status="retry", detail=str(exc)[:200])
        return DeliveryResult(status="sent")

    # -- what only the host knows -------------------------------------------------------

    def lookup_client(self, tenant: TenantRef, client: ClientRef) -> ClientInfo | None:
        raise NotImplementedError

    def iter_clients(self, tenant: TenantRef) -> Iterable[ClientInfo]:
        raise NotImplementedError

    def practice_info(self, tenant: TenantRef) -> PracticeInfo | None:
        raise NotImplementedError

    def active_apps(self, tenant: TenantRef) -> Iterable[str]:
        """The app keys active for ``tenant`` (the host's own activation store)."""
        raise NotImplementedError

    def staff(
        self, user: AbstractBaseUser | AnonymousUser
    ) -> tuple[TenantRef, StaffContext] | None:
        """The practice and :class:`StaffContext` of a signed-in user, or ``None`` when
        ``user`` is not a practitioner (signed out, or no practice).  Build the context
        with :meth:`staff_context` so the user's role decides what they may do."""
        raise NotImplementedError

    def staff_context(
        self, ref: object, name: str, role: str, can_record_consent: bool = True
    ) -> StaffContext:
        """The :class:`StaffContext` of a user with the host's ``role``, whose
        permissions ``SAMTYCKE["ROLES"]`` names (role → permission names, ``"*"`` for
        all; see :class:`hookspecs.types.Permission`)::

            SAMTYCKE = {..., "ROLES": {"owner": ["*"], "staff": ["record_consent"]}}

        A role the mapping does not name, or no mapping, has no permission: the safe
        default, so nobody may change settings or download records until the project
        says who may.  ``can_record_consent=False`` withholds recording from this person."""
        mapping = app_settings().get("ROLES") or {}
        if not isinstance(mapping, Mapping):
            raise ValueError("settings.SAMTYCKE['ROLES'] must map role names to lists")
        return StaffContext(ref=StaffRef(str(ref)), name=name,
                            permissions=role_permissions(mapping, role, can_record_consent))

    def staff_member(self, tenant: TenantRef, staff: StaffRef) -> StaffContext | None:
        """:meth:`hookspecs.host.StaffDirectory.staff_member`: the user whose primary key
        is ``staff`` (the reference :meth:`staff_context` is given from ``user.pk``), as
        :meth:`staff` sees them, when they work at ``tenant``; else ``None``.  Override
        it when the project's staff references are not the users' primary keys."""
        from django.contrib.auth import get_user_model
        from django.core.exceptions import ValidationError

        try:
            user = get_user_model()._default_manager.filter(pk=staff).first()
        except (ValueError, TypeError, ValidationError):  # not a key of the user table
            return None
        found = None if user is None else self.staff(user)
        if found is None or found[0] != tenant or found[1].ref != staff:
            return None
        return found[1]

    def home(self) -> tuple[str, str] | None:
        """``(path, label)`` of the platform's "back" link on the app's pages."""
        return None

"""One Samtycke per process: the host built by the project's factory, the plugin
manager with the installed apps and the typed facade the host's views call."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation
from django.utils.module_loading import import_string

from hookspecs.facade import AppHooks, make_plugin_manager
from hookspecs.types import (
    BookingRef,
    BookingSubmission,
    ClientCreated,
    ClientRef,
    StaffContext,
    TenantRef,
    Veto,
    WebMount,
)
from samtycke_plugin.integrations.django.host import DjangoHost, app_settings

#: The Django request the app's page is being rendered for (the host's layout needs it).
current_request: ContextVar[HttpRequest | None] = ContextVar(
    "samtycke_current_request", default=None
)


class Samtycke:
    """The host, the apps and their mounts, built once (see :func:`samtycke`)."""

    def __init__(self, host: DjangoHost, *, strict: bool = False) -> None:
        self.host = host
        self.hooks = AppHooks(make_plugin_manager(strict=strict), host, host.active_apps)
        self.mounts: list[WebMount] = self.hooks.web_mounts()

    def staff(self, request: HttpRequest) -> tuple[TenantRef, StaffContext] | None:
        """The signed-in practitioner of ``request`` (from Django's session), or ``None``."""
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        return self.host.staff(user)

    # -- the app menu -------------------------------------------------------------------

    def app_menu(self, tenant: TenantRef) -> list[dict[str, Any]]:
        """The installed apps for the host's app menu, in the active language
        (:meth:`AppHooks.menu`)."""
        return self.hooks.menu(tenant, locale())

    def switched(self, tenant: TenantRef, app: str, active: bool,
                 settings: Mapping[str, object]) -> str | None:
        """Tell the apps that the host has just switched ``app`` on or off for ``tenant``
        (inside the host's ``transaction.atomic()``, after storing it); returns the
        app's setup page when switched on.  Empty ``settings``: the app's wizard asks."""
        return self.hooks.switch(tenant, app, active, settings)

    # -- a booking ------------------------------------------------------------------------

    def check_booking(self, request: HttpRequest, tenant: TenantRef, client: object,
                      fields: Mapping[str, str], *, is_new_client: bool,
                      channel: str = "online", booker_signed_in: bool | None = None,
                      booker_name: str | None = None, booker_email: str | None = None,
                      ) -> tuple[BookingSubmission, list[Veto]]:
        """Phase 1 of 2, before anything is written: the submission and the apps' vetoes
        (the booking must not be accepted while there are any).  ``booker_*``: what the
        site knows about who is booking online (see
        :class:`~hookspecs.types.BookingSubmission`)."""
        submission = BookingSubmission(
            tenant=tenant, client=ClientRef(str(client)) if client is not None else None,
            is_new_client=is_new_client, channel="staff" if channel == "staff" else "online",
            fields={k: v for k, v in fields.items() if k != "csrfmiddlewaretoken"},
            locale=locale(), ip_address=request.META.get("REMOTE_ADDR"),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:512] or None,
            booker_signed_in=booker_signed_in, booker_name=booker_name,
            booker_email=booker_email)
        return submission, self.hooks.submit_check(submission)

    def booking_made(self, submission: BookingSubmission, booking: object,
                     client: object) -> None:
        """Phase 2 of 2, inside the booking's ``transaction.atomic()`` after its row."""
        self.hooks.submitted(submission, BookingRef(str(booking)), ClientRef(str(client)))

    def client_created(self, tenant: TenantRef, client: object, created_by: str,
                       at: datetime) -> None:
        """Inside the host's ``transaction.atomic()``, after the client row."""
        self.hooks.client_created(ClientCreated(
            tenant=tenant, client=ClientRef(str(client)),
            created_by="staff" if created_by == "staff" else "online", at=at))


def locale() -> str:
    """Django's active language (the hooks' ``locale``)."""
    return translation.get_language() or settings.LANGUAGE_CODE


_lock = threading.Lock()
_instance: Samtycke | None = None


def build_host() -> DjangoHost:
    """A new host from ``SAMTYCKE["HOST"]``: the dotted path of a factory (or class)."""
    path = app_settings().get("HOST")
    if not isinstance(path, str):
        raise ValueError(
            "set settings.SAMTYCKE['HOST'] to the dotted path of a callable returning "
            "your DjangoHost subclass, e.g. 'clinic.samtycke_glue.ClinicHost'"
        )
    factory: Any = import_string(path)
    host = factory()
    if not isinstance(host, DjangoHost):
        raise TypeError(f"{path} returned {type(host).__name__}, not a DjangoHost")
    return host


def samtycke() -> Samtycke:
    """The process's :class:`Samtycke`, built on first use."""
    global _instance
    if _instance is None:
        with _lock:
            if _instance is None:
                _instance = Samtycke(build_host(), strict=bool(app_settings().get("STRICT")))
    return _instance


def reset() -> None:
    """Forget the process's :class:`Samtycke` (tests that change ``settings.SAMTYCKE``)."""
    global _instance
    with _lock:
        _instance = None

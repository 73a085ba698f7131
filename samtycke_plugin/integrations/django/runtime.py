"""One Samtycke per process: the host built by the project's factory, the plugin
manager with the installed apps and the typed facade the host's views call."""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest
from django.utils.module_loading import import_string

from hookspecs.facade import AppHooks, make_plugin_manager
from hookspecs.types import StaffContext, TenantRef, WebMount
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

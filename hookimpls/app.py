"""App menu, activation and web mounts."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

from hookspecs import hookimpl
from hookspecs.host import Host
from hookspecs.types import AppInfo, TenantRef, WebMount
from samtycke_plugin import common, practices
from samtycke_plugin.web import make_wsgi_app


def _version() -> str:
    try:
        return version("samtycke-plugin")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+source"


@hookimpl
def booking_app_info(host: Host) -> AppInfo:
    return AppInfo(
        key=common.APP_KEY,
        name={"sv": "Samtycke", "en": "Consent (Samtycke)"},
        description={
            "sv": "Samla in, bevisa och håll koll på dina klienters samtycke enligt GDPR.",
            "en": "Collect, prove and keep track of your clients' GDPR consent.",
        },
        version=_version(),
        setup_path=f"{common.MOUNT_PREFIX}/setup",
    )


@hookimpl
def booking_app_activated(
    host: Host, tenant: TenantRef, app: str, settings: Mapping[str, object]
) -> None:
    if app == common.APP_KEY:
        practices.activate(host, tenant, settings)


@hookimpl
def booking_app_deactivated(host: Host, tenant: TenantRef, app: str) -> None:
    if app == common.APP_KEY:
        practices.deactivate(host, tenant)


@hookimpl
def booking_web_mounts(host: Host) -> list[WebMount]:
    return [WebMount(key="samtycke.pages", prefix=common.MOUNT_PREFIX, app=make_wsgi_app())]

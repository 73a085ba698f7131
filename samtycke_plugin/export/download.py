"""A client's consent history as one downloadable file, by kind: the one place that
maps a kind to its export, media type and file name (the Flask integration's
downloads and ``samtycke export client`` both use it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from attrs import frozen

from samtycke_plugin.access_log import Viewer
from samtycke_plugin.export.bundle import bundle_filename, proof_bundle
from samtycke_plugin.export.history import (
    client_history_csv,
    client_history_html,
    client_history_json,
)

if TYPE_CHECKING:
    from hookspecs.host import Host

Kind = Literal["html", "json", "csv", "zip"]
KINDS: tuple[Kind, ...] = ("html", "json", "csv", "zip")
MEDIA_TYPES: dict[Kind, str] = {
    "html": "text/html",
    "json": "application/json",
    "csv": "text/csv",
    "zip": "application/zip",
}


@frozen
class Download:
    """One export: its content (text, or bytes for the ZIP), media type and file name."""

    body: str | bytes
    media_type: str
    filename: str


def client_download(
    host: Host, tenant: str, client: str, kind: Kind, *, by: Viewer, locale: str | None = None
) -> Download:
    """``client``'s history as a printable page (``html``), ``json``, ``csv``, or the
    proof bundle (``zip``), in the caller's unit of work; one access-log row naming
    ``by``."""
    name = f"samtycke-{tenant}-{client}.{kind}"
    body: str | bytes
    if kind == "zip":
        body = proof_bundle(host, tenant, client, by=by, locale=locale)
        name = bundle_filename(tenant, client, host.now())
    elif kind == "json":
        body = client_history_json(host, tenant, client, by=by, locale=locale)
    elif kind == "csv":
        body = client_history_csv(host, tenant, client, by=by)
    else:
        body = client_history_html(host, tenant, client, by=by, locale=locale)
    return Download(body=body, media_type=MEDIA_TYPES[kind], filename=name)

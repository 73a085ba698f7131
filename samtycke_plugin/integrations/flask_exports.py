"""Samtycke's proof of consent as downloads of a Flask host, behind the host's sign-in.

Part of :mod:`samtycke_plugin.integrations.flask` (needs Flask):
:meth:`~samtycke_plugin.integrations.flask.FlaskApps.mount` with ``exports=`` adds the
routes, and ``booking_apps.export_links(...)`` in a template the links to them.

* ``<exports>/<client>/consent.<kind>``: a client's consent history as a printable
  page (``html``), ``json``, ``csv``, or the proof bundle (``zip``: receipts, texts and
  the chain's verification);
* ``<exports>/consent-status.csv``: the practice's status list, streamed.

Both are for the signed-in practitioner's own practice only, and only where Samtycke
was ever activated (its proof stays after deactivation); anything else is "not found".
Each download records one row in Samtycke's access log (:mod:`samtycke_plugin.access_log`)
naming the practitioner; a request another site makes the browser send without the
practitioner opening it (an image, a script, a fetch) is refused before anything is
read or logged.
A practitioner without :attr:`~hookspecs.types.Permission.EXPORT` gets the app's 403
page saying who may download them, and no links to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from flask import Flask, abort, request, stream_with_context, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response

from hookspecs.types import ClientRef, Permission, TenantRef
from samtycke_plugin import export as samtycke_export
from samtycke_plugin import hostdb, practices, roles
from samtycke_plugin.access_log import Viewer
from samtycke_plugin.errors import PermissionDenied
from samtycke_plugin.export.download import KINDS, Kind
from samtycke_plugin.i18n import t
from samtycke_plugin.web.base import cross_site_fetch, error_page

if TYPE_CHECKING:
    from hookspecs.host import Host
    from samtycke_plugin.integrations.flask import FlaskApps

CLIENT_ENDPOINT = "booking_apps.client_export"
STATUS_ENDPOINT = "booking_apps.status_export"


def has_exports(host: Host, tenant: str) -> bool:
    """Samtycke was ever activated for ``tenant``."""
    with hostdb.session(host) as session:
        return practices.get_practice(session, tenant) is not None


def client_export(
    host: Host, tenant: TenantRef, client: str, kind: Kind, locale: str, *, by: Viewer
) -> Response:
    """A client's consent history as ``kind``: ``html``, ``json``, ``csv`` or ``zip``
    (one access-log row naming ``by``)."""
    download = samtycke_export.client_download(host, tenant, client, kind, by=by, locale=locale)
    response = Response(download.body, mimetype=download.media_type)
    if kind != "html":
        response.headers["Content-Disposition"] = f'attachment; filename="{download.filename}"'
    else:  # a self-contained page with its own inline style
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'")
    return response


def status_export(host: Host, tenant: TenantRef, locale: str, *, by: Viewer) -> Response:
    """The practice's status list as CSV, streamed (the request stays open meanwhile;
    the access-log row is written when the stream starts)."""
    chunks: Iterator[str] = samtycke_export.practice_status_csv(
        host, tenant, by=by, locale=locale)
    response = Response(stream_with_context(chunks), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="samtycke-status.csv"'
    return response


def mount_exports(app: Flask, apps: FlaskApps, prefix: str, locale: Callable[[], str]) -> None:
    """The two download routes under ``prefix`` (e.g. ``/clients``)."""

    def reader() -> tuple[TenantRef, Viewer]:
        who = apps.signed_in()
        if who is None or not has_exports(apps.host, str(who.tenant)):
            abort(404)
        if cross_site_fetch(request):
            abort(403)
        try:
            roles.require(who.staff, Permission.EXPORT)
        except PermissionDenied as refused:
            abort(error_page(403, locale(), t(locale(), str(refused))))
        return TenantRef(str(who.tenant)), Viewer.staff(who.staff, via="download")

    def client_view(client: str, kind: Kind) -> Response:
        practice, by = reader()
        if apps.host.lookup_client(practice, ClientRef(client)) is None:
            abort(404)  # another practice's client, or none: as if it did not exist
        return client_export(apps.host, practice, client, kind, locale(), by=by)

    def status_view() -> Response:
        practice, by = reader()
        return status_export(apps.host, practice, locale(), by=by)

    kinds = f"<any({', '.join(KINDS)}):kind>"
    app.add_url_rule(f"{prefix}/<client>/consent.{kinds}", CLIENT_ENDPOINT, client_view)
    app.add_url_rule(f"{prefix}/consent-status.csv", STATUS_ENDPOINT, status_view)


def export_links(apps: FlaskApps, client: str | None, locale: str) -> Markup:
    """The links to the downloads for the signed-in practitioner: a client's (a section
    for the profile page), or with ``client=None`` the status list; empty where there
    is nothing to export."""
    who = apps.signed_in()
    if who is None or not has_exports(apps.host, str(who.tenant)):
        return Markup()
    if not who.staff.may(Permission.EXPORT):
        if client is None:
            return Markup()
        return Markup(
            '<section class="app-panel" aria-labelledby="samtycke-export-title">\n'
            '<h2 id="samtycke-export-title">{title}</h2>\n<p>{why}</p>\n</section>'
        ).format(title=t(locale, "Export consent history"),
                 why=t(locale, roles.REFUSED[Permission.EXPORT]))
    if client is None:
        return Markup('<a href="{}" download>{}</a>').format(
            url_for(STATUS_ENDPOINT), t(locale, "Export consent status (CSV)"))

    def href(kind: str) -> str:
        return url_for(CLIENT_ENDPOINT, client=client, kind=kind)

    return Markup(
        '<section class="app-panel" aria-labelledby="samtycke-export-title">\n'
        '<h2 id="samtycke-export-title">{title}</h2>\n<ul class="exports">\n'
        '<li><a href="{html}">{printable}</a></li>\n'
        '<li><a href="{zip}" download>{bundle}</a></li>\n'
        '<li><a href="{json}" download>JSON</a> · <a href="{csv}" download>CSV</a></li>\n'
        "</ul>\n</section>"
    ).format(title=t(locale, "Export consent history"), printable=t(locale, "Printable page"),
             bundle=t(locale, "Proof bundle (ZIP)"), html=href("html"), zip=href("zip"),
             json=href("json"), csv=href("csv"))

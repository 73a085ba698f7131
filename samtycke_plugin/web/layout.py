"""Practitioner pages inside the host's own layout, back links and the host's sign-in.

A host that implements :class:`hookspecs.host.PageLayout` gets only the page's body
from the app (the app's menu, notices and content in ``<div class="sp-page">``) and
returns the whole document; otherwise the app serves its own document.  Either way
the response keeps the app's security headers: the host's layout runs under the
app's Content-Security-Policy (:data:`LAYOUT_CSP`), so it may load its own
stylesheets, scripts, images and fonts from the same origin, but no inline script,
no event-handler attribute and nothing from another origin.

Public pages (the client's e-mailed links) never use the host's layout: the client
is not signed in to the host.
"""

from __future__ import annotations

from html import unescape
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from hookspecs.host import PageLayout
from hookspecs.types import AppPage, ClientInfo, StaffContext, TenantRef
from samtycke_plugin.i18n import t
from samtycke_plugin.render import render

if TYPE_CHECKING:
    from hookspecs.host import Host

#: The policy of a page in the host's layout: the app's own policy plus the host's
#: same-origin script and font files (a menu toggle, an icon font); no inline script.
LAYOUT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)

#: Where the title of a page rendered for the host's layout ends (practice_embedded.html).
TITLE_END = "<!--samtycke:title-end-->"


def local_path(value: object) -> str | None:
    """``value`` if it is a root-relative path on this site (``/x``, not ``//x`` or
    ``/\\x``, no control characters), else ``None``: the app links and redirects only
    to the host's own pages."""
    if (
        isinstance(value, str)
        and value.startswith("/")
        and not value.startswith(("//", "/\\"))
        and value.isprintable()
        and " " not in value
    ):
        return value
    return None


def layout_of(host: Host) -> PageLayout | None:
    """The host's page layout, if it offers one."""
    return host if isinstance(host, PageLayout) else None


def client_back(host: Host, tenant: str, client: ClientInfo, locale: str) -> tuple[str, str] | None:
    """``(path, label)`` of the client's profile in the host, when the host offers it."""
    layout = layout_of(host)
    if layout is None:
        return None
    path = local_path(layout.client_path(TenantRef(tenant), client.ref))
    if path is None:
        return None
    return path, t(locale, "Back to %(name)s", name=client.name)


class SignIn(HTTPException):
    """A signed-out visitor of a practitioner page: 303 to the host's sign-in page."""

    code = 303

    def __init__(self, location: str) -> None:
        super().__init__()
        self.location = location

    def get_response(
        self, environ: object = None, scope: object = None
    ) -> Response:
        response = Response(status=303)
        response.headers["Location"] = self.location
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "same-origin"
        return response


def sign_in_redirect(request: Request) -> SignIn | None:
    """The redirect to ``environ["booking.sign_in"]`` with ``next`` set to this page,
    or ``None`` when the host gives no (root-relative) sign-in path."""
    sign_in = local_path(request.environ.get("booking.sign_in"))
    if sign_in is None:
        return None
    # The page's own path on this site: script_root and path come from the host's
    # mount, the leading "/" is collapsed so "next" is never a "//other.site" URL.
    here = "/" + (request.script_root + request.path).lstrip("/\\")
    if request.method in ("GET", "HEAD") and request.query_string:
        here += "?" + request.query_string.decode("latin-1")
    here = quote(here, safe="/?=&%:@-._~+,;")
    separator = "&" if "?" in sign_in else "?"
    return SignIn(sign_in + separator + urlencode({"next": here}))


def render_in_layout(
    host: Host,
    template: str,
    locale: str,
    *,
    tenant: str,
    staff: StaffContext,
    client: ClientInfo | None,
    back: tuple[str, str] | None,
    context: dict[str, object],
) -> str | None:
    """The host's document around the page's body, or ``None`` without a host layout."""
    layout = layout_of(host)
    if layout is None:
        return None
    rendered = render(template, locale, **context, embedded=True, back=back)
    title, found, body = rendered.partition(TITLE_END)
    if not found:
        raise RuntimeError(f"{template} does not extend practice_layout.html")
    page = AppPage(
        # The title block is rendered with autoescape: back to the plain text it says.
        title=" ".join(unescape(title).split()),
        body_html=body.strip(),
        head_html=render("practice_style.html", locale),
        locale=locale,
        tenant=TenantRef(tenant),
        staff=staff,
        client=client.ref if client is not None else None,
        back=back,
    )
    return layout.page_layout(page)

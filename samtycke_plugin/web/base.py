"""Framework-neutral web plumbing (Werkzeug): routing, CSRF, security headers,
transactions and localized error pages.  No host framework is imported.

The host mounts the WSGI app returned by :func:`samtycke_plugin.web.make_wsgi_app`
and sets, on every request it forwards:

* ``environ["booking.host"]``: the :class:`hookspecs.host.Host`;
* for signed-in practitioners, ``environ["booking.tenant"]`` and
  ``environ["booking.staff"]`` (from the host's own session, never from request data),
  and ``environ["booking.session"]``: an opaque string naming the host's sign-in
  session, new at every sign-in.  The app never stores or logs it and only mixes it
  into its CSRF tokens, so a form from an ended session stops working (a host whose
  session key is itself the credential passes a hash of it).  Without it practitioner
  POSTs are refused;
* optionally ``environ["booking.locale"]`` (the page language),
  ``environ["booking.home"]``: ``(path, label)`` of the platform page the
  practitioner came from, shown as a "back" link (a root-relative path), and
  ``environ["booking.sign_in"]``: the root-relative path of the host's sign-in page,
  where a signed-out visitor of a practitioner page is sent (``?next=<the page>``).

What the practitioner may do comes from ``booking.staff``'s permissions
(:class:`hookspecs.types.Permission`): a page of one permission is wrapped in
:func:`requires`, which answers a practitioner without it with a 403 page saying who
may do it, before the page reads or writes anything.

A host that implements :class:`hookspecs.host.PageLayout` gets the practitioner
pages' bodies to put into its own layout (:mod:`samtycke_plugin.web.layout`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from hookspecs.types import Permission, StaffContext
from samtycke_plugin import errors, roles
from samtycke_plugin.attachments import MAX_ATTACHMENT_BYTES
from samtycke_plugin.db import run_in_transaction
from samtycke_plugin.i18n import N_, lang, t
from samtycke_plugin.render import render
from samtycke_plugin.web.forms import FormParser
from samtycke_plugin.web.layout import sign_in_redirect

if TYPE_CHECKING:
    from hookspecs.host import Host

log = logging.getLogger("samtycke.web")

#: Two 20,000-character texts, percent-encoded (up to 9 bytes a character), fit.
MAX_BODY = 512 * 1024
CSRF_FIELD = "csrf_token"
_CSRF_WINDOW = 12 * 3600
#: A host's session id longer than this is not one (it is refused like a missing one).
MAX_SESSION_ID = 512

Handler = Callable[..., Response]

CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


#: A multipart form may carry one attached scan (samtycke_plugin.attachments) besides
#: its fields; a larger body is refused before it is read.
MAX_UPLOAD_BODY = MAX_ATTACHMENT_BYTES + MAX_BODY

TOO_LARGE_UPLOAD = N_(
    "What you sent is larger than 10 MB, so nothing was saved. Go back, scan the form at "
    "a lower resolution or as a PDF, and attach it again."
)


class SamtyckeRequest(Request):
    form_data_parser_class = FormParser  # a broken encoding shows, see web/forms.py
    max_form_memory_size = MAX_BODY  # per field: a file part is not held in memory whole
    max_form_parts = 200

    @property
    def max_content_length(self) -> int:  # type: ignore[override]
        """The body limit: an attached file only comes in a multipart form."""
        return MAX_UPLOAD_BODY if self.mimetype == "multipart/form-data" else MAX_BODY


def host_of(request: Request) -> Host:
    host = request.environ.get("booking.host")
    if host is None:
        raise RuntimeError("the host did not set environ['booking.host']")
    return host  # type: ignore[no-any-return]


def staff_of(request: Request) -> tuple[str, StaffContext]:
    """The signed-in practitioner and their practice, as the host authenticated them.

    Nobody signed in: a 303 to the host's sign-in page (``environ["booking.sign_in"]``)
    with ``next`` set to this page, or "not found" when the host gives none.
    """
    tenant = request.environ.get("booking.tenant")
    staff = request.environ.get("booking.staff")
    if not isinstance(tenant, str) or not isinstance(staff, StaffContext):
        raise sign_in_redirect(request) or NotFound()
    return tenant, staff


def requires(permission: Permission, message: str | None = None) -> Callable[[Handler], Handler]:
    """A page handler for staff with ``permission`` only (every method): anyone else gets
    the 403 page with ``message`` or the permission's refusal
    (:data:`samtycke_plugin.roles.REFUSED`), and nothing is read or written.  The
    wrapped handler carries ``.permission`` so tests can enumerate the guarded routes."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def checked(request: Request, **args: Any) -> Response:
            _tenant, staff = staff_of(request)
            roles.require(staff, permission, message)
            return handler(request, **args)

        checked.permission = permission  # type: ignore[attr-defined]
        return checked

    return wrap


def session_of(request: Request) -> str | None:
    """The host's sign-in session id (``environ["booking.session"]``), or ``None``."""
    session = request.environ.get("booking.session")
    if isinstance(session, str) and 0 < len(session) <= MAX_SESSION_ID:
        return session
    return None


def locale_of(request: Request) -> str:
    explicit = request.environ.get("booking.locale")
    if isinstance(explicit, str) and explicit:
        return lang(explicit)
    best = request.accept_languages.best_match(["sv", "en"])
    return best or "sv"


def _sign(secret: bytes, scope: str, bucket: int) -> str:
    mac = hmac.new(secret, f"csrf|{scope}|{bucket}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def csrf_token(secret: bytes, scope: str, now: float | None = None) -> str:
    """A CSRF token bound to ``scope`` (the signed-in person, or a link), valid 12-24 h."""
    bucket = int((now or time.time()) // _CSRF_WINDOW)
    return _sign(secret, scope, bucket)


def csrf_ok(secret: bytes, scope: str, token: str | None, now: float | None = None) -> bool:
    if not token or len(token) > 100:
        return False
    bucket = int((now or time.time()) // _CSRF_WINDOW)
    return any(hmac.compare_digest(token, _sign(secret, scope, b)) for b in (bucket, bucket - 1))


def _session_sign(secret: bytes, session: str, scope: Sequence[str]) -> str:
    # JSON keeps the parts apart: refs may contain ":" and a host's session id anything.
    message = json.dumps(["csrf-session", session, *scope], ensure_ascii=True).encode()
    mac = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def session_csrf_token(secret: bytes, session: str, scope: Sequence[str]) -> str:
    """A CSRF token bound to the host's sign-in ``session`` and ``scope`` (who, where).

    It has no time window of its own: it works exactly as long as the host's session
    does, and a token of another (ended) session never matches.
    """
    return _session_sign(secret, session, scope)


def session_csrf_ok(
    secret: bytes, session: str, scope: Sequence[str], token: str | None
) -> bool:
    if not token or len(token) > 100:
        return False
    return hmac.compare_digest(token, _session_sign(secret, session, scope))


def cross_site(request: Request, site_url: str) -> bool:
    """Whether the browser says this request comes from another site than ``site_url``.

    ``Sec-Fetch-Site: cross-site``, or an ``Origin`` that is not ``site_url``'s scheme
    and host, is cross-site.  Requests without these headers (non-browser clients,
    older browsers) are not: the CSRF token is the real protection.  ``Origin: null``
    is accepted, because browsers send it for same-origin posts from pages served
    with ``Referrer-Policy: no-referrer`` (and a host may set that on every page); a
    cross-site post from such a page still says ``Sec-Fetch-Site: cross-site``.
    """
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        base = urlsplit(site_url)
        if origin.rstrip("/") != f"{base.scheme}://{base.netloc}":
            return True
    return False


def cross_site_fetch(request: Request) -> bool:
    """Whether another site made the browser send this request without the person
    opening the page (an image, a script, a fetch: ``Sec-Fetch-Site: cross-site`` and
    not a navigation).  A GET that writes an access-log row refuses it, so no other
    site can fill the log in a practitioner's name."""
    headers = request.headers
    return headers.get("Sec-Fetch-Site", "").lower() == "cross-site" and (
        headers.get("Sec-Fetch-Mode", "").lower() != "navigate"
    )


def page(
    template: str,
    locale: str,
    *,
    status: int = 200,
    public: bool = False,
    **context: Any,
) -> Response:
    """An HTML response with the app's security headers."""
    body = render(template, locale, **context)
    response = Response(body, status=status, content_type="text/html; charset=utf-8")
    secure_headers(response, public=public)
    response.headers["Content-Language"] = locale
    return response


def secure_headers(response: Response, *, public: bool, csp: str = CSP) -> Response:
    """The app's headers; ``csp`` is :data:`samtycke_plugin.web.layout.LAYOUT_CSP` for a
    page in the host's layout."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer" if public else "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = csp
    return response


_ERRORS = {
    400: (
        N_("The request could not be understood."),
        N_("Go back, reload the page and try again."),
    ),
    403: (
        N_("You are not allowed to do this."),
        N_("Reload the page and try again, or ask the practice owner for permission."),
    ),
    404: (N_("The page was not found."), N_("Check the address, or go back to the previous page.")),
    405: (
        N_("This page cannot be used like that."),
        N_("Go back and use the buttons on the page."),
    ),
    409: (N_("Something changed while you were working."), N_("Reload the page and try again.")),
    413: (N_("What you sent is too large."), N_("Shorten the text and try again.")),
    429: (N_("Too many attempts."), N_("Wait a few minutes and try again.")),
    500: (
        N_("Something went wrong on our side and nothing was saved."),
        N_("Try again in a moment. If it keeps happening, contact the practice."),
    ),
    503: (
        N_("The service is temporarily unavailable and nothing was saved."),
        N_("Try again in a moment."),
    ),
}


def error_page(code: int, locale: str, message: str | None = None) -> Response:
    what, todo = _ERRORS.get(code, _ERRORS[500])
    return page(
        "error.html",
        locale,
        status=code,
        public=True,
        title=t(locale, what),
        message=message or t(locale, todo),
    )


class WebApp:
    """A tiny WSGI application: a Werkzeug URL map and handlers ``(request, **args)``.

    Each request runs in the host's session; a handler's success commits it, any
    exception rolls it back and becomes a localized error page (never a traceback).
    """

    def __init__(self, routes: Iterable[tuple[str, str, Handler, tuple[str, ...]]]) -> None:
        self.handlers: dict[str, Handler] = {}
        rules = []
        for path, endpoint, handler, methods in routes:
            rules.append(Rule(path, endpoint=endpoint, methods=list(methods)))
            self.handlers[endpoint] = handler
        self.url_map = Map(rules, strict_slashes=False)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = SamtyckeRequest(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: SamtyckeRequest) -> Response:
        locale = locale_of(request)
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
            if request.method == "POST":
                # Size and field-count limits apply to every route before any handler
                # runs (an unknown token or client must not let a huge body through
                # unread): RequestEntityTooLarge → 413, nothing written.
                fields = sum(len(values) for _key, values in request.form.lists())
                if fields > SamtyckeRequest.max_form_parts:  # urlencoded has no part limit
                    raise RequestEntityTooLarge()
            host = host_of(request)
            handler = self.handlers[str(endpoint)]
            # One unit of work per request: committed after a state-changing method,
            # rolled back after GET/HEAD; a transient lock/serialization failure or a
            # dropped connection reruns the whole handler (bounded), then 503.
            return run_in_transaction(
                host,
                lambda _session: handler(request, **args),
                commit=request.method not in ("GET", "HEAD"),
            )
        except HTTPException as exc:
            code = exc.code or 500
            if code in (301, 302, 303, 307, 308):
                return exc.get_response(request.environ)
            if code == 413 and request.mimetype == "multipart/form-data":
                return error_page(code, locale, t(locale, TOO_LARGE_UPLOAD))
            return error_page(code, locale)
        except errors.NotFound:
            return error_page(404, locale)
        except errors.PermissionDenied as exc:
            return error_page(403, locale, t(locale, str(exc)))
        except errors.Conflict as exc:
            return error_page(409, locale, t(locale, str(exc)))
        except errors.NotActive as exc:
            return error_page(404, locale, t(locale, str(exc)))
        except (errors.InputError, errors.SettingsError):
            return error_page(400, locale)
        except errors.Unavailable:
            log.warning(
                "database busy through every retry: %s %s",
                request.method, redact_path(request.path),
            )
            return error_page(503, locale)
        except OperationalError:
            log.exception(
                "database unavailable in %s %s", request.method, redact_path(request.path)
            )
            return error_page(503, locale)
        except Exception:
            log.exception("unhandled error in %s %s", request.method, redact_path(request.path))
            return error_page(500, locale)


def redact_path(path: str) -> str:
    """A path below the app's mount as it may be logged: the first segment only.

    The e-mailed link routes (``/c/<token>``, ``/w/<token>``) carry a capability in
    their second segment, so no log line, the app's or a host's access log, keeps
    it: ``/c/abc`` becomes ``/c/…``.  A host applies this to the part of the path
    after the mount prefix (and drops the query string).
    """
    parts = path.split("?", 1)[0].split("/")
    return "/".join(parts[:2]) + ("/…" if len(parts) > 2 else "")

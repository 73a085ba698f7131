"""The apps' WSGI pages (``booking_web_mounts``) as Django views.

A request below a mount's prefix is translated into a WSGI environ (``SCRIPT_NAME``
ends with the prefix, ``PATH_INFO`` is the rest, the body is handed over whole), the
contract's ``booking.*`` keys are set from Django's own session and settings, and the
app's WSGI response comes back as a Django response (several ``Set-Cookie`` headers
and streamed bodies included).  The views are CSRF-exempt (the app checks its own
tokens, bound to the host's session) and never run inside ``ATOMIC_REQUESTS`` (the
app's pages own their units of work).
"""

from __future__ import annotations

import hashlib
import io
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from http.cookies import SimpleCookie
from types import TracebackType
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import resolve_url
from django.urls import URLPattern, re_path
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt

from hookspecs.types import WebMount
from samtycke_plugin.integrations.django.runtime import Samtycke, current_request, samtycke
from samtycke_plugin.web.base import MAX_BODY, MAX_UPLOAD_BODY

View = Callable[..., HttpResponseBase]
_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _wsgi_str(value: str) -> str:
    """A decoded path as WSGI carries it: its UTF-8 bytes as latin-1 characters."""
    return value.encode("utf-8").decode("latin-1")


def session_ref(request: HttpRequest) -> str | None:
    """A hash of Django's session key (the key itself is the credential): new at every
    sign-in, because ``django.contrib.auth.login`` cycles the key."""
    key = request.session.session_key if hasattr(request, "session") else None
    if not key:
        return None
    return hashlib.sha256(b"booking.session:" + key.encode()).hexdigest()


def request_body(request: HttpRequest) -> bytes:
    """The body the app gets.  Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` guards Django's
    own parsing; the app's pages set their own limits, and a form with an attached scan
    (a multipart body) may be larger than Django's.  A body above Django's limit is
    read here up to one byte past the app's, so the app refuses a larger one (413)."""
    try:
        return request.body
    except RequestDataTooBig:
        multipart = request.content_type == "multipart/form-data"
        return request.read((MAX_UPLOAD_BODY if multipart else MAX_BODY) + 1)


def wsgi_environ(request: HttpRequest, mount: WebMount, apps: Samtycke) -> dict[str, Any]:
    """The environ the app's WSGI application gets for ``request``."""
    environ: dict[str, Any] = {
        k: v for k, v in request.META.items() if not k.startswith(("booking.", "wsgi."))
    }
    body = request_body(request)  # read once here: the app's parser sees exactly these bytes
    script = request.path[: len(request.path) - len(request.path_info)]
    environ.update({
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.scheme or "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": request.META.get("wsgi.errors", sys.stderr),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "REQUEST_METHOD": request.method or "GET",
        "SCRIPT_NAME": _wsgi_str(script.rstrip("/") + mount.prefix),
        "PATH_INFO": _wsgi_str(request.path_info[len(mount.prefix):]),
        "CONTENT_LENGTH": str(len(body)),
        "booking.host": apps.host,
        "booking.locale": translation.get_language() or settings.LANGUAGE_CODE,
        "booking.sign_in": resolve_url(settings.LOGIN_URL),
    })
    home = apps.host.home()
    if home is not None:
        environ["booking.home"] = home
    signed_in = apps.staff(request)  # Django's session, never request data
    session = session_ref(request)
    if signed_in is not None and session is not None:
        environ["booking.tenant"], environ["booking.staff"] = signed_in
        environ["booking.session"] = session
    return environ


class _StartResponse:
    """The ``start_response`` callable: keeps status, headers and ``write()`` output."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.written: list[bytes] = []

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and self.status is not None:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers = status, list(headers)
        return self.written.append


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _streamed(first: list[bytes], rest: Iterator[bytes], result: Iterable[bytes]
              ) -> Iterator[bytes]:
    try:
        yield from first
        yield from rest
    finally:
        _close(result)


def django_response(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]
                    ) -> HttpResponseBase:
    """Run a WSGI application and give its response as a Django response.

    A body with a ``Content-Length`` is read whole; one without is streamed.
    """
    start = _StartResponse()
    result = app(environ, start)
    chunks = iter(result)
    first = list(start.written)
    try:
        while start.status is None:  # start_response may come with the first chunk
            first.append(next(chunks))
    except BaseException:
        _close(result)
        raise
    code, _, reason = start.status.partition(" ")
    headers = start.headers
    response: HttpResponseBase
    if any(name.lower() == "content-length" for name, _value in headers):
        try:
            body = b"".join([*first, *chunks])
        finally:
            _close(result)
        response = HttpResponse(body, status=int(code), reason=reason or None)
    else:
        response = StreamingHttpResponse(
            _streamed(first, chunks, result), status=int(code), reason=reason or None
        )
    for name, value in headers:
        if name.lower() == "set-cookie":
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(value)
            for key, morsel in cookie.items():
                response.cookies[key] = morsel
        elif name.lower() in response.headers and name.lower() != "content-type":
            response.headers[name] = response.headers[name] + ", " + value
        else:
            response.headers[name] = value
    return response


def mount_view(mount: WebMount) -> View:
    """The Django view that forwards ``<prefix>`` and ``<prefix>/...`` to ``mount.app``."""

    @csrf_exempt
    @transaction.non_atomic_requests
    def forward(request: HttpRequest, rest: str = "") -> HttpResponseBase:
        apps = samtycke()
        environ = wsgi_environ(request, mount, apps)
        token = current_request.set(request)
        try:
            return django_response(mount.app, environ)
        finally:
            current_request.reset(token)

    forward.__name__ = "samtycke_mount_" + mount.key.replace(".", "_")
    return forward


def mount_patterns(mounts: Iterable[WebMount] | None = None) -> list[URLPattern]:
    """URL patterns for every app's mounts (their own root-relative prefixes), for a
    URLconf included at the project's root: ``path("", include(...urls))``."""
    patterns = []
    for mount in samtycke().mounts if mounts is None else mounts:
        prefix = re.escape(mount.prefix.lstrip("/"))
        patterns.append(re_path(rf"^{prefix}(?P<rest>/.*)?\Z", mount_view(mount),
                                name=mount.key))
    return patterns

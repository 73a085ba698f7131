"""Sign-in, a session-bound CSRF token and safe redirects."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import redirect, request, session, url_for
from werkzeug.exceptions import BadRequest

from examples.host_app.runtime import current_staff

F = TypeVar("F", bound=Callable[..., Any])
CSRF_FIELD = "csrf_token"


class CSRFError(BadRequest):
    """The form's token is missing or does not belong to this browser session."""


def csrf_token() -> str:
    token = session.get("_csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["_csrf"] = token
    return token


def check_csrf() -> None:
    expected = session.get("_csrf")
    given = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise CSRFError()


def login_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_staff() is None:
            return redirect(url_for("public.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def safe_next(target: str | None, default: str) -> str:
    """Only local paths: never redirect to another site."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return default  # a line break would end the Location header
    return target

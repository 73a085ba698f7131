"""Checks on request data shared by the platform's pages: ids that can exist, whole
numbers in ASCII digits, text a database can store, and e-mail addresses mail can
reach.

``str.isdigit()`` is true for "²" (``int()`` then fails) and "٣" (``int()`` gives 3),
and Werkzeug's ``int`` converter matches ``\\d``, which takes any Unicode digit; the
platform's ids are INTEGER columns (32 bits on PostgreSQL), so a longer number is an
id that cannot exist: 404, not a driver error.  PostgreSQL cannot store NUL in text,
and a browser's broken encoding arrives as U+FFFD: both are refused before any view
runs, naming the field.
"""

from __future__ import annotations

import re
from typing import IO
from urllib.parse import parse_qsl

from email_validator import EmailNotValidError, validate_email
from flask import Request, abort, request
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import BadRequest, NotFound
from werkzeug.formparser import FormDataParser
from werkzeug.routing import BaseConverter

#: The largest id of the platform's tables (INTEGER: 32 bits on PostgreSQL).
MAX_ID = 2**31 - 1

_DIGITS = re.compile(r"[0-9]+")
#: Fields typed on several lines (tab and line breaks allowed there, nowhere else).
MULTILINE = frozenset({"notes"})
#: Fields never stored or searched (a password is only hashed and compared).
UNCHECKED = frozenset({"password"})
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd]")
_CONTROL_LINE = re.compile("[\x00-\x1f\ufffd]")

#: How the error page names a field (the form's own name for anything else); the
#: platform's translations have these labels (its forms show them).
LABELS = {"name": "Name", "email": "E-mail", "phone": "Phone", "notes": "Notes",
          "q": "Search by name or e-mail", "to": "Recipient", "service": "Service",
          "slot": "Time", "locale": "Language", "lang": "Language"}


def whole_number(raw: str | None, *, max_digits: int = 9) -> int | None:
    """``raw`` as a number when it is 1 to ``max_digits`` ASCII digits 0-9, else ``None``."""
    if raw is None or len(raw) > max_digits or not _DIGITS.fullmatch(raw):
        return None
    return int(raw)


def db_id(raw: str | None) -> int | None:
    """An id that can exist in the platform's tables (1 to :data:`MAX_ID`), else ``None``."""
    number = whole_number(raw, max_digits=10)
    return number if number is not None and 0 < number <= MAX_ID else None


class IdConverter(BaseConverter):
    """``<id:client_id>``: ASCII digits naming a row that can exist; other digits do not
    match the route, and a number too large for the column is a 404."""

    regex = r"[0-9]+"
    weight = 50

    def to_python(self, value: str) -> int:
        number = db_id(value)
        if number is None:
            # NotFound, not ValidationError: with the latter, a route of the same path
            # for another method would answer 405 to an id that cannot exist.
            raise NotFound()
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))


class FormParser(FormDataParser):
    """Werkzeug's form parser, but a url-encoded value that is not UTF-8 gets U+FFFD for
    the bad bytes (as a multipart one does) instead of the bytes written back as text
    (``%E4``), so :func:`check_request_text` refuses it instead of it being stored."""

    def parse(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str] | None = None,
    ) -> tuple[IO[bytes], MultiDict[str, str], MultiDict[str, FileStorage]]:
        if mimetype != "application/x-www-form-urlencoded":
            return super().parse(stream, mimetype, content_length, options)
        body = stream.read().decode("utf-8", "replace")  # limited to MAX_CONTENT_LENGTH
        items = parse_qsl(body, keep_blank_values=True, encoding="utf-8", errors="replace")
        return stream, self.cls(items), self.cls()


class PlatformRequest(Request):
    form_data_parser_class = FormParser


class FieldError(BadRequest):
    """A value that cannot be used: the error page names the field and says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_request_text() -> None:
    """Before the platform's own views: a path part with a control character or a broken
    encoding names nothing that exists (404); such a query or form value is a 400 that
    names the field, before anything reads or writes it."""
    # Imported here: i18n needs the runtime, which needs the glue, which uses this module.
    from examples.host_app.i18n import gettext, mark

    for value in (request.view_args or {}).values():
        if isinstance(value, str) and _CONTROL_LINE.search(value):
            abort(404)
    for source in (request.args, request.form):
        for name, value in source.items(multi=True):
            if name in UNCHECKED:
                continue
            pattern = _CONTROL_MULTILINE if name in MULTILINE else _CONTROL_LINE
            if pattern.search(value):
                label = gettext(LABELS[name]) if name in LABELS else name[:40]
                raise FieldError(gettext(mark(
                    "The field “%(field)s” contains a line break, a control character (such "
                    "as NUL) or characters that could not be read, which cannot be used "
                    "there. Nothing was saved. Go back, correct the field and try again."),
                    field=label))


def email_problem(raw: str, invalid: str) -> str | None:
    """Why an e-mail address cannot be used (``invalid``, or why a non-ASCII local part
    is refused: a message to translate), or ``None``.  Without SMTPUTF8 (neither the
    platform's SMTP sending nor the apps' ask for it) an address with non-ASCII letters
    before the @ cannot be delivered to, so it is refused here, saying why."""
    from examples.host_app.i18n import mark  # see check_request_text

    try:
        validate_email(raw, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        if raw.rpartition("@")[0].isascii():
            return invalid
        return mark("E-mail cannot be delivered from here to an address with a letter other "
                    "than a to z before the @ (such as ñ or å). Enter another address.")
    return None

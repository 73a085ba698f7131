"""Checks on values people type and programs send, shared by the pages, the hooks and
the domain modules: whole numbers written in ASCII digits, record ids that fit the database,
and free text a database can store exactly as it was given.

``str.isdigit()`` is true for ``"²"`` (then ``int()`` fails) and for ``"٣"`` (then
``int()`` gives 3), and Werkzeug's ``int`` converter matches ``\\d``, which takes any
Unicode digit: neither is used on request data.  PostgreSQL cannot store NUL in text,
and a browser's broken encoding reaches the app as U+FFFD (Werkzeug's decoder replaces
what is not UTF-8): such text is refused with a reason, never silently changed.
"""

from __future__ import annotations

import re

from samtycke_plugin.errors import InputError
from samtycke_plugin.i18n import N_

#: The largest id the app's tables hold (BIGINT on PostgreSQL, INTEGER on SQLite).
MAX_ID = 2**63 - 1

_DIGITS = re.compile(r"[0-9]+")
#: C0 controls but tab and line breaks (``multiline``), or every one of them.
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_CONTROL_LINE = re.compile("[\x00-\x1f]")
_BROKEN = re.compile("[\ufffd\ud800-\udfff]")

#: Why a text cannot be stored (``InputError`` messages; the pages word their own).
CONTROL = N_(
    "contains a control character (such as NUL), which cannot be stored; remove it and "
    "try again"
)
BROKEN = N_(
    "contains characters that could not be read (the text arrived in a broken encoding); "
    "type it again and try again"
)


def whole_number(raw: object, *, max_digits: int = 18) -> int | None:
    """``raw`` as a number when it is 1 to ``max_digits`` ASCII digits 0-9, else ``None``
    (no sign, no space, no other script's digits, no superscripts)."""
    if not isinstance(raw, str) or len(raw) > max_digits or not _DIGITS.fullmatch(raw):
        return None
    return int(raw)


def record_id(raw: object) -> int | None:
    """An id that can exist in the app's tables (1 to :data:`MAX_ID`), else ``None``."""
    number = whole_number(raw, max_digits=19)
    return number if number is not None and 0 < number <= MAX_ID else None


def text_problem(value: str, *, multiline: bool = True) -> str | None:
    """Why ``value`` cannot be stored as given (:data:`CONTROL` or :data:`BROKEN`), or
    ``None``.  Lone surrogates count as broken: bytes escaped by ``surrogateescape``,
    or a host's JSON (``json.loads('"\\ud800"')``), which no database driver encodes."""
    if (_CONTROL_MULTILINE if multiline else _CONTROL_LINE).search(value):
        return CONTROL
    if _BROKEN.search(value):
        return BROKEN
    return None


def check_text(field: str, value: str, *, multiline: bool = True) -> str:
    """``value`` unchanged, or :class:`InputError` naming ``field`` and saying why."""
    problem = text_problem(value, multiline=multiline)
    if problem is not None:
        raise InputError(field, problem)
    return value

"""The platform's own translations: English source strings, Swedish in :data:`SV`.

(Samtycke ships its own catalogs; this is only the platform's text.)
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from babel.dates import format_date, format_time

from examples.host_app.runtime import current_language
from examples.host_app.scheduling import local
from examples.host_app.translations_sv import SV


def translate(language: str, message: str) -> str:
    return SV.get(message, message) if language == "sv" else message


def gettext(message: str, **params: Any) -> str:
    text = translate(current_language(), message)
    return text % params if params else text


def ngettext(singular: str, plural: str, n: int, **params: Any) -> str:
    text = translate(current_language(), singular if n == 1 else plural)
    return text % {"num": n, **params}


def day_label(value: date | datetime, language: str | None = None) -> str:
    language = language or current_language()
    if isinstance(value, datetime):
        value = local(value).date()
    return format_date(value, "EEEE d MMMM", locale=language)


def time_label(value: datetime, language: str | None = None) -> str:
    return format_time(local(value), "HH:mm", locale=language or current_language())


def when_label(value: datetime, language: str | None = None) -> str:
    return f"{day_label(value, language)} {time_label(value, language)}"


def mark(message: str) -> str:
    """Mark a string for translation where it is defined (translated where shown)."""
    return message




def messages() -> set[str]:
    """Every translatable string of the platform (Python and templates)."""
    import ast
    from pathlib import Path

    from jinja2 import Environment

    root = Path(__file__).parent
    found: set[str] = set()
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            position = {"_": 0, "mark": 0, "gettext": 0, "translate": 1}.get(str(name))
            if position is None or len(node.args) <= position:
                continue
            arg = node.args[position]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
    env = Environment(extensions=["jinja2.ext.i18n"], autoescape=True)
    for path in (root / "templates").glob("*.html"):
        source = path.read_text(encoding="utf-8")
        for _line, _func, message in env.extract_translations(source):  # type: ignore[attr-defined]
            if isinstance(message, str):
                found.add(message)
            elif isinstance(message, tuple):
                found.update(m for m in message if isinstance(m, str))
    return found

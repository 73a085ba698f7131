"""Translations: English source strings, Swedish (and future) catalogs as ``.po``
files read with Babel at run time (no compiled artefacts in the repository)."""

from __future__ import annotations

import io
from functools import cache
from importlib.resources import files
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

SUPPORTED = ("sv", "en")
DEFAULT = "sv"
DOMAIN = "samtycke"


def lang(locale: str | None) -> str:
    """``sv_SE`` → ``sv``; anything unsupported → ``en``; nothing → the default (sv)."""
    if not locale or not isinstance(locale, str):  # a host may pass anything: fall back
        return DEFAULT
    code = locale.replace("-", "_").split("_")[0].lower()
    return code if code in SUPPORTED else "en"


def _catalog(language: str) -> Catalog | None:
    """All ``.po`` files of a language merged (each area of the app keeps its own file)."""
    folder = files("samtycke_plugin") / "locale" / language / "LC_MESSAGES"
    if not folder.is_dir():
        return None
    merged: Catalog | None = None
    for po in sorted(folder.iterdir(), key=lambda p: p.name):
        if not po.name.endswith(".po"):
            continue
        with po.open("rb") as fp:
            catalog = read_po(fp, locale=language, domain=DOMAIN)
        if merged is None:
            merged = catalog
        else:
            for message in catalog:
                if message.id:
                    merged[message.id] = message
    return merged


@cache
def translations(language: str) -> NullTranslations:
    """The catalog for a language (English is the source language)."""
    if language == "en":
        return NullTranslations()
    catalog = _catalog(language)
    if catalog is None:
        return NullTranslations()
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(fp=buf, domain=DOMAIN)


def N_(message: str) -> str:
    """Mark a string for extraction without translating it yet."""
    return message


#: How Babel finds messages: ``t(locale, "…")``, ``tn(locale, "…", "…", n)``, ``N_("…")``
#: in Python, and ``_()``/``ngettext()``/``{% trans %}`` in the Jinja templates.
KEYWORDS = {"t": (2,), "tn": (2, 3), "N_": None, "_": None, "gettext": None, "ngettext": (1, 2)}
METHOD_MAP = [
    ("**/templates/**.html", "jinja2"),
    ("**/templates/**.txt", "jinja2"),
    ("**.py", "python"),
]


def extract_messages() -> dict[str, list[str]]:
    """Every translatable message in the package, with where it was found."""
    from pathlib import Path

    from babel.messages.extract import extract_from_dir

    root = Path(str(files("samtycke_plugin")))
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(root),
        METHOD_MAP,
        keywords=KEYWORDS,
        options_map={"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}},
    ):
        msgid = message if isinstance(message, str) else message[0]
        found.setdefault(msgid, []).append(f"{filename}:{lineno}")
    return found


def missing_translations(language: str = "sv") -> list[str]:
    """Messages without a translation in ``language`` (the i18n test keeps this empty)."""
    catalog = _catalog(language)
    if catalog is None:
        return list(extract_messages())
    missing = []
    for msgid in extract_messages():
        msg = catalog.get(msgid)
        if msg is None or not msg.string or (isinstance(msg.string, tuple) and not all(msg.string)):
            missing.append(msgid)
    return missing


def t(locale: str | None, message: str, **params: Any) -> str:
    """Translate ``message`` into ``locale`` and fill ``%(name)s`` placeholders."""
    text = translations(lang(locale)).gettext(message)
    return text % params if params else text


def tn(locale: str | None, singular: str, plural: str, n: int, **params: Any) -> str:
    """Plural-aware :func:`t`; ``n`` is available as ``%(n)s``."""
    text = translations(lang(locale)).ngettext(singular, plural, n)
    return text % {"n": n, **params}

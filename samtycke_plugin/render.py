"""Jinja2 rendering with autoescape and per-language gettext."""

from __future__ import annotations

import threading
from collections.abc import MutableMapping
from datetime import datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template, select_autoescape
from markupsafe import Markup

from samtycke_plugin.i18n import lang, translations


def _date(value: datetime | None, language: str) -> str:
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d")


def _datetime(value: datetime | None, language: str) -> str:
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M UTC")


#: Templates are compiled on first use, and CPython 3.11 can fail compiling in several
#: threads at once ("SystemError: AST constructor recursion depth mismatch"): a threaded
#: WSGI server's first requests would.  Every template the loader compiles — also a
#: parent or an included template that Jinja loads while rendering — is compiled under
#: this lock.
_COMPILING = threading.RLock()


class _OneAtATimeLoader(PackageLoader):
    """The package's templates, loaded and compiled one at a time."""

    def load(
        self, environment: Environment, name: str,
        globals: MutableMapping[str, Any] | None = None,
    ) -> Template:
        with _COMPILING:
            return super().load(environment, name, globals)


def _new_environment(extensions: list[str]) -> Environment:
    """The app's template settings: package loader, autoescape on, strict undefined."""
    return Environment(
        loader=_OneAtATimeLoader("samtycke_plugin", "templates"),
        autoescape=select_autoescape(
            default=True, default_for_string=True, disabled_extensions=("txt",)
        ),
        undefined=StrictUndefined,
        extensions=extensions,
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates ship inside the package: no stat() of the file on every render.
        auto_reload=False,
    )


@cache
def environment(language: str) -> Environment:
    """One Jinja environment per language (cached): autoescape on for every template."""
    env = _new_environment(["jinja2.ext.i18n"])
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.globals["lang"] = language
    env.filters["date"] = lambda v: _date(v, language)
    env.filters["datetime"] = lambda v: _datetime(v, language)
    return env


@cache
def _template(template: str, language: str) -> Template:
    return environment(language).get_template(f"samtycke/{template}")


def render(template: str, locale: str | None, **context: Any) -> str:
    """Render ``samtycke/<template>`` in the language of ``locale``."""
    return _template(template, lang(locale)).render(**context)


def trusted_html(sanitized: str) -> Markup:
    """Mark HTML that :func:`samtycke_plugin.text.render_html` produced (nh3-sanitized)."""
    return Markup(sanitized)  # noqa: S704 - input is nh3-sanitized at publish time

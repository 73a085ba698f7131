"""Consent texts: shipped defaults, safe rendering, hashing and diffs (pure)."""

from __future__ import annotations

import difflib
import hashlib
import re
import string
from functools import cache
from importlib.resources import files

import nh3
from attrs import frozen
from markdown_it import MarkdownIt

LANGUAGES = ("sv", "en")
MAX_TEXT_LENGTH = 20_000

_md = MarkdownIt("js-default")
_ALLOWED_TAGS = {
    "h1",
    "h2",
    "h3",
    "h4",
    "p",
    "br",
    "hr",
    "ul",
    "ol",
    "li",
    "strong",
    "em",
    "b",
    "i",
    "a",
    "blockquote",
    "code",
    "pre",
}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>])")


@cache
def default_template(language: str) -> str:
    """The shipped default text for a language (``sv`` or ``en``) with placeholders."""
    if language not in LANGUAGES:
        language = "en"
    return (files("samtycke_plugin") / "texts" / f"default_{language}.md").read_text("utf-8")


def _md_literal(value: str) -> str:
    """Escape the Markdown characters that could turn a practice name into markup.

    (Raw HTML is off and links are sanitized anyway; this keeps ``*`` and ``_`` literal.)
    """
    return _MD_SPECIAL.sub(r"\\\1", " ".join(value.split()))


def fill_template(template: str, *, practice_name: str, practice_contact: str) -> str:
    """A shipped text with ``$practice_name`` and ``$practice_contact`` filled in literally."""
    return string.Template(template).safe_substitute(
        practice_name=_md_literal(practice_name),
        practice_contact=_md_literal(practice_contact),
    )


def default_text(language: str, *, practice_name: str, practice_contact: str) -> str:
    """The default text with the practice's name and contact filled in."""
    return fill_template(
        default_template(language), practice_name=practice_name, practice_contact=practice_contact
    )


def normalise_body(body: str) -> str:
    """Line endings and trailing space normalised; NUL and other control characters removed."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    body = "".join(ch for ch in body if ch in "\n\t" or ord(ch) >= 32)
    return "\n".join(line.rstrip() for line in body.split("\n")).strip() + "\n"


def render_html(body: str) -> str:
    """Markdown (raw HTML off) → allow-list sanitized HTML, safe to mark as such."""
    result: str = nh3.clean(
        _md.render(body),
        tags=_ALLOWED_TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https", "mailto", "tel"},
        link_rel="noopener noreferrer nofollow",
    )
    return result


def sha256(body: str) -> str:
    """The SHA-256 of the text as stored (UTF-8)."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@frozen(kw_only=True)
class DiffLine:
    op: str  # " " unchanged, "-" removed, "+" added
    text: str


def diff(old: str, new: str) -> list[DiffLine]:
    """A line diff of two texts (for the practitioner's preview before saving)."""
    out: list[DiffLine] = []
    for line in difflib.ndiff(old.splitlines(), new.splitlines()):
        op, text = line[:1], line[2:]
        if op in (" ", "-", "+"):
            out.append(DiffLine(op=op, text=text))
    return out

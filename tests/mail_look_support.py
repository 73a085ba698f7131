"""Helpers for the tests of what clients receive: the visible text and the URLs of an HTML
part, and the checks that a mail's two parts say the same without Markdown or outside
resources."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from smtp_support import Received

from hookspecs.types import OutgoingEmail

#: What Markdown leaves in a text that was not rendered.
#: Markdown left in a text.  ``__`` counts only as an opening or closing marker (a space
#: on its outer side): inside a word it is part of a link's token (base64url has ``_``).
MARKDOWN_MARKERS = re.compile(
    r"(^|\n)\s*#{1,6}\s|\*\*|(^|\s)__\S|\S__(\s|$)|\]\(|`|(^|\n)\s*[-*+]\s"
)


class Visible(HTMLParser):
    """The text a reader sees in an HTML part, and every URL it points at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.urls: list[str] = []
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        if tag in ("head", "style", "title"):
            self._skip += 1
        for name, value in attrs:
            if name in ("href", "src", "background", "action", "srcset") and value:
                self.urls.append(value)
        if tag in ("p", "li", "h1", "h2", "h3", "br", "div", "hr"):
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "title"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(data)


def visible(html: str) -> tuple[str, list[str]]:
    parser = Visible()
    parser.feed(html)
    return " ".join("".join(parser.chunks).split()), parser.urls


def words(text: str) -> str:
    return " ".join(text.split())


def plain_lines(text: str) -> list[str]:
    """The lines of a text part that carry content (decoration and bullets stripped)."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip().removeprefix("• ").strip("- ").strip()
        if line and not set(line) <= set("-—"):
            lines.append(words(line))
    return lines


def assert_equivalent(mail: Received | OutgoingEmail) -> tuple[str, str]:
    """Every line of the text part is in the HTML part's visible text; returns both."""
    text = mail.text.replace("\r\n", "\n")
    html = mail.html
    assert html is not None
    seen, _urls = visible(html)
    for line in plain_lines(text):
        assert line in seen, f"text line missing from the HTML part: {line!r}"
    return text, seen


def assert_no_external_resources(html: str, base_url: str) -> None:
    _seen, urls = visible(html)
    assert urls, "the mail links to nothing"
    for url in urls:
        assert url.startswith((base_url + "/", "mailto:")), url
    lowered = html.lower()
    for resource in ("<img", "<link", "<script", "<style", "url(", "@import", " src="):
        assert resource not in lowered, resource

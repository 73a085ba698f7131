"""Form input on the app's pages: parsing that keeps a broken encoding visible, and
the sentences for fields that cannot be used as sent.

Werkzeug decodes a multipart field that is not UTF-8 with U+FFFD in place of the bad
bytes, but a url-encoded one with the bad bytes written back as text (``%E4``), which
would be stored as if the practitioner had typed it.  Here both become U+FFFD, which
:func:`samtycke_plugin.inputs.text_problem` refuses with a reason.
"""

from __future__ import annotations

from typing import IO
from urllib.parse import parse_qsl

from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.formparser import FormDataParser

from samtycke_plugin.common import MAX_NOTE
from samtycke_plugin.i18n import N_, t
from samtycke_plugin.inputs import BROKEN, CONTROL, text_problem

URLENCODED = "application/x-www-form-urlencoded"


class FormParser(FormDataParser):
    """:class:`~werkzeug.formparser.FormDataParser`, with url-encoded bodies decoded
    with U+FFFD for what is not UTF-8 (as multipart parts are)."""

    def parse(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str] | None = None,
    ) -> tuple[IO[bytes], MultiDict[str, str], MultiDict[str, FileStorage]]:
        if mimetype != URLENCODED:
            return super().parse(stream, mimetype, content_length, options)
        # The stream is already limited to the request's max_content_length.
        body = stream.read().decode("utf-8", "replace")
        items = parse_qsl(body, keep_blank_values=True, encoding="utf-8", errors="replace")
        return stream, self.cls(items), self.cls()


#: A hidden field that only a damaged or forged form gets wrong.
DAMAGED_FIELD = N_(
    "The form was damaged: its field “%(field)s” must be a whole number written with the "
    "digits 0-9. Reload the page and try again."
)
#: Why a note or a reason cannot be saved as typed (see :mod:`samtycke_plugin.inputs`).
TEXT_PROBLEMS = {
    ("note", CONTROL): N_(
        "The note contains a control character (such as NUL), which cannot be saved. "
        "Remove it and try again."
    ),
    ("note", BROKEN): N_(
        "The note contains characters that could not be read (it arrived in a broken "
        "encoding). Write the note again and send the form."
    ),
    ("reason", CONTROL): N_(
        "The reason contains a control character (such as NUL), which cannot be saved. "
        "Remove it and try again."
    ),
    ("reason", BROKEN): N_(
        "The reason contains characters that could not be read (it arrived in a broken "
        "encoding). Write the reason again and send the form."
    ),
}


def damaged_field(locale: str, field: str) -> str:
    """The 400 page's sentence for a hidden field that was not what the page put there."""
    return t(locale, DAMAGED_FIELD, field=field)


def free_text_error(locale: str, kind: str, value: str, *, limit: str) -> str | None:
    """Why a note (``kind`` "note") or a reason cannot be saved as typed, or ``None``;
    ``limit`` is :data:`~samtycke_plugin.common.MAX_NOTE` as the page writes numbers."""
    if len(value.strip()) > MAX_NOTE:
        if kind == "note":
            return t(
                locale, "The note is too long: shorten it to at most %(max)s characters.",
                max=limit,
            )
        return t(
            locale, "The reason is too long: shorten it to at most %(max)s characters.",
            max=limit,
        )
    problem = text_problem(value)
    return None if problem is None else t(locale, TEXT_PROBLEMS[kind, problem])

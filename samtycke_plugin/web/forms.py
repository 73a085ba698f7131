"""Form parsing for the app's pages that keeps a broken encoding visible.

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

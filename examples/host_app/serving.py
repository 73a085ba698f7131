"""The development server's request handler, with an access log that keeps no tokens.

Werkzeug logs every request line, path and query string included.  The apps' e-mailed
links carry a capability in their path and the platform's "book again" link one in
its query string, so this handler logs the path as ``Apps.log_path`` gives it.  A real
host configures its own server's access log the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from werkzeug.serving import WSGIRequestHandler


def redacting_handler(log_path: Callable[[str], str]) -> type[WSGIRequestHandler]:
    """A request handler class whose access-log lines show ``log_path(path)``."""

    class RedactingRequestHandler(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if not hasattr(self, "path"):  # a malformed request line: log none of it
                kept, self.requestline = self.requestline, "(malformed request line)"
                try:
                    super().log_request(code, size)
                finally:
                    self.requestline = kept
                return
            original = self.path
            self.path = log_path(original)
            try:
                super().log_request(code, size)
            finally:
                self.path = original

    return RedactingRequestHandler

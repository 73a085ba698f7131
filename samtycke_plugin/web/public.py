"""Public pages reached from e-mailed links (no login): consent and withdrawal."""

from __future__ import annotations

from samtycke_plugin.web.base import Handler

#: (path, endpoint, handler, methods) — filled in by the e-mail flow.
ROUTES: list[tuple[str, str, Handler, tuple[str, ...]]] = []

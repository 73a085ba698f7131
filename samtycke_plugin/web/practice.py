"""Practitioner pages (signed in through the host): setup, obtain consent, texts, history."""

from __future__ import annotations

from samtycke_plugin.web.base import Handler

#: (path, endpoint, handler, methods).
ROUTES: list[tuple[str, str, Handler, tuple[str, ...]]] = []

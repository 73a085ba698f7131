"""A guard on the app's one write path, installed for the whole suite (``conftest.py``).

Every statement that writes a ledger event or a projection row is traced back to the
innermost frame of the app's own code.  Inside the app only
``samtycke_plugin.ledger.append`` inserts events, and only
``samtycke_plugin.ledger._write_projection`` touches ``samtycke_consent_state``
(appends, delivery outcomes and rebuilds all go through it); any other app function
that does so is recorded as a violation and fails the test that ran it.  Writes made by test code
itself (tampering on purpose) and by the app's migrations are not the app's write path.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from attrs import frozen
from sqlalchemy import Engine, event

import samtycke_plugin

PACKAGE = Path(samtycke_plugin.__file__).resolve().parent
LEDGER = PACKAGE / "ledger.py"
MIGRATIONS = PACKAGE / "migrations"

_WRITE = re.compile(
    r'^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(samtycke_consent_event|samtycke_consent_state)\b',
    re.IGNORECASE,
)
#: The one function (in ledger.py) that writes each table: one appender of ledger
#: events, one writer of the projection.
WRITERS = {
    "samtycke_consent_event": "append",
    "samtycke_consent_state": "_write_projection",
}
ALLOWED = set(WRITERS.items())


@frozen
class Write:
    table: str
    path: Path
    function: str

    @property
    def allowed(self) -> bool:
        return self.path == LEDGER and (self.table, self.function) in ALLOWED


class Guard:
    def __init__(self) -> None:
        self.writes: list[Write] = []

    def violations(self) -> list[Write]:
        return [w for w in self.writes if not w.allowed]

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        match = _WRITE.match(statement)
        if match is None:
            return
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            path = Path(frame.f_code.co_filename)
            if path.is_relative_to(PACKAGE):
                if not path.is_relative_to(MIGRATIONS):
                    self.writes.append(Write(match.group(1).lower(), path, frame.f_code.co_name))
                return
            frame = frame.f_back


GUARD = Guard()


def install() -> None:
    if not event.contains(Engine, "before_cursor_execute", GUARD):
        event.listen(Engine, "before_cursor_execute", GUARD)


@contextmanager
def suspended() -> Iterator[None]:
    """No guard inside the block: for tests that need an engine nothing observes."""
    event.remove(Engine, "before_cursor_execute", GUARD)
    try:
        yield
    finally:
        install()


@contextmanager
def recording() -> Iterator[list[Write]]:
    """The app's writes to the two tables made inside the block."""
    start = len(GUARD.writes)
    seen: list[Write] = []
    try:
        yield seen
    finally:
        seen.extend(GUARD.writes[start:])

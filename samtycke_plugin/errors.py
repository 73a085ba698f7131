"""Errors the app raises for callers (hosts, pages, the CLI)."""

from __future__ import annotations


class SamtyckeError(Exception):
    """Base class: the message is a sentence a person can act on (English)."""


class SettingsError(SamtyckeError, ValueError):
    """Settings from the host or a form were invalid; ``problems`` names each field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("Invalid Samtycke settings: " + "; ".join(problems))


class InputError(SamtyckeError, ValueError):
    """A value given to the app was invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class NotActive(SamtyckeError):
    """The app is not active for this practice."""


class NotFound(SamtyckeError):
    """No such object in this practice (also used for other practices' objects)."""


class PermissionDenied(SamtyckeError):
    """The signed-in person may not do this."""


class Conflict(SamtyckeError):
    """The action conflicts with the current state (e.g. the text changed meanwhile)."""


class Unavailable(SamtyckeError):
    """The database stayed busy or unreachable through the bounded retries; nothing
    was saved and trying again later is safe."""

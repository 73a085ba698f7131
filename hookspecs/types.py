"""Frozen, keyword-only value objects exchanged between a host and its apps.

Keys returned by apps are namespaced (``samtycke.consent``) so two apps can
never collide silently: the facade rejects duplicates.  HTML carried by a
fragment is already escaped/sanitized by the app that produced it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NewType

from attrs import field, frozen, validators

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

TenantRef = NewType("TenantRef", str)
ClientRef = NewType("ClientRef", str)
BookingRef = NewType("BookingRef", str)
StaffRef = NewType("StaffRef", str)

_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


def _namespaced(_inst: object, attribute: Any, value: str) -> None:
    if not _KEY.match(value):
        raise ValueError(
            f"{attribute.name} must be a namespaced key like 'app.thing', got {value!r}"
        )


@frozen(kw_only=True)
class AppInfo:
    """An app's entry in the host's app menu."""

    key: str
    name: Mapping[str, str]
    description: Mapping[str, str]
    version: str
    #: Path (below the app's web mount) of the page a practitioner sees after activation.
    setup_path: str | None = None


@frozen(kw_only=True)
class ClientInfo:
    """What the host tells an app about one client."""

    ref: ClientRef
    name: str
    email: str | None
    locale: str


@frozen(kw_only=True)
class PracticeInfo:
    """What the host tells an app about one practice (tenant)."""

    ref: TenantRef
    name: str
    email: str | None
    phone: str | None
    locale: str


@frozen(kw_only=True)
class StaffContext:
    """The signed-in practitioner on whose behalf a host calls a hook."""

    ref: StaffRef
    name: str
    #: May this person record consent given outside the app (paper, verbal)?
    can_record_consent: bool


@frozen(kw_only=True)
class BookingFormContext:
    """The online booking form being rendered."""

    tenant: TenantRef
    #: The client, when the host already knows who is booking; ``None`` for a new client.
    client: ClientRef | None
    locale: str


@frozen(kw_only=True)
class BookingSubmission:
    """A booking the host is about to accept (check) or has just written (record)."""

    tenant: TenantRef
    #: The client, or ``None`` in the check phase when the host has not created the client yet.
    client: ClientRef | None
    #: True when this is the client's first booking with the practice.
    is_new_client: bool
    #: ``"online"`` for the public booking page, ``"staff"`` for a booking made by staff.
    channel: Literal["online", "staff"]
    #: The submitted form fields (strings, as posted).
    fields: Mapping[str, str]
    locale: str
    #: The client's IP address as the host saw it (the app truncates it), or ``None``.
    ip_address: str | None
    user_agent: str | None


@frozen(kw_only=True)
class FormFragment:
    """A block of fields or notices an app adds to the booking form."""

    key: str = field(validator=_namespaced)
    #: Already-escaped HTML.
    html: str
    #: Form field names this fragment posts.
    field_names: tuple[str, ...]
    required: bool
    order: int = 500


@frozen(kw_only=True)
class Veto:
    """A reason the booking may not be accepted as submitted."""

    key: str = field(validator=_namespaced)
    #: A sentence for the client, in the submission's locale, saying what to do.
    message: str
    #: The form field the message belongs to, if any.
    field_name: str | None
    #: True when trying again later may succeed (e.g. a temporary failure).
    retryable: bool


@frozen(kw_only=True)
class ProfilePanel:
    """A badge and an actions block for the client profile page."""

    key: str = field(validator=_namespaced)
    #: Status of the panel in a word a host may style on: ok, warn, missing, error.
    tone: Literal["ok", "warn", "missing", "error"]
    #: Short plain-text label (for hosts that only show a badge).
    label: str
    #: Already-escaped HTML (badge, reason, actions).
    html: str


@frozen(kw_only=True)
class ListFilter:
    """A filter an app offers on the host's client list."""

    key: str = field(validator=_namespaced)
    label: str


@frozen(kw_only=True)
class RowBadge:
    """A badge for one row of the host's client list."""

    key: str = field(validator=_namespaced)
    client: ClientRef
    tone: Literal["ok", "warn", "missing", "error"]
    label: str
    #: Already-escaped HTML.
    html: str


@frozen(kw_only=True)
class WebMount:
    """A WSGI application an app asks the host to mount under ``prefix``."""

    key: str = field(validator=_namespaced)
    prefix: str = field(validator=validators.matches_re(r"^/[a-z0-9/_-]+$"))
    app: Callable[..., Any]


@frozen(kw_only=True)
class OutgoingEmail:
    """An e-mail an app asks the host to deliver."""

    to: str
    subject: str
    text: str
    html: str | None
    #: Stable Message-ID: a resend of the same message carries the same id.
    message_id: str
    headers: Mapping[str, str] = field(factory=dict)


@frozen(kw_only=True)
class DeliveryResult:
    """What the host's mailer did with an :class:`OutgoingEmail`."""

    status: Literal["sent", "retry", "rejected"]
    detail: str = ""


@frozen(kw_only=True)
class FilterClause:
    """A SQL condition on the host's client-ref column (SQLAlchemy expression)."""

    key: str = field(validator=_namespaced)
    clause: ColumnElement[bool]


@frozen(kw_only=True)
class ClientCreated:
    """A client the host has just created (inside its transaction)."""

    tenant: TenantRef
    client: ClientRef
    #: ``"online"`` (created by an online booking) or ``"staff"``.
    created_by: Literal["online", "staff"]
    at: datetime

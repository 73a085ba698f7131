"""Frozen, keyword-only value objects exchanged between a host and its apps.

Keys returned by apps are namespaced (``samtycke.consent``) so two apps can
never collide silently: the facade rejects duplicates.  HTML carried by a
fragment is already escaped/sanitized by the app that produced it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, NewType

from attrs import Factory, field, frozen, validators

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
    #: Root-relative path of the page a practitioner sees after activation (the app's
    #: web-mount prefix included: link to it as it is), or ``None``.
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


class Permission(enum.Enum):
    """Something a staff member may do in an app; the host maps its own roles onto these.

    The values are stable names a host may keep in its settings (``"record_consent"``).
    """

    #: Record consent given outside the app (paper, verbal) and end a consent on the
    #: practice's side.
    RECORD_CONSENT = "record_consent"
    #: Change the app's settings, the consent texts and the purposes: what clients are
    #: asked and how.
    MANAGE_SETTINGS = "manage_settings"
    #: Send a consent request to many clients at once (batch requests).
    SEND_BATCH = "send_batch"
    #: See a client's consent history (and an app's access log).
    VIEW_HISTORY = "view_history"
    #: Download consent records: a client's history and proof bundle, the practice's
    #: status list (and an app's access log).
    EXPORT = "export"

    @classmethod
    def parse(cls, names: Iterable[Permission | str]) -> frozenset[Permission]:
        """The permissions named in a host's settings; an unknown name is a ``ValueError``
        (a typo in a role mapping must not silently grant or drop anything)."""
        if isinstance(names, str):
            raise ValueError("permissions must be a list of names, not one string")
        return frozenset(n if isinstance(n, Permission) else cls(n) for n in names)


#: Every permission: what a practice's owner usually has.
ALL_PERMISSIONS: frozenset[Permission] = frozenset(Permission)


def _permission_set(names: Iterable[Permission | str]) -> frozenset[Permission]:
    return Permission.parse(names)


def _legacy_permissions(staff: StaffContext) -> frozenset[Permission]:
    return frozenset({Permission.RECORD_CONSENT}) if staff.can_record_consent else frozenset()


@frozen(kw_only=True)
class StaffContext:
    """The signed-in practitioner on whose behalf a host calls a hook.

    ``permissions`` says what this person may do in the app (see :class:`Permission`).
    A host that gives only ``can_record_consent`` (the older contract) gets exactly
    ``{RECORD_CONSENT}`` for ``True`` and nothing for ``False``; a host that gives
    neither gets no permission at all.  Nothing is the default because a host that has
    not said who may change the app's settings, texts and purposes, mail every client
    or download everyone's records must not have granted it by omission: such a staff
    member still sees consent status and can send one client a request or record a
    withdrawal the client asked for, and every refused action says who may do it.
    Given ``permissions``, ``can_record_consent`` follows from them (passing ``True``
    with permissions that lack ``RECORD_CONSENT`` is a contradiction: ``ValueError``).
    """

    ref: StaffRef
    name: str
    #: May this person record consent given outside the app (paper, verbal)?  The same
    #: as ``Permission.RECORD_CONSENT in permissions``.
    can_record_consent: bool = False
    permissions: frozenset[Permission] = field(
        default=Factory(_legacy_permissions, takes_self=True), converter=_permission_set
    )

    def __attrs_post_init__(self) -> None:
        recorded = Permission.RECORD_CONSENT in self.permissions
        if self.can_record_consent and not recorded:
            raise ValueError("can_record_consent=True but permissions lack RECORD_CONSENT")
        # Frozen: the derived flag is set once, here, for readers of the older field.
        object.__setattr__(self, "can_record_consent", recorded)

    def may(self, permission: Permission) -> bool:
        """Whether this person may do ``permission``."""
        return permission in self.permissions


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
    #: What the host knows about who is booking online (all optional; an older host that
    #: gives none keeps working).  ``True``: the booker is signed in as this client (their
    #: account, or a personal booking link the host mailed them); ``False``: not signed
    #: in (the host matched the client by the e-mail address typed); ``None``: unsaid.
    #: A consent app may record consent ticked by a booker who is not signed in, or who
    #: typed another name than the client's on record, as unconfirmed until the client
    #: confirms it by e-mail.  Pass the same submission to check and record: ``client``
    #: set in the check phase tells that the booking is for a client the host had.
    booker_signed_in: bool | None = None
    #: The name the booker typed in the form, as typed (``None``: not asked or unsaid).
    #: Compared with the client's name on record (:class:`ClientInfo`), so pass it even
    #: when the host keeps the client's stored name.
    booker_name: str | None = None
    #: The e-mail address the booker typed, as typed (``None``: not asked or unsaid).
    #: Mail about the consent goes to the client's address on record, never to this one.
    booker_email: str | None = None


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


#: A bound-parameter placeholder in :class:`SqlText`: ``:name``.
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


@frozen(kw_only=True)
class SqlText:
    """A piece of SQL with bound parameters, usable by any SQL layer.

    ``sql`` names its parameters ``:name`` (the style of SQLAlchemy's ``text()`` and
    ``sqlite3``); ``params`` holds their values as plain ``str``, ``int``, ``bool`` or
    ``None``, already in the form the app stores (times are the app's own text or
    timestamp values, so no driver converter of the host touches them).  Whoever
    produces one writes no string literal, comment or ``%`` into ``sql``: every value
    is a parameter.  :meth:`format_style` gives the ``%s`` form Django and psycopg take.
    """

    sql: str
    params: Mapping[str, object] = field(factory=dict)

    def format_style(self) -> tuple[str, list[object]]:
        """``(sql, params)`` with ``%s`` placeholders in order (Django ``RawSQL``,
        ``cursor.execute`` of psycopg and Django)."""
        ordered: list[object] = []

        def one(match: re.Match[str]) -> str:
            ordered.append(self.params[match.group(1)])
            return "%s"

        return _PLACEHOLDER.sub(one, self.sql), ordered


@frozen(kw_only=True)
class FilterClause:
    """A SQL condition for the host's client query: true for the clients the filter keeps.

    ``condition.sql`` contains the host's own client-ref expression (the
    ``client_ref_column`` the host passed) and nothing else of the host's.
    """

    key: str = field(validator=_namespaced)
    condition: SqlText


@frozen(kw_only=True)
class ClientSelect(SqlText):
    """A host's ``SELECT`` of one practice's clients, with the columns ``ref``, ``name``
    and ``email`` (see :meth:`hookspecs.host.ClientQuery.client_query`)."""


@frozen(kw_only=True)
class AppPage:
    """A practitioner page of an app, handed to the host's layout
    (:meth:`hookspecs.host.PageLayout.page_layout`)."""

    #: Plain text for ``<title>`` and the page heading (the host escapes it).
    title: str
    #: The page's content: already-escaped HTML.
    body_html: str
    #: Already-escaped HTML for the document's ``<head>`` (the app's stylesheet).
    head_html: str
    locale: str
    tenant: TenantRef
    staff: StaffContext
    #: The client the page concerns, if any.
    client: ClientRef | None = None
    #: ``(path, label)`` of the page to go back to (plain text label), if any.
    back: tuple[str, str] | None = None


class NoHostTransaction(RuntimeError):
    """A write hook was called while the host's connection would commit each statement
    on its own.  Call write hooks inside the host's open transaction."""


@frozen(kw_only=True)
class ClientCreated:
    """A client the host has just created (inside its transaction)."""

    tenant: TenantRef
    client: ClientRef
    #: ``"online"`` (created by an online booking) or ``"staff"``.
    created_by: Literal["online", "staff"]
    at: datetime


class UnknownPurpose(ValueError):
    """A consent lookup named a purpose the practice does not have (see
    :meth:`hookspecs.spec.BookingSpecs.booking_consent_lookup`)."""


@frozen(kw_only=True)
class ConsentAnswer:
    """Whether a client's data may be used for a purpose now (a consent app's answer)."""

    #: True only while the client's consent to the purpose is valid now.
    may_use: bool
    #: The consent app's status word: ``valid``, ``outdated`` (given for an older text),
    #: ``expired``, ``withdrawn``, ``refused``, ``requested``, ``unconfirmed`` (ticked in
    #: an online booking, waiting for the client to confirm it by e-mail), ``unknown``
    #: (nothing recorded), … Treat any word other than ``valid`` as "not now".
    status: str
    #: When the client's current state began (``None``: nothing recorded).
    since: datetime | None
    #: When a valid consent lapses (``None``: it does not, or no consent).
    expires_at: datetime | None


@frozen(kw_only=True)
class ConsentChange:
    """A client's consent to a purpose changed, and the change is committed."""

    tenant: TenantRef
    client: ClientRef
    #: The purpose's key, e.g. ``care`` (the practice's first purpose).
    purpose: str
    #: The status after the change, read after commit (as :attr:`ConsentAnswer.status`).
    status: str
    may_use: bool
    since: datetime | None
    expires_at: datetime | None

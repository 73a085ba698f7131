"""The booking apps in a Flask + SQLAlchemy host: what every such host would otherwise
write by hand.

Needs Flask, which the app itself does not depend on: install the ``demo`` extra
(``pip install 'samtycke-plugin[demo]'``) or use the host's own Flask.  Only this
module imports Flask; nothing else in ``samtycke_plugin`` does, so import it only from
a Flask host.

* :class:`FlaskHost`: a base class implementing the generic part of
  :class:`hookspecs.host.Host` over the host's ``scoped_session`` (the hooks' DB-API
  connection, the app's own units of work, time, URLs, secrets, e-mail); a host adds
  ``lookup_client``, ``iter_clients`` and ``practice_info`` (and optionally
  ``client_query``, ``page_layout`` and ``client_path``).
* :class:`FlaskApps`: the plugin manager and :class:`hookspecs.facade.AppHooks`, the
  calls a booking flow makes (taking the host's plain ids), the apps' HTML as
  ``Markup`` for Jinja, the list filter as a SQLAlchemy condition, the apps' WSGI
  pages mounted into Flask, the e-mail relay and batch jobs (a worker thread,
  :mod:`~samtycke_plugin.integrations.flask_worker`) and Samtycke's downloads
  (:mod:`~samtycke_plugin.integrations.flask_exports`).

Every HTML string marked safe here is HTML the app has escaped or sanitized itself
(the contract's ``FormFragment.html``, ``ProfilePanel.html``, ``RowBadge.html``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from attrs import frozen
from flask import Flask, request
from markupsafe import Markup
from sqlalchemy import ColumnElement, String, cast
from sqlalchemy.orm import Session, scoped_session

from hookspecs.facade import AppHooks, make_plugin_manager
from hookspecs.host import StaffDirectory
from hookspecs.types import (
    BookingFormContext,
    BookingRef,
    BookingSubmission,
    ClientCreated,
    ClientInfo,
    ClientRef,
    DeliveryResult,
    OutgoingEmail,
    Permission,
    PracticeInfo,
    StaffContext,
    StaffRef,
    TenantRef,
    UnknownPurpose,
    Veto,
)
from samtycke_plugin.email import relay as samtycke_relay
from samtycke_plugin.integrations import flask_exports, flask_mount
from samtycke_plugin.integrations.flask_mount import MOUNT_ENDPOINT as MOUNT_ENDPOINT
from samtycke_plugin.integrations.flask_worker import AppsWorker
from samtycke_plugin.integrations.sqlalchemy import (  # noqa: F401 - re-exported for hosts
    dbapi_of,
    filter_condition,
    in_pages,
    on_commit,
    prepare_engine,
    session_unit_of_work,
    upgrade_apps,
)
from samtycke_plugin.integrations.sqlalchemy_tables import ActivationColumns, TableClients
from samtycke_plugin.roles import role_permissions as role_permissions

log = logging.getLogger("samtycke.integrations.flask")

#: A tenant or client reference as a host holds it: its own id (``str(id)`` is the ref).
Ref = str | int


@frozen(kw_only=True)
class Practitioner:
    """The signed-in practitioner as the host's own sign-in knows them.

    ``permissions`` is what this person may do in the apps: the host maps its own role
    onto them, e.g. ``permissions=role_permissions(ROLES, staff.role)`` with
    ``ROLES = {"owner": ["*"], "staff": ["record_consent"]}`` in the host's settings
    (:func:`samtycke_plugin.roles.role_permissions`).  A host that passes only
    ``can_record_consent`` gets that one permission (``True``) or none; one that passes
    neither gets none (see :class:`hookspecs.types.StaffContext`).
    """

    tenant: Ref
    #: The person's id and name.
    ref: Ref
    name: str
    #: Names the host's sign-in session, new at every sign-in (``environ["booking.session"]``).
    session: str
    #: The older contract's one permission (recording consent given outside the app).
    can_record_consent: bool = False
    permissions: Iterable[Permission | str] | None = None

    @property
    def staff(self) -> StaffContext:
        if self.permissions is None:
            return StaffContext(ref=StaffRef(str(self.ref)), name=self.name,
                                can_record_consent=self.can_record_consent)
        return StaffContext(ref=StaffRef(str(self.ref)), name=self.name,
                            can_record_consent=self.can_record_consent,
                            permissions=Permission.parse(self.permissions))


class Fragment(NamedTuple):
    """A booking-form fragment for a Jinja template (``{% for key, html, names in ... %}``)."""

    key: str
    html: Markup
    field_names: tuple[str, ...]


class FlaskHost:
    """The generic part of :class:`hookspecs.host.Host` for a Flask + SQLAlchemy host.

    ``sessions`` is the host's request-scoped (thread-scoped) session.  Hooks write
    through its connection inside the host's transaction (the host commits).  The app's
    own work (its pages, the mail relay, exports) runs as a unit of work on the same
    session, committed when it ends: so the host's own reads it calls back into
    (``lookup_client``, ``page_layout``) share its transaction instead of waiting for
    its lock on SQLite.  Start app work only while the session holds no pending work
    of the host's (:meth:`FlaskApps.mount` and :meth:`FlaskApps.send_outbox` see to it).
    """

    def __init__(
        self,
        sessions: scoped_session[Session],
        *,
        secret_key: bytes,
        base_url: str,
        clock: Callable[[], datetime] | None = None,
        mailbox: Callable[[FlaskHost, TenantRef, OutgoingEmail], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.mailbox = mailbox
        self.secret_key = secret_key
        self.base_url = base_url.rstrip("/")
        self.clock = clock or (lambda: datetime.now(UTC))

    def session(self) -> Session:
        """The request's ORM session (the host's own reads in its Host methods)."""
        return self.sessions()

    def connection(self) -> Any:
        return dbapi_of(self.sessions())

    def unit_of_work(self) -> AbstractContextManager[Any]:
        return session_unit_of_work(self.sessions())

    def on_commit(self, callback: Callable[[], None]) -> None:
        on_commit(self.sessions(), callback)

    def now(self) -> datetime:
        return self.clock()

    def absolute_url(self, tenant: TenantRef, path: str) -> str:
        return self.base_url + path  # from configuration, never from the request

    def app_secret(self, app: str) -> bytes:
        return hmac.new(self.secret_key, b"app-secret:" + app.encode(), hashlib.sha256).digest()

    def deliver_email(self, tenant: TenantRef, message: OutgoingEmail) -> DeliveryResult | None:
        """With a ``mailbox`` (the host's own mail, e.g. a development mailbox) the message
        goes there; without, ``None``: the app uses its own SMTP transport."""
        if self.mailbox is None:
            return None
        self.mailbox(self, tenant, message)
        return DeliveryResult(status="sent", detail="the host's mailbox")

    # -- the host's own data: every host implements these ---------------------------------

    def lookup_client(self, tenant: TenantRef, client: ClientRef) -> ClientInfo | None:
        raise NotImplementedError(f"{type(self).__name__} must implement lookup_client")

    def iter_clients(self, tenant: TenantRef) -> Iterator[ClientInfo]:
        raise NotImplementedError(f"{type(self).__name__} must implement iter_clients")

    def practice_info(self, tenant: TenantRef) -> PracticeInfo | None:
        raise NotImplementedError(f"{type(self).__name__} must implement practice_info")


def _tenant(ref: Ref) -> TenantRef:
    return TenantRef(str(ref))


def _client(ref: Ref | None) -> ClientRef | None:
    return ClientRef(str(ref)) if ref is not None else None


class FlaskApps:
    """The installed apps as a Flask host's booking code sees them.

    :param host: the host (a :class:`FlaskHost` subclass).
    :param active_apps: the app keys active for a tenant; without it, the host's
        activation table named in :attr:`activations`.
    :param signed_in: the signed-in practitioner from the host's own session, or ``None``;
        without it, a subclass's :meth:`signed_in`.
    :param client_ref: the host's client reference as text in its client queries, e.g.
        ``cast(Client.id, String)`` (see :meth:`filter_condition`).
    :param strict: refuse a broken app at start-up instead of logging it.
    """

    #: The host's activation table (``ActivationColumns(tenant=…, key=…, active=…,
    #: changed_at=…, changed_by=…)``): :meth:`active_apps` and :meth:`set_active` use it.
    activations: ActivationColumns | None = None

    def __init__(
        self, host: FlaskHost, *,
        active_apps: Callable[[TenantRef], Iterable[str]] | None = None,
        signed_in: Callable[[], Practitioner | None] | None = None,
        client_ref: ColumnElement[Any] | None = None, strict: bool = False,
    ) -> None:
        if client_ref is None and isinstance(host, TableClients):
            client_ref = cast(host.clients.ref, String)  # the client table's id as text
        self.client_ref = client_ref
        self.locale: Callable[[], str] = lambda: "sv"  # the host's, from mount()
        self.host = host
        self._signed_in = signed_in
        self._active_apps = active_apps
        self.hooks = AppHooks(make_plugin_manager(strict=strict), host, self.active_apps)
        self.prefixes: list[str] = []
        #: The background worker, once :meth:`start_worker` started it.
        self.worker: AppsWorker | None = None

    def signed_in(self) -> Practitioner | None:
        """The signed-in practitioner, from the host's own session (never the request)."""
        if self._signed_in is None:
            raise NotImplementedError(f"pass signed_in= to {type(self).__name__} or "
                                      "override signed_in()")
        return self._signed_in()

    def practitioner(self, tenant: Ref, ref: Ref, session: str) -> Practitioner | None:
        """Staff member ``ref`` of ``tenant``, signed in with ``session``, with what the
        host says they may do (:meth:`hookspecs.host.StaffDirectory.staff_member`, the
        same answer the command line gets), or ``None`` when the host knows no such
        person there.  A :meth:`signed_in` can return it."""
        if not isinstance(self.host, StaffDirectory):
            raise TypeError(f"{type(self.host).__name__} has no staff_member()")
        staff = self.host.staff_member(_tenant(tenant), StaffRef(str(ref)))
        return None if staff is None else Practitioner(
            tenant=tenant, ref=ref, name=staff.name, session=session,
            permissions=staff.permissions)

    def active_apps(self, tenant: TenantRef) -> Iterable[str]:
        """The keys of the apps active for ``tenant``."""
        if self._active_apps is not None:
            return self._active_apps(tenant)
        if self.activations is None:
            raise NotImplementedError(f"pass active_apps= to {type(self).__name__} or "
                                      "name the activation table in its activations")
        return self.activations.active_keys(self.host.session(), tenant)

    def set_active(self, tenant: Ref, key: str, active: bool, by: Ref | None,
                   settings: Mapping[str, object] | None = None) -> str | None:
        """Store in :attr:`activations`, in the host's transaction, that practitioner
        ``by`` (de)activated ``key`` for ``tenant``, then tell the apps (:meth:`activated`);
        returns the app's setup page path when activated."""
        if self.activations is None:
            raise NotImplementedError(f"name the activation table in {type(self).__name__}"
                                      ".activations")
        self.activations.store(self.host.session(), str(tenant), key, active,
                               at=self.host.now(), by=None if by is None else str(by))
        return self.activated(tenant, key, active, settings)

    # -- the app menu ------------------------------------------------------------------

    def menu(self, tenant: Ref, locale: str) -> list[dict[str, Any]]:
        """Every installed app for the app menu (:meth:`AppHooks.menu`)."""
        return self.hooks.menu(_tenant(tenant), locale)

    def activated(self, tenant: Ref, key: str, active: bool,
                  settings: Mapping[str, object] | None = None) -> str | None:
        """Tell the apps, inside the host's transaction after it stored the activation,
        that ``key`` was (de)activated; returns the app's setup page path when activated.
        ``settings`` ``{}``/``None``: the app's set-up wizard asks the practitioner."""
        return self.hooks.switch(_tenant(tenant), key, active, settings or {})

    # -- online booking: the form, the check (phase 1) and the record step (phase 2) ---

    def form_fragments(self, tenant: Ref, client: Ref | None, locale: str) -> list[Fragment]:
        """The apps' fields and notices for the booking form, in their order."""
        form = BookingFormContext(tenant=_tenant(tenant), client=_client(client), locale=locale)
        return [Fragment(key=f.key, html=Markup(f.html), field_names=f.field_names)  # noqa: S704
                for f in self.hooks.form_fragments(form)]

    @staticmethod
    def fragments_html(fragments: Iterable[Fragment],
                       vetoes: Mapping[str, Iterable[str]] | None = None) -> Markup:
        """The fragments for the booking form, each in ``<div class="app-fragment"
        id="app-<key>" tabindex="-1">`` (a host moves focus there after a veto) with its
        vetoes' messages (escaped) as ``<p class="field-error">`` before it."""
        html = Markup()
        for fragment in fragments:
            messages = (vetoes or {}).get(fragment.key, ())
            html += Markup('<div class="app-fragment" id="app-{}" tabindex="-1">\n').format(
                fragment.key.replace(".", "-"))
            html += Markup("").join(Markup('<p class="field-error">{}</p>\n').format(m)
                                    for m in messages)
            html += fragment.html + Markup("\n</div>\n")
        return html

    def submission(
        self, tenant: Ref, client: Ref | None, *, is_new_client: bool,
        channel: Literal["online", "staff"], fields: Mapping[str, str], locale: str,
        ip_address: str | None = None, user_agent: str | None = None,
        booker_signed_in: bool | None = None, booker_name: str | None = None,
        booker_email: str | None = None,
    ) -> BookingSubmission:
        """The booking as the apps see it (pass the same one to check and record).
        ``booker_*``: what the platform knows about who is booking online (see
        :class:`~hookspecs.types.BookingSubmission`)."""
        return BookingSubmission(
            tenant=_tenant(tenant), client=_client(client), is_new_client=is_new_client,
            channel=channel, fields=dict(fields), locale=locale, ip_address=ip_address,
            user_agent=user_agent, booker_signed_in=booker_signed_in,
            booker_name=booker_name, booker_email=booker_email,
        )

    def check(
        self, tenant: Ref, client: Ref | None, *, is_new_client: bool,
        channel: Literal["online", "staff"], fields: Mapping[str, str], locale: str,
        booker_signed_in: bool | None = None, booker_name: str | None = None,
        booker_email: str | None = None,
    ) -> tuple[BookingSubmission, list[Veto]]:
        """Phase 1 for the current request (its address and browser): the submission to
        pass to :meth:`booking_made`, and the apps' vetoes."""
        submission = self.submission(
            tenant, client, is_new_client=is_new_client, channel=channel, fields=fields,
            locale=locale, ip_address=request.remote_addr,
            user_agent=request.user_agent.string[:512] or None,
            booker_signed_in=booker_signed_in, booker_name=booker_name,
            booker_email=booker_email)
        return submission, self.check_booking(submission)

    def check_booking(self, submission: BookingSubmission) -> list[Veto]:
        """Phase 1, before anything is written: the apps' vetoes (fails closed)."""
        return self.hooks.submit_check(submission)

    def booking_made(
        self, submission: BookingSubmission, booking: Ref, client: Ref
    ) -> str | None:
        """Phase 2, inside the booking's transaction after its row is flushed.  For an
        online booking, returns the link to the client's own consent page for the
        booking's confirmation mail (:meth:`consent_page_url`; ``None`` when no app
        offers one, and for other channels)."""
        self.hooks.submitted(submission, BookingRef(str(booking)), ClientRef(str(client)))
        if submission.channel != "online":
            return None
        return self.consent_page_url(submission.tenant, client)

    def client_created(self, tenant: Ref, client: Ref, by: Literal["online", "staff"]) -> None:
        """Inside the transaction that created the client."""
        self.hooks.client_created(ClientCreated(
            tenant=_tenant(tenant), client=ClientRef(str(client)), created_by=by,
            at=self.host.now()))

    def client_erased(self, tenant: Ref, client: Ref) -> None:
        """Inside the erasure's transaction, before the client's row goes."""
        self.hooks.client_erased(_tenant(tenant), ClientRef(str(client)))

    # -- practitioner views: profile panels, list filters and row badges ------------------

    def profile_panels(self, client: Ref, locale: str) -> list[Markup]:
        """The apps' panels for the signed-in practitioner's client profile."""
        who = self.signed_in()
        if who is None:
            return []
        panels = self.hooks.profile_panels(_tenant(who.tenant), ClientRef(str(client)),
                                           who.staff, locale)
        return [Markup(p.html) for p in panels]  # noqa: S704 - escaped by the app

    def list_filters(self, tenant: Ref, locale: str) -> list[tuple[str, str]]:
        """``(key, label)`` of every filter the active apps offer on the client list."""
        return [(f.key, f.label) for f in self.hooks.list_filters(_tenant(tenant), locale)]

    def filter_condition(self, tenant: Ref, key: str, client_ref: ColumnElement[Any] | None = None
                         ) -> ColumnElement[bool] | None:
        """The filter ``key`` as a condition for the host's ``select(...).where(...)``;
        ``client_ref`` (default: the one given at construction) is the host's client
        reference as text.  ``None``: no active app offers ``key``."""
        ref = client_ref if client_ref is not None else self.client_ref
        if ref is None:
            raise TypeError("pass client_ref: the host's client reference column as text")
        column = str(ref.compile(dialect=self.host.session().get_bind().dialect))
        found = self.hooks.list_filter_clause(_tenant(tenant), key, column)
        return filter_condition(found) if found is not None else None

    def client_filter(self, tenant: Ref, chosen: str, locale: str
                      ) -> tuple[list[tuple[str, str]], ColumnElement[bool] | None]:
        """The client list's filters, and ``chosen`` among them as a condition (``None``:
        not offered any more)."""
        filters = self.list_filters(tenant, locale)
        offered = any(key == chosen for key, _label in filters)
        return filters, self.filter_condition(tenant, chosen) if offered else None

    def row_badges(self, tenant: Ref, clients: Sequence[Ref], locale: str) -> dict[str, Markup]:
        """The apps' badges for one page of the client list, by ``str(client)``."""
        if not clients:
            return {}
        badges = self.hooks.list_badges(_tenant(tenant), [ClientRef(str(c)) for c in clients],
                                        locale)
        return {str(ref): Markup(" ".join(b.html for b in row))  # noqa: S704
                for ref, row in badges.items()}

    def may_use(self, tenant: Ref, clients: Sequence[Ref], purpose: str) -> dict[str, bool] | None:
        """May each client's data be used for ``purpose`` now, by ``str(client)``: one
        lookup (:meth:`AppHooks.consent_lookup`).  ``None`` when no app active for
        ``tenant`` keeps consent (the host's own rule applies); a purpose the practice
        does not have gives ``False`` for everyone (nobody was asked for it)."""
        refs = [ClientRef(str(c)) for c in clients]
        try:
            answers = self.hooks.consent_lookup(_tenant(tenant), refs, purpose)
        except UnknownPurpose:
            return {str(ref): False for ref in refs}
        return None if answers is None else {str(ref): answers[ref].may_use for ref in refs}

    def consent_page_url(self, tenant: Ref, client: Ref) -> str | None:
        """The link to the client's own consent page for the host's own mail (a booking
        confirmation), issued in the open request's transaction
        (:meth:`AppHooks.client_consent_page`); ``None`` when no app offers one."""
        return self.hooks.client_consent_page(_tenant(tenant), ClientRef(str(client)))

    def has_exports(self, tenant: Ref) -> bool:
        """Samtycke was ever activated for ``tenant`` (its proof stays after deactivation)."""
        return flask_exports.has_exports(self.host, str(tenant))

    def export_links(self, client: Ref | None = None) -> Markup:
        """Links to Samtycke's downloads (see :meth:`mount`'s ``exports``) for the
        signed-in practitioner: a client's, or with no client the practice's status list."""
        return flask_exports.export_links(self, None if client is None else str(client),
                                          self.locale())

    def install_jinja(self, app: Flask) -> None:
        """``booking_apps`` in the host's templates: ``booking_apps.profile_panels(...)``
        and the others above, returning ``Markup`` of the apps' escaped HTML."""
        app.jinja_env.globals["booking_apps"] = self

    # -- the apps' pages -------------------------------------------------------------

    def mount(
        self, app: Flask, *, locale: Callable[[], str],
        home: Callable[[], tuple[str, str] | None] | None = None,
        sign_in: Callable[[], str] | None = None, exports: str | None = None,
    ) -> None:
        """Forward ``<prefix>/...`` to each app's WSGI application, with the signed-in
        practitioner (from the host's session, never from the request), the page
        language, the host's "back" link and its sign-in page in the environ; with
        ``exports`` (a path such as ``/clients``), Samtycke's downloads below it
        (:mod:`~samtycke_plugin.integrations.flask_exports`)."""
        self.locale = locale
        self.install_jinja(app)
        if exports is not None:
            flask_exports.mount_exports(app, self, exports, locale)
        self.prefixes += flask_mount.mount_pages(self, app, locale=locale, home=home,
                                                 sign_in=sign_in)

    def log_path(self, path: str) -> str:
        """``path`` as the host may log it: below an app's mount only its first segment
        (the e-mailed links carry a token there, which no log may keep), and never a
        query string."""
        return flask_mount.log_path(self.prefixes, path)

    # -- e-mail ----------------------------------------------------------------------

    def send_outbox(self, *, jobs: bool = False) -> int:
        """Send the apps' queued e-mail that is due now; returns how many were sent.
        Mail only unless ``jobs``: a batch job is the worker's (:meth:`run_work`), so no
        request waits for one."""
        self.host.sessions().rollback()
        try:
            return samtycke_relay.send_due(self.host, jobs=jobs).sent
        except Exception:
            log.exception("the apps' queued work failed; it is tried again later")
            return 0
        finally:
            self.host.sessions.remove()

    def run_work(self) -> int:
        """The apps' background work: the batch jobs that are due, then the queued
        e-mail; returns how many mails were sent."""
        return self.send_outbox(jobs=True)

    def start_worker(self, every: float = 15.0) -> AppsWorker:
        """A daemon thread running :meth:`run_work` every ``every`` seconds and right
        after each POST to an app's page (or run ``samtycke outbox send`` from cron
        instead)."""
        self.worker = AppsWorker(self.run_work, every).start()
        return self.worker

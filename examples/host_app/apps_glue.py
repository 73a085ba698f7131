"""All of the platform's app glue, Samtycke included, in one module.

This is the only module of the booking platform that knows apps exist.  The
booking code calls the few functions of :class:`Apps` at the places where the
platform lets apps take part; everything else is the contract in ``hookspecs``.
Read it top to bottom as the guide for a real host (the README walks through it):

1. the database: SQLite connection behaviour and the apps' migrations;
2. :class:`PlatformHost`: the small interface apps call back (``hookspecs.host.Host``);
3. :class:`Apps`: the plugin manager (entry-point group ``booking.apps``), the
   per-practice activation filter and the calls from the booking flow;
4. web mounts: the apps' WSGI pages under the platform, with the signed-in
   practitioner put into the WSGI environ;
5. e-mail: a development mailbox, or the app's own SMTP transport;
6. exports: Samtycke's proof of consent as downloads on the platform's pages.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flask import Flask, request, stream_with_context
from flask import session as web_session
from markupsafe import Markup
from sqlalchemy import ColumnElement, Connection, Engine, Select, String, cast, select
from sqlalchemy.orm import Session, scoped_session
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

from examples.host_app.inputs import db_id
from examples.host_app.models import AppActivation, Client, DevMail, Practice, Staff
from hookspecs.facade import AppHooks, make_plugin_manager
from hookspecs.types import (
    BookingFormContext,
    BookingRef,
    BookingSubmission,
    ClientCreated,
    ClientInfo,
    ClientRef,
    DeliveryResult,
    OutgoingEmail,
    PracticeInfo,
    StaffContext,
    StaffRef,
    TenantRef,
    Veto,
)
from samtycke_plugin import db as samtycke_db
from samtycke_plugin import export as samtycke_export
from samtycke_plugin import web as samtycke_web
from samtycke_plugin.email import relay as samtycke_relay

log = logging.getLogger(__name__)

# -- 1. the database ---------------------------------------------------------------------


def prepare_engine(engine: Engine) -> None:
    """On SQLite, share the apps' connection behaviour (WAL, busy timeout, BEGIN IMMEDIATE)."""
    if engine.dialect.name == "sqlite":
        samtycke_db.configure_sqlite(engine)


def upgrade_apps(connection: Connection) -> None:
    """Called from the platform's migrate step: the apps' own tables and version tables."""
    samtycke_db.upgrade(connection)


# -- 2. the host interface ---------------------------------------------------------------


def practice_id(tenant: str) -> int | None:
    """Our tenant references are practice ids as strings."""
    return db_id(tenant)


class PlatformHost:
    """Implements :class:`hookspecs.host.Host` for this platform."""

    def __init__(
        self,
        sessions: scoped_session[Session],
        *,
        secret_key: bytes,
        base_url: str,
        dev_mailbox: bool,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._sessions = sessions
        self._secret_key = secret_key
        self.base_url = base_url.rstrip("/")
        self.dev_mailbox = dev_mailbox
        self.clock = clock or (lambda: datetime.now(UTC))

    def session(self) -> Session:
        return self._sessions()  # the request's unit of work, shared with the booking code

    def now(self) -> datetime:
        return self.clock()

    def lookup_client(self, tenant: TenantRef, client: ClientRef) -> ClientInfo | None:
        row = self._client(tenant, client)
        if row is None:
            return None
        return ClientInfo(ref=client, name=row.name, email=row.email, locale=row.locale)

    def iter_clients(self, tenant: TenantRef) -> Iterator[ClientInfo]:
        pid, last = practice_id(tenant), 0
        while pid is not None:  # keyset pages: never the whole practice in memory
            rows = self.session().execute(
                select(Client.id, Client.name, Client.email, Client.locale)
                .where(Client.practice_id == pid, Client.id > last)
                .order_by(Client.id).limit(500)
            ).all()
            if not rows:
                return
            for cid, name, email, locale in rows:
                yield ClientInfo(ref=ClientRef(str(cid)), name=name, email=email, locale=locale)
            last = rows[-1].id

    def client_query(self, tenant: TenantRef) -> Select[Any]:
        """The practice's clients as one query (:class:`hookspecs.host.ClientQuery`): a
        batch request to all of them then runs set-based in the database."""
        pid = practice_id(tenant)
        return select(
            cast(Client.id, String).label("ref"), Client.name, Client.email
        ).where(Client.practice_id == (pid if pid is not None else -1))

    def practice_info(self, tenant: TenantRef) -> PracticeInfo | None:
        pid = practice_id(tenant)
        row = self.session().get(Practice, pid) if pid is not None else None
        if row is None:
            return None
        return PracticeInfo(ref=tenant, name=row.name, email=row.email, phone=row.phone,
                            locale=row.locale)

    def absolute_url(self, tenant: TenantRef, path: str) -> str:
        return self.base_url + path  # from configuration, never from the request

    def app_secret(self, app: str) -> bytes:
        return hmac.new(self._secret_key, b"app-secret:" + app.encode(), hashlib.sha256).digest()

    def deliver_email(self, tenant: TenantRef, message: OutgoingEmail) -> DeliveryResult | None:
        if not self.dev_mailbox:
            return None  # SMTP configured: the app uses its own transport
        session = self.session()
        seen = session.scalar(select(DevMail.id).where(DevMail.message_id == message.message_id))
        if seen is None:  # a resend carries the same Message-ID: deliver once
            session.add(DevMail(
                practice_id=practice_id(tenant), source="samtycke", to=message.to,
                subject=message.subject, text=message.text, html=message.html,
                message_id=message.message_id, sent_at=self.now(),
            ))
            session.flush()
        return DeliveryResult(status="sent", detail="development mailbox")

    def _client(self, tenant: str, client: str) -> Client | None:
        pid = practice_id(tenant)
        row = self.session().get(Client, cid) if (cid := db_id(client)) is not None else None
        return row if row is not None and row.practice_id == pid else None


# -- 3. the apps -------------------------------------------------------------------------


def staff_context(staff: Staff) -> StaffContext:
    return StaffContext(ref=StaffRef(str(staff.id)), name=staff.name,
                        can_record_consent=staff.can_record_consent)


def tenant_of(pid: int) -> TenantRef:
    return TenantRef(str(pid))


class Apps:
    """The installed apps as the booking code sees them."""

    def __init__(self, host: PlatformHost, *, strict: bool = False) -> None:
        self.host = host
        self.hooks = AppHooks(make_plugin_manager(strict=strict), host, self.active_apps)
        self.prefixes: list[str] = []  # the mounted apps' path prefixes (see mount)

    def active_apps(self, tenant: TenantRef) -> list[str]:
        pid = practice_id(tenant)
        return list(self.host.session().scalars(
            select(AppActivation.app_key).where(
                AppActivation.practice_id == pid, AppActivation.active.is_(True))
        ))

    # the app menu
    def menu(self, pid: int, language: str) -> list[dict[str, Any]]:
        active = set(self.active_apps(tenant_of(pid)))
        return [
            {"key": info.key, "name": info.name.get(language, info.key),
             "description": info.description.get(language, ""), "version": info.version,
             "active": info.key in active, "setup_path": info.setup_path}
            for info in self.hooks.apps()
        ]

    def set_active(self, pid: int, key: str, active: bool, by: int | None,
                   settings: Mapping[str, object] | None = None) -> str | None:
        """(De)activate ``key`` in the caller's transaction; returns the setup page path."""
        info = {i.key: i for i in self.hooks.apps()}[key]  # KeyError: not installed
        session = self.host.session()
        row = session.get(AppActivation, (pid, key))
        if row is None:
            row = AppActivation(practice_id=pid, app_key=key)
            session.add(row)
        row.active, row.changed_at, row.changed_by = active, self.host.now(), by
        session.flush()
        if active:
            self.hooks.activate(tenant_of(pid), key, settings or {})  # {}: the app's wizard asks
        else:
            self.hooks.deactivate(tenant_of(pid), key)
        return info.setup_path if active else None

    # online booking: the form, the check (phase 1) and the record step (phase 2)
    def form_fragments(self, pid: int, client_id: int | None, language: str) -> list[Any]:
        form = BookingFormContext(tenant=tenant_of(pid), locale=language,
                                  client=ClientRef(str(client_id)) if client_id else None)
        # The app escaped/sanitized this HTML (contract: FormFragment.html).
        return [(f.key, Markup(f.html), f.field_names) for f in self.hooks.form_fragments(form)]  # noqa: S704

    def submission(self, pid: int, client_id: int | None, *, is_new_client: bool, channel: str,
                   fields: Mapping[str, str], language: str, ip_address: str | None,
                   user_agent: str | None) -> BookingSubmission:
        return BookingSubmission(
            tenant=tenant_of(pid), client=ClientRef(str(client_id)) if client_id else None,
            is_new_client=is_new_client, channel=channel,  # type: ignore[arg-type]
            fields=dict(fields), locale=language, ip_address=ip_address, user_agent=user_agent,
        )

    def check_booking(self, submission: BookingSubmission) -> list[Veto]:
        return self.hooks.submit_check(submission)

    def booking_made(self, submission: BookingSubmission, booking_id: int, client_id: int) -> None:
        """Inside the booking transaction, after the booking row is flushed, before commit."""
        self.hooks.submitted(submission, BookingRef(str(booking_id)), ClientRef(str(client_id)))

    def client_created(self, pid: int, client_id: int, by: str) -> None:
        self.hooks.client_created(ClientCreated(
            tenant=tenant_of(pid), client=ClientRef(str(client_id)),
            created_by=by, at=self.host.now()))  # type: ignore[arg-type]

    # practitioner views: profile panels, list filters and row badges
    def profile_panels(self, staff: Staff, client_id: int, language: str) -> list[Markup]:
        panels = self.hooks.profile_panels(tenant_of(staff.practice_id), ClientRef(str(client_id)),
                                           staff_context(staff), language)
        return [Markup(p.html) for p in panels]  # noqa: S704 - escaped by the app

    def list_filters(self, pid: int, language: str) -> list[tuple[str, str]]:
        return [(f.key, f.label) for f in self.hooks.list_filters(tenant_of(pid), language)]

    def filter_condition(self, pid: int, key: str) -> ColumnElement[bool] | None:
        found = self.hooks.list_filter_clause(tenant_of(pid), key, cast(Client.id, String))
        return found.clause if found is not None else None

    def row_badges(self, pid: int, client_ids: Sequence[int], language: str) -> dict[int, Markup]:
        badges = self.hooks.list_badges(tenant_of(pid), [ClientRef(str(c)) for c in client_ids],
                                        language)
        return {int(ref): Markup(" ".join(b.html for b in row))  # noqa: S704
                for ref, row in badges.items()}

    def client_erased(self, pid: int, client_id: int) -> None:
        """Inside the erasure transaction, before the client row goes."""
        self.hooks.client_erased(tenant_of(pid), ClientRef(str(client_id)))

    # -- 4. web mounts -----------------------------------------------------------------------

    def mount(self, app: Flask, *, signed_in: Callable[[], Staff | None],
              language: Callable[[], str]) -> None:
        """Forward ``<prefix>/...`` to each app's WSGI application."""
        for mount in self.hooks.web_mounts():
            def forward(rest: str, _mount: Any = mount) -> Response:
                environ = dict(request.environ)
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + _mount.prefix
                environ["PATH_INFO"] = request.environ["PATH_INFO"][len(_mount.prefix):]
                environ["booking.host"] = self.host
                environ["booking.locale"] = language()
                environ["booking.home"] = (request.script_root + "/", "Praktika")
                for key in ("booking.tenant", "booking.staff", "booking.session"):
                    environ.pop(key, None)
                staff = signed_in()  # from the platform's own session, never from the request
                if staff is not None:
                    environ["booking.tenant"] = tenant_of(staff.practice_id)
                    environ["booking.staff"] = staff_context(staff)
                    environ["booking.session"] = web_session.get("sid")  # new at each sign-in
                return Response.from_app(_mount.app, environ)

            self.prefixes.append(mount.prefix)
            endpoint = "app_mount:" + mount.key
            methods = ["GET", "HEAD", "POST"]
            for exact in (mount.prefix, mount.prefix + "/"):
                app.add_url_rule(exact, endpoint, forward, methods=methods, defaults={"rest": ""})
            app.add_url_rule(mount.prefix + "/<path:rest>", endpoint, forward, methods=methods)

    def log_path(self, path: str) -> str:
        """``path`` as the platform may log it: below an app's mount only its first
        segment (the e-mailed links carry a token there, which no log may keep), and
        never a query string (search terms, the returning-client token)."""
        path = path.split("?", 1)[0]
        for prefix in self.prefixes:
            if path.startswith(prefix + "/"):
                return prefix + samtycke_web.redact_path(path[len(prefix):])
        return path

    # -- 5. e-mail ---------------------------------------------------------------------------

    def send_outbox(self) -> int:
        """Send the apps' queued e-mail now (dev mode: after each POST).  Mail only: a
        batch job is the worker's (:meth:`run_work`), so no request waits for one."""
        try:
            return samtycke_relay.send_due(self.host, jobs=False).sent
        except Exception:
            log.exception("sending queued app e-mail failed; it stays queued")
            return 0
        finally:
            self.host.session().rollback()

    def run_work(self) -> int:
        """The apps' background work (the platform's worker): batch jobs that are due,
        then the queued e-mail; returns the number of mails sent."""
        try:
            return samtycke_relay.send_due(self.host).sent
        except Exception:
            log.exception("the apps' background work failed; it is tried again later")
            return 0
        finally:
            self.host.session().rollback()

    # -- 6. exports ----------------------------------------------------------------------------

    def has_exports(self, pid: int) -> bool:
        """Samtycke was ever activated here (its data stays after deactivation)."""
        return self.host.session().get(AppActivation, (pid, "samtycke")) is not None

    def client_export(self, staff: Staff, client_id: int, kind: str, language: str) -> Response:
        """A client's consent history: ``json``, ``csv``, ``html`` (printable) or ``zip``."""
        tenant, client, host = tenant_of(staff.practice_id), str(client_id), self.host
        if not self.has_exports(staff.practice_id):
            raise NotFound()
        name = f"samtycke-{tenant}-{client}.{kind}"
        if kind == "zip":
            body: str | bytes = samtycke_export.proof_bundle(host, tenant, client, locale=language)
            name = samtycke_export.bundle_filename(tenant, client, host.now())
        elif kind == "json":
            body = samtycke_export.client_history_json(host, tenant, client, locale=language)
        elif kind == "csv":
            body = samtycke_export.client_history_csv(host, tenant, client)
        else:
            body = samtycke_export.client_history_html(host, tenant, client, locale=language)
        mimetypes = {"zip": "application/zip", "json": "application/json", "csv": "text/csv"}
        response = Response(body, mimetype=mimetypes.get(kind, "text/html"))
        if kind != "html":
            response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        else:  # a self-contained page with its own inline style
            csp = "default-src 'none'; style-src 'unsafe-inline'"
            response.headers["Content-Security-Policy"] = csp
        return response

    def status_export(self, staff: Staff, language: str) -> Response:
        """The practice's status list as CSV, streamed (the request's session stays open)."""
        if not self.has_exports(staff.practice_id):
            raise NotFound()
        chunks = samtycke_export.practice_status_csv(self.host, tenant_of(staff.practice_id),
                                                     locale=language)
        response = Response(stream_with_context(chunks), mimetype="text/csv")
        response.headers["Content-Disposition"] = 'attachment; filename="samtycke-status.csv"'
        return response

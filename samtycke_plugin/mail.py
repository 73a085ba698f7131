"""Sending the outbox: rendering messages, the built-in SMTP transport and the relay.

The request and its outbox row are written in the same transaction (see
:mod:`samtycke_plugin.requests`); :func:`send_due` delivers what is due, at least once:

* each row is **claimed** (``status = 'sending'`` with a lease, committed) before it is
  sent, so two relays never send the same row at once; a relay that dies after the SMTP
  server accepted the message leaves the claim to expire and the row is sent again —
  with the same ``Message-ID`` and the same link (the token is derived from the
  request's nonce, never stored), so the worst case is a recognisable duplicate and,
  because a link works once, never a second consent;
* delivery goes through ``host.deliver_email()`` when the host returns a
  :class:`~hookspecs.types.DeliveryResult`, otherwise through :class:`SmtpTransport`
  (``smtplib``, STARTTLS or implicit TLS, settings from the environment, see
  :class:`SmtpSettings`);
* connection errors, time-outs and 4xx replies are retried with jittered exponential
  backoff (tenacity's wait functions: 1 min, 2, 4 … capped at 1 h, plus up to 30 s of
  jitter) until the give-up age (72 h by default); 5xx replies for the recipient or the
  message mark the row and its request ``bounced`` and the client's badge says
  "Address rejected";
* mail for a link that was used, revoked or has expired meanwhile is not sent
  (``cancelled``).

``send_due`` is a plain function a host's task queue (Celery, RQ, cron) can call; the
CLI's ``samtycke outbox send [--loop]`` calls it too.  It manages its own short
transactions on ``host.session()``: call it outside a request's unit of work.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING, Any, Literal, Protocol

from attrs import field, frozen
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session
from tenacity import RetryCallState, Retrying, wait_exponential, wait_random

from hookspecs.types import DeliveryResult, OutgoingEmail, TenantRef
from samtycke_plugin import requests as links
from samtycke_plugin import service
from samtycke_plugin.db import run_in_transaction
from samtycke_plugin.errors import InputError, SamtyckeError
from samtycke_plugin.i18n import lang, t
from samtycke_plugin.models import (
    KIND_REQUEST,
    ConsentEvent,
    ConsentRequest,
    ConsentStateRow,
    OutboxMessage,
    Practice,
    TextVersion,
)
from samtycke_plugin.render import render, trusted_html
from samtycke_plugin.rules import State

if TYPE_CHECKING:
    from hookspecs.host import Host

log = logging.getLogger("samtycke.mail")

QUEUED, SENDING, SENT, RETRY, BOUNCED, FAILED, CANCELLED = (
    links.QUEUED, links.SENDING, links.SENT, links.RETRY, links.BOUNCED, links.FAILED,
    links.CANCELLED,
)
DUE_STATES = (QUEUED, RETRY, SENDING)


class MailConfigError(SamtyckeError):
    """The built-in SMTP transport is needed but not (correctly) configured."""


# -- configuration -----------------------------------------------------------------------------


def _env_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise MailConfigError(f"{name} must be a number, got {raw!r}.") from None
    if value <= 0:
        raise MailConfigError(f"{name} must be greater than zero, got {raw!r}.")
    return value


@frozen(kw_only=True)
class RetryPolicy:
    """When a failed message is tried again, and when the relay gives up.

    From the environment: ``SAMTYCKE_OUTBOX_RETRY_INITIAL`` (seconds, default 60),
    ``SAMTYCKE_OUTBOX_RETRY_MAX`` (seconds, 3600), ``SAMTYCKE_OUTBOX_RETRY_JITTER``
    (seconds, 30), ``SAMTYCKE_OUTBOX_GIVE_UP_HOURS`` (72) and
    ``SAMTYCKE_OUTBOX_LEASE_SECONDS`` (how long a claimed row is left to its relay, 600).
    The plugin usually hands mail to a smarthost that retries for days itself
    (RFC 5321 §4.5.4.1); these shorter defaults cover that hand-over.
    """

    initial: float = 60.0
    maximum: float = 3600.0
    jitter: float = 30.0
    give_up: timedelta = timedelta(hours=72)
    lease: timedelta = timedelta(seconds=600)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetryPolicy:
        env = os.environ if environ is None else environ
        return cls(
            initial=_env_float(env, "SAMTYCKE_OUTBOX_RETRY_INITIAL", 60.0),
            maximum=_env_float(env, "SAMTYCKE_OUTBOX_RETRY_MAX", 3600.0),
            jitter=_env_float(env, "SAMTYCKE_OUTBOX_RETRY_JITTER", 30.0),
            give_up=timedelta(hours=_env_float(env, "SAMTYCKE_OUTBOX_GIVE_UP_HOURS", 72.0)),
            lease=timedelta(seconds=_env_float(env, "SAMTYCKE_OUTBOX_LEASE_SECONDS", 600.0)),
        )

    def delay(self, attempts: int) -> timedelta:
        """The wait before the next try after ``attempts`` failed tries (jittered)."""
        wait = wait_exponential(multiplier=self.initial, max=self.maximum) + wait_random(
            0, self.jitter
        )
        state = RetryCallState(Retrying(), None, (), {})
        state.attempt_number = max(1, attempts)
        return timedelta(seconds=wait(state))


Security = Literal["starttls", "ssl", "none"]
_DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "ssl": 465, "none": 25}


@frozen(kw_only=True)
class SmtpSettings:
    """The built-in transport's settings.

    Environment: ``SAMTYCKE_SMTP_HOST`` (required), ``SAMTYCKE_SMTP_PORT`` (default by
    security: 587, 465 or 25), ``SAMTYCKE_SMTP_SECURITY`` (``starttls`` — the default —,
    ``ssl`` for implicit TLS, or ``none`` for a local relay only), ``SAMTYCKE_SMTP_USER``
    and ``SAMTYCKE_SMTP_PASSWORD`` (optional; sent only over TLS unless security is
    ``none``), ``SAMTYCKE_SMTP_FROM`` (required; the envelope sender and From address —
    the practice's name is used as display name), ``SAMTYCKE_SMTP_TIMEOUT`` (seconds,
    default 30) and ``SAMTYCKE_SMTP_CA_FILE`` (optional CA bundle for a private CA).
    Certificates and host names are always verified when TLS is used.
    """

    host: str
    port: int
    security: Security = "starttls"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    from_addr: str
    timeout: float = 30.0
    ca_file: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpSettings:
        env = os.environ if environ is None else environ
        host = env.get("SAMTYCKE_SMTP_HOST", "").strip()
        if not host:
            raise MailConfigError(
                "No SMTP server is configured: set SAMTYCKE_SMTP_HOST (and SAMTYCKE_SMTP_FROM), "
                "or let the host deliver e-mail through its deliver_email()."
            )
        security = env.get("SAMTYCKE_SMTP_SECURITY", "starttls").strip().lower() or "starttls"
        if security not in _DEFAULT_PORTS:
            raise MailConfigError(
                f"SAMTYCKE_SMTP_SECURITY must be starttls, ssl or none, got {security!r}."
            )
        raw_port = env.get("SAMTYCKE_SMTP_PORT", "").strip()
        if raw_port and not (raw_port.isdigit() and 0 < int(raw_port) < 65536):
            raise MailConfigError(f"SAMTYCKE_SMTP_PORT must be a port number, got {raw_port!r}.")
        from_raw = parseaddr(env.get("SAMTYCKE_SMTP_FROM", ""))[1]
        try:
            from_addr = links.normalise_address(from_raw)
        except InputError:
            raise MailConfigError(
                "SAMTYCKE_SMTP_FROM must be the sender's e-mail address, e.g. "
                "noreply@example.org."
            ) from None
        return cls(
            host=host,
            port=int(raw_port) if raw_port else _DEFAULT_PORTS[security],
            security=security,  # type: ignore[arg-type]
            user=env.get("SAMTYCKE_SMTP_USER") or None,
            password=env.get("SAMTYCKE_SMTP_PASSWORD") or None,
            from_addr=from_addr,
            timeout=_env_float(env, "SAMTYCKE_SMTP_TIMEOUT", 30.0),
            ca_file=env.get("SAMTYCKE_SMTP_CA_FILE") or None,
        )


# -- transports --------------------------------------------------------------------------------


class Transport(Protocol):
    """Sends one :class:`EmailMessage`; raises ``smtplib``/``OSError`` exceptions on failure."""

    @property
    def from_addr(self) -> str: ...

    def send(self, message: EmailMessage) -> None: ...

    def close(self) -> None: ...


class SmtpTransport:
    """The built-in transport: one ``smtplib`` connection reused for a run of messages,
    reopened after any error."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._conn: smtplib.SMTP | None = None

    @property
    def from_addr(self) -> str:
        return self.settings.from_addr

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_file)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        conn: smtplib.SMTP
        if s.security == "ssl":
            conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._tls())
        else:
            conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            conn.ehlo()
            if s.security == "starttls":
                conn.starttls(context=self._tls())
                conn.ehlo()
            if s.user:
                conn.login(s.user, s.password or "")
        except BaseException:
            _quietly_close(conn)
            raise
        return conn

    def send(self, message: EmailMessage) -> None:
        if self._conn is None:
            self._conn = self._connect()
        try:
            self._conn.send_message(message, from_addr=self.settings.from_addr)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                _quietly_close(conn)


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except OSError:  # pragma: no cover - closing a broken socket
        pass


Verdict = Literal["retry", "bounce"]


def classify(exc: BaseException) -> tuple[Verdict, str]:
    """What an SMTP failure means: ``retry`` (connection trouble, 4xx, server or
    configuration problems) or ``bounce`` (a 5xx for this recipient or message)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in exc.recipients.values()]
        if codes and all(500 <= code < 600 for code in codes):
            return "bounce", f"recipient refused ({codes[0]})"
        return "retry", f"recipient deferred ({codes[0] if codes else '?'})"
    if isinstance(
        exc,
        (smtplib.SMTPSenderRefused, smtplib.SMTPAuthenticationError, smtplib.SMTPHeloError),
    ):
        return "retry", f"server refused the sender or login ({exc.smtp_code}); check the settings"
    if isinstance(exc, smtplib.SMTPResponseException):
        if 500 <= exc.smtp_code < 600:
            return "bounce", f"message refused ({exc.smtp_code})"
        return "retry", f"server said try later ({exc.smtp_code})"
    if isinstance(exc, smtplib.SMTPException):
        return "retry", f"SMTP error ({type(exc).__name__})"
    if isinstance(exc, ssl.SSLError):
        return "retry", f"TLS failed ({type(exc).__name__}); check the server's certificate"
    if isinstance(exc, OSError):
        return "retry", f"could not reach the mail server ({type(exc).__name__})"
    raise exc


# -- rendering ---------------------------------------------------------------------------------


@frozen(kw_only=True)
class Rendered:
    """A message ready to hand over (no database objects)."""

    outbox_id: int
    tenant: str
    to_addr: str
    to_name: str
    from_name: str
    reply_to: str | None
    subject: str
    text: str
    html: str
    message_id: str
    attachments: tuple[tuple[str, bytes], ...] = ()

    def outgoing(self) -> OutgoingEmail:
        headers = {"Auto-Submitted": "auto-generated"}
        if self.reply_to:
            headers["Reply-To"] = self.reply_to
        return OutgoingEmail(
            to=self.to_addr, subject=self.subject, text=self.text, html=self.html,
            message_id=self.message_id, headers=headers,
        )

    def email(self, from_addr: str, now: datetime) -> EmailMessage:
        """The MIME message (text + HTML alternative, attachments).  Raises
        :class:`ValueError` if any header would contain a line break."""
        msg = EmailMessage()
        msg["Subject"] = self.subject
        msg["From"] = Address(display_name=self.from_name, addr_spec=from_addr)
        msg["To"] = Address(display_name=self.to_name, addr_spec=self.to_addr)
        if self.reply_to:
            msg["Reply-To"] = self.reply_to
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = self.message_id
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(self.text)
        msg.add_alternative(self.html, subtype="html")
        for filename, data in self.attachments:
            msg.add_attachment(data, maintype="application", subtype="json", filename=filename)
        return msg


class RenderError(Exception):
    """A queued message that can never be rendered (its data is gone or unusable)."""


def _practice_contact(host: Host, tenant: str) -> tuple[str, str | None, str | None]:
    info = host.practice_info(TenantRef(tenant))
    name = links.practice_name(host, tenant)
    email = phone = None
    if info is not None:
        if info.email:
            try:
                email = links.normalise_address(info.email)
            except InputError:
                email = None
        if info.phone and links.header_safe(info.phone):
            phone = info.phone.strip()
    return name, email, phone


def _receipt_json(host: Host, tenant: str, event_id: int) -> bytes | None:
    """The Kantara-style receipt JSON, when :mod:`samtycke_plugin.receipts` provides it."""
    try:
        module = importlib.import_module("samtycke_plugin.receipts")
    except ImportError:
        return None
    build: Callable[..., Any] | None = getattr(module, "build_receipt", None)
    if build is None:
        return None
    try:
        receipt = build(host, tenant, event_id)
    except Exception:
        log.exception("practice %s: building the receipt JSON failed; mail sent without it",
                      tenant)
        return None
    return json.dumps(receipt, ensure_ascii=False, indent=2, default=str).encode("utf-8")


def render_message(host: Host, session: Session, row: OutboxMessage) -> Rendered:
    """Render one outbox row in the client's language (the link is derived again)."""
    tenant = row.tenant_ref
    req = session.get(ConsentRequest, row.request_id) if row.request_id is not None else None
    practice = session.get(Practice, tenant)
    if req is None or practice is None or req.tenant_ref != tenant or not row.to_addr:
        raise RenderError("the request or practice of this message no longer exists")
    key = links.link_key(host)
    token = links.token_for(key, req)
    if links.token_hash(token) != req.token_hash:
        # Never re-key silently: a relay running with another secret than the web pages
        # would otherwise mail links that cannot be opened.
        raise RenderError(
            "the link key differs from the one this request was made with (the host's "
            "secret was rotated, or this relay does not use the web app's secret); "
            "send the client a new request"
        )
    url = host.absolute_url(TenantRef(tenant), links.link_path(req.purpose, token))
    locale = lang(row.locale)
    name, reply_to, phone = _practice_contact(host, tenant)
    to_name = str(row.payload.get("name") or "")
    if not links.header_safe(to_name):
        raise InputError("name", links.BAD_CLIENT_NAME)
    common: dict[str, Any] = {
        "practice": name, "practice_email": reply_to, "practice_phone": phone,
        "client_name": to_name, "url": url, "expires_at": req.expires_at,
    }
    attachments: tuple[tuple[str, bytes], ...] = ()
    if row.kind == KIND_REQUEST:
        subject = t(locale, "%(practice)s asks for your consent", practice=name)
        text_body = render("mail_request.txt", locale, **common)
        html_body = render("mail_request.html", locale, subject=subject, **common)
    elif row.kind == links.KIND_RECEIPT:
        event_id = row.payload.get("event_id")
        event = session.get(ConsentEvent, event_id) if isinstance(event_id, int) else None
        if event is None or event.tenant_ref != tenant or event.client_ref != row.client_ref:
            raise RenderError("the consent event of this receipt no longer exists")
        version = (
            session.get(TextVersion, event.text_version_id)
            if event.text_version_id is not None else None
        )
        if version is None:
            raise RenderError("the text version of this receipt no longer exists")
        subject = t(locale, "Receipt: your consent to %(practice)s", practice=name)
        context = {
            **common,
            "renewed": event.state == State.RENEWED.value,
            "given_at": event.given_at or event.occurred_at,
            "version": service.version_label(version.major, version.minor),
            "text_language": version.language,
            "text_sha256": version.sha256,
            "text_body": version.body,
            "text_html": trusted_html(version.html),
            "consent_expires_at": event.expires_at,
            "event_seq": event.seq,
        }
        text_body = render("mail_receipt.txt", locale, **context)
        html_body = render("mail_receipt.html", locale, subject=subject, **context)
        receipt = _receipt_json(host, tenant, event.id)
        if receipt is not None:
            attachments = ((t(locale, "consent-receipt") + ".json", receipt),)
    else:
        raise RenderError(f"unknown message kind {row.kind!r}")
    return Rendered(
        outbox_id=row.id, tenant=tenant, to_addr=row.to_addr, to_name=to_name,
        from_name=name, reply_to=reply_to, subject=subject, text=text_body, html=html_body,
        message_id=row.message_id, attachments=attachments,
    )


# -- the relay ---------------------------------------------------------------------------------


@frozen(kw_only=True)
class SendReport:
    """What one :func:`send_due` run did."""

    sent: int = 0
    retried: int = 0
    bounced: int = 0
    failed: int = 0
    cancelled: int = 0
    #: Configuration problems met (each once), for the operator.
    problems: tuple[str, ...] = ()

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.bounced + self.failed + self.cancelled


def due_ids(session: Session, now: datetime, limit: int, tenant: str | None = None) -> list[int]:
    """Outbox rows due now: queued, waiting for a retry, or claimed by a relay whose lease
    ran out (it died).  Oldest first; every practice unless ``tenant`` is given."""
    query = select(OutboxMessage.id).where(
        OutboxMessage.status.in_(DUE_STATES), OutboxMessage.next_attempt_at <= now
    )
    if tenant is not None:
        query = query.where(OutboxMessage.tenant_ref == service.check_ref("tenant", tenant))
    return [
        int(i)
        for i in session.scalars(
            query.order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(max(0, limit))
        )
    ]


@frozen(kw_only=True)
class _Row:
    """The identity of a claimed outbox row (plain values, no ORM object)."""

    id: int
    tenant: str
    client: str | None
    request_id: int | None
    kind: str
    attempts: int


def _finish(
    session: Session,
    row: _Row,
    *,
    status: str,
    now: datetime,
    error: str | None = None,
    next_at: datetime | None = None,
) -> None:
    """Record the outcome on the outbox row, its request, and — for the client's current
    consent request still waiting for an answer — the badge (``bounced`` → "Address
    rejected")."""
    values: dict[str, Any] = {"status": status, "last_error": error}
    if status == SENT:
        values["sent_at"] = now
    if next_at is not None:
        values["next_attempt_at"] = next_at
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row.id, OutboxMessage.tenant_ref == row.tenant)
        .values(**values)
    )
    if row.request_id is None or status == CANCELLED:
        return
    session.execute(
        update(ConsentRequest)
        .where(ConsentRequest.id == row.request_id, ConsentRequest.tenant_ref == row.tenant)
        .values(delivery=status)
    )
    if row.kind == KIND_REQUEST and row.client is not None:
        still_open = (
            select(ConsentRequest.id)
            .where(
                ConsentRequest.id == row.request_id,
                ConsentRequest.used_at.is_(None),
                ConsentRequest.revoked_at.is_(None),
            )
            .exists()
        )
        session.execute(
            update(ConsentStateRow)
            .where(
                ConsentStateRow.tenant_ref == row.tenant,
                ConsentStateRow.client_ref == row.client,
                ConsentStateRow.state == State.REQUESTED.value,
                still_open,
            )
            .values(delivery=status)
        )


@frozen(kw_only=True)
class _Claimed:
    row: _Row
    rendered: Rendered | None = None
    outcome: str | None = None  # set when the row was settled without sending


#: Rows claimed per transaction.  Each claim is a lease of ``RetryPolicy.lease``
#: (10 min by default) that must cover sending the whole group, so keep it small.
CLAIM_GROUP = 10


def _claim_group(
    host: Host, ids: list[int], policy: RetryPolicy
) -> Callable[[Session], list[_Claimed]]:
    """Claim due rows (one conditional UPDATE … RETURNING) and render them, or settle
    those that must not be sent (link used/replaced/expired, given up, unrenderable)."""

    def job(session: Session) -> list[_Claimed]:
        now = service.now_utc(host)
        claimed = session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id.in_(ids),
                OutboxMessage.status.in_(DUE_STATES),
                OutboxMessage.next_attempt_at <= now,
            )
            .values(
                status=SENDING, attempts=OutboxMessage.attempts + 1,
                next_attempt_at=now + policy.lease,
            )
            .returning(OutboxMessage.id)
        ).scalars().all()
        out: list[_Claimed] = []
        msgs = [session.get(OutboxMessage, i, populate_existing=True) for i in sorted(claimed)]
        # Requests queued by a batch get their links now, the claim's rows together (a
        # waiting row is claimed once: its claim gives it a request id).
        minted = links.complete_requests(host, session, [
            m for m in msgs if m is not None and m.kind == KIND_REQUEST and m.request_id is None
        ])
        for msg in msgs:
            assert msg is not None
            row = _Row(id=msg.id, tenant=msg.tenant_ref, client=msg.client_ref,
                       request_id=msg.request_id, kind=msg.kind, attempts=msg.attempts)
            if msg.attempts > 1 and now - msg.created_at > policy.give_up:
                _finish(session, row, status=FAILED, now=now,
                        error=f"gave up after {msg.attempts - 1} attempts: {msg.last_error or ''}")
                out.append(_Claimed(row=row, outcome=FAILED))
                continue
            if msg.id in minted or (msg.kind == links.KIND_RECEIPT and msg.request_id is None):
                # A request queued by a batch (done above), or a receipt queued at booking:
                # its link and address are made now.
                why = (
                    minted[msg.id] if msg.id in minted
                    else links.complete_receipt(host, session, msg)
                )
                if why is not None:
                    _finish(session, row, status=CANCELLED, now=now, error=why)
                    out.append(_Claimed(row=row, outcome=CANCELLED))
                    continue
                row = _Row(id=msg.id, tenant=msg.tenant_ref, client=msg.client_ref,
                           request_id=msg.request_id, kind=msg.kind, attempts=msg.attempts)
            req = (
                session.get(ConsentRequest, msg.request_id, populate_existing=True)
                if msg.request_id else None
            )
            if req is None or req.used_at is not None or req.revoked_at is not None \
                    or req.expires_at <= now:
                _finish(session, row, status=CANCELLED, now=now,
                        error="the link was used, replaced or has expired; not sent")
                out.append(_Claimed(row=row, outcome=CANCELLED))
                continue
            try:
                rendered = render_message(host, session, msg)
            except (RenderError, InputError) as exc:
                _finish(session, row, status=FAILED, now=now, error=str(exc))
                log.warning("outbox %d (practice %s) cannot be sent: %s", msg.id, msg.tenant_ref,
                            exc)
                out.append(_Claimed(row=row, outcome=FAILED))
                continue
            out.append(_Claimed(row=row, rendered=rendered))
        return out

    return job


def _settle(
    host: Host, row: _Row, verdict: str, detail: str, policy: RetryPolicy
) -> Callable[[Session], None]:
    def job(session: Session) -> None:
        now = service.now_utc(host)
        if verdict == RETRY:
            _finish(session, row, status=RETRY, now=now, error=detail,
                    next_at=now + policy.delay(row.attempts))
        else:
            _finish(session, row, status=verdict, now=now, error=detail or None)

    return job


def send_due(
    host: Host,
    *,
    transport: Transport | None = None,
    limit: int = 100,
    rate: float | None = None,
    policy: RetryPolicy | None = None,
    tenant: str | None = None,
) -> SendReport:
    """Deliver up to ``limit`` due outbox messages (of every practice, or of ``tenant``);
    returns what happened.

    Rows are claimed :data:`CLAIM_GROUP` at a time; each message's outcome is committed
    right after it was handed over, so a crash re-sends at most the message in flight
    (and the rest of its claimed group only after the lease).

    :param transport: where mail goes when the host's ``deliver_email`` returns ``None``
        (default: :class:`SmtpTransport` with :meth:`SmtpSettings.from_env`, opened only
        when needed, reused for the run and closed at the end).
    :param rate: at most this many messages per second (throttling), ``None`` for no limit.
    :param policy: retry/give-up timing (default: :meth:`RetryPolicy.from_env`).
    """
    policy = policy or RetryPolicy.from_env()
    ids = run_in_transaction(
        host.session, lambda s: due_ids(s, service.now_utc(host), limit, tenant), commit=False
    )
    counts = {SENT: 0, RETRY: 0, BOUNCED: 0, FAILED: 0, CANCELLED: 0}
    problems: list[str] = []
    own: list[SmtpTransport] = []

    def get_transport() -> Transport:
        if transport is not None:
            return transport
        if not own:
            own.append(SmtpTransport(SmtpSettings.from_env()))
        return own[0]

    pause = 1.0 / rate if rate else 0.0
    try:
        for start in range(0, len(ids), CLAIM_GROUP):
            group = run_in_transaction(
                host.session, _claim_group(host, ids[start : start + CLAIM_GROUP], policy)
            )
            for claimed in group:
                if claimed.rendered is None:
                    if claimed.outcome in counts:
                        counts[claimed.outcome] += 1
                    continue
                started = time.monotonic()
                verdict, detail = _deliver(host, claimed.rendered, get_transport, problems)
                run_in_transaction(host.session, _settle(host, claimed.row, verdict, detail,
                                                         policy))
                counts[verdict] += 1
                if pause:
                    time.sleep(max(0.0, pause - (time.monotonic() - started)))
    finally:
        for t_ in own:
            t_.close()
    return SendReport(
        sent=counts[SENT], retried=counts[RETRY], bounced=counts[BOUNCED],
        failed=counts[FAILED], cancelled=counts[CANCELLED], problems=tuple(problems),
    )


def _deliver(
    host: Host,
    rendered: Rendered,
    get_transport: Callable[[], Transport],
    problems: list[str],
) -> tuple[str, str]:
    """Hand one message to the host's mailer, or to the transport when the host returns
    ``None``: (``sent``/``retry``/``bounced``/``failed``, detail for the outbox row)."""
    try:
        result = host.deliver_email(TenantRef(rendered.tenant), rendered.outgoing())
    except Exception:
        log.exception("outbox %d: the host's deliver_email failed; will retry",
                      rendered.outbox_id)
        return RETRY, "the host's mailer failed"
    if isinstance(result, DeliveryResult):
        if result.status == "sent":
            return SENT, ""
        if result.status == "rejected":
            return BOUNCED, result.detail or "rejected by the host's mailer"
        return RETRY, result.detail or "the host's mailer asked to retry"
    try:
        transport = get_transport()
    except MailConfigError as exc:
        if str(exc) not in problems:
            problems.append(str(exc))
            log.error("%s", exc)
        return RETRY, str(exc)
    try:
        message = rendered.email(transport.from_addr, service.now_utc(host))
    except ValueError:
        return FAILED, "a header would contain a line break; nothing was sent"
    try:
        transport.send(message)
    except Exception as exc:
        verdict, detail = classify(exc)
        log.warning("outbox %d: %s", rendered.outbox_id, detail)
        return (BOUNCED if verdict == "bounce" else RETRY), detail
    return SENT, ""


def pending_count(session: Session) -> int:
    """Messages still to be delivered (queued, retrying or in flight), every practice."""
    return int(
        session.scalar(
            select(func.count()).select_from(OutboxMessage).where(
                or_(*(OutboxMessage.status == s for s in DUE_STATES))
            )
        )
        or 0
    )


__all__ = [
    "MailConfigError",
    "Rendered",
    "RetryPolicy",
    "SendReport",
    "SmtpSettings",
    "SmtpTransport",
    "Transport",
    "classify",
    "render_message",
    "send_due",
]

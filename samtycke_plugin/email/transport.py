"""The built-in SMTP transport: settings from the environment, the retry policy, and
which SMTP failures are retried and which bounce.

Delivery goes through ``host.deliver_email()`` when the host returns a
:class:`~hookspecs.types.DeliveryResult`, otherwise through :class:`SmtpTransport`
(``smtplib``, STARTTLS or implicit TLS, settings from the environment, see
:class:`SmtpSettings`).  Connection errors, time-outs and 4xx replies are retried with
jittered exponential backoff (tenacity's wait functions: 1 min, 2, 4 … capped at 1 h,
plus up to 30 s of jitter) until the give-up age (72 h by default); 5xx replies for the
recipient or the message bounce.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Mapping
from datetime import timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Literal, Protocol

from attrs import field, frozen
from tenacity import RetryCallState, Retrying, wait_exponential, wait_random

from samtycke_plugin.email import addresses
from samtycke_plugin.errors import InputError, SamtyckeError
from samtycke_plugin.inputs import whole_number


class MailConfigError(SamtyckeError):
    """The built-in SMTP transport is needed but not (correctly) configured."""


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
        port = whole_number(raw_port, max_digits=5)
        if raw_port and not (port is not None and 0 < port < 65536):
            raise MailConfigError(f"SAMTYCKE_SMTP_PORT must be a port number, got {raw_port!r}.")
        from_raw = parseaddr(env.get("SAMTYCKE_SMTP_FROM", ""))[1]
        try:
            from_addr = addresses.normalise_address(from_raw)
        except InputError:
            raise MailConfigError(
                "SAMTYCKE_SMTP_FROM must be the sender's e-mail address, e.g. "
                "noreply@example.org."
            ) from None
        return cls(
            host=host,
            port=port if port is not None else _DEFAULT_PORTS[security],
            security=security,  # type: ignore[arg-type]
            user=env.get("SAMTYCKE_SMTP_USER") or None,
            password=env.get("SAMTYCKE_SMTP_PASSWORD") or None,
            from_addr=from_addr,
            timeout=_env_float(env, "SAMTYCKE_SMTP_TIMEOUT", 30.0),
            ca_file=env.get("SAMTYCKE_SMTP_CA_FILE") or None,
        )


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

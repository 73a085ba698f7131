"""Helpers for the e-mail tests: a real SMTP server (aiosmtpd) on a free loopback port,
whose replies a test can script (4xx/5xx at RCPT or DATA), a browser-like WSGI client
for the public link pages, and small parsers for the received mail.

Each test module declares its ``smtp_server`` fixture with :func:`running_server`.
Under ``CI=true`` a server that cannot be started is a failure, not a skip.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import re
import socket
import ssl
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from hostkit import CI
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client, TestResponse
from werkzeug.wrappers import Response

from samtycke_plugin.common import MOUNT_PREFIX
from samtycke_plugin.email.transport import SmtpSettings, SmtpTransport
from samtycke_plugin.web import make_wsgi_app

LINK_RE = re.compile(r"https?://[^\s\"'<>]+/apps/samtycke/([cw])/([A-Za-z0-9_-]{43})")
FROM_ADDR = "noreply@samtycke.example.org"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Received:
    """One message the server accepted."""

    def __init__(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> None:
        self.mail_from = mail_from
        self.rcpt_tos = rcpt_tos
        self.data = data
        self.message: EmailMessage = email.message_from_bytes(  # type: ignore[assignment]
            data, policy=email.policy.default
        )

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]

    def links(self) -> list[tuple[str, str]]:
        """``(purpose letter, token)`` of every app link in the plain-text part."""
        return LINK_RE.findall(self.text)

    def link(self) -> tuple[str, str]:
        found = set(self.links())
        assert len(found) == 1, found
        return found.pop()


class ScriptedHandler:
    """An aiosmtpd handler that records accepted mail and answers as scripted."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        #: address (lower case) → reply at RCPT, e.g. "550 5.1.1 No such user".
        self.rcpt_replies: dict[str, str] = {}
        #: replies for the next DATA commands, e.g. "451 4.3.0 Try again later".
        self.data_replies: deque[str] = deque()
        self.data_attempts = 0
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data_attempts += 1
            if self.data_replies:
                return self.data_replies.popleft()
            data = envelope.original_content or envelope.content
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), data))
        return "250 2.0.0 Message accepted for delivery"


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "samtycke test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "smtp-cert.pem", tmp / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class SmtpServer:
    """A real SMTP server on a loopback port; stop/start keep the port and the handler."""

    def __init__(
        self,
        *,
        security: str = "none",
        cert: tuple[Path, Path] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.handler = ScriptedHandler()
        self.port = free_port()
        self.security = security
        self.cert = cert
        self.credentials = credentials
        self.logins: list[str] = []
        self._controller: Controller | None = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and self.credentials is not None:
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if (login, password) == self.credentials:
                self.logins.append(login)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def start(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.cert is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
            if self.security == "ssl":
                kwargs["ssl_context"] = ctx
            else:
                kwargs["tls_context"] = ctx
                kwargs["require_starttls"] = True
        if self.credentials is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_require_tls"] = True
        if self.security == "ssl":
            kwargs["server_hostname"] = "localhost"
        self._controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, **kwargs
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def settings(self, **overrides: Any) -> SmtpSettings:
        values: dict[str, Any] = {
            "host": "127.0.0.1", "port": self.port, "security": self.security,
            "from_addr": FROM_ADDR, "timeout": 5.0,
            "ca_file": str(self.cert[0]) if self.cert else None,
        }
        if self.credentials is not None:
            values["user"], values["password"] = self.credentials
        values.update(overrides)
        return SmtpSettings(**values)

    def transport(self, **overrides: Any) -> SmtpTransport:
        return SmtpTransport(self.settings(**overrides))

    def env(self) -> dict[str, str]:
        """The same settings as environment variables (for the CLI and from_env)."""
        s = self.settings()
        env = {
            "SAMTYCKE_SMTP_HOST": s.host, "SAMTYCKE_SMTP_PORT": str(s.port),
            "SAMTYCKE_SMTP_SECURITY": s.security, "SAMTYCKE_SMTP_FROM": s.from_addr,
            "SAMTYCKE_SMTP_TIMEOUT": "5",
        }
        if s.ca_file:
            env["SAMTYCKE_SMTP_CA_FILE"] = s.ca_file
        if s.user:
            env["SAMTYCKE_SMTP_USER"] = s.user
            env["SAMTYCKE_SMTP_PASSWORD"] = s.password or ""
        return env


def start_or_skip(server: SmtpServer) -> SmtpServer:
    try:
        server.start()
    except Exception as exc:
        if CI:
            pytest.fail(f"the test SMTP server (aiosmtpd) could not start under CI=true: {exc}")
        pytest.skip(f"the test SMTP server (aiosmtpd) could not start: {exc}")
    return server


def running_server(**kwargs: Any) -> Iterator[SmtpServer]:
    """Body of the ``smtp_server`` fixture each e-mail test module declares::

        @pytest.fixture
        def smtp_server() -> Iterator[SmtpServer]:
            yield from running_server()

    A plain SMTP server on a free loopback port (no TLS, like a local relay), stopped
    after the test.
    """
    server = start_or_skip(SmtpServer(**kwargs))
    try:
        yield server
    finally:
        server.stop()


# -- the public pages through WSGI, as a host mounts them -------------------------------------


def _not_found(environ: dict[str, Any], start_response: Any) -> Any:
    return Response("host page", status=404)(environ, start_response)


# One app for every browser, built when this module is imported (in the main thread),
# as a host builds it once at start-up: Werkzeug compiles each URL rule through
# ``ast.parse``, and CPython 3.11's AST constructor keeps its recursion depth per
# interpreter, so two threads building maps at once can fail with "AST constructor
# recursion depth mismatch" (the 200-confirmation test built one per page in 20 threads).
_MOUNTED = DispatcherMiddleware(_not_found, {MOUNT_PREFIX: make_wsgi_app()})


class Browser:
    """Werkzeug's test client against the app mounted at /apps/samtycke, with
    ``environ["booking.host"]`` set as a host does, from one (random) source address."""

    def __init__(self, host: Any, *, addr: str | None = None) -> None:
        self.host = host
        self.addr = addr or str(ipaddress.IPv4Address(0x0A000000 + uuid.uuid4().int % 2**24))
        self.client = Client(_MOUNTED)

    def _environ(self, extra: dict[str, Any] | None) -> dict[str, Any]:
        env = {"booking.host": self.host, "REMOTE_ADDR": self.addr}
        env.update(extra or {})
        return env

    def get(self, path: str, **kw: Any) -> TestResponse:
        return self.client.get(path, environ_base=self._environ(kw.pop("environ", None)), **kw)

    def head(self, path: str, **kw: Any) -> TestResponse:
        return self.client.head(path, environ_base=self._environ(kw.pop("environ", None)), **kw)

    def post(self, path: str, **kw: Any) -> TestResponse:
        return self.client.post(path, environ_base=self._environ(kw.pop("environ", None)), **kw)


def form_fields(html: str) -> dict[str, str]:
    """Hidden inputs of the page's form."""
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


def path_of(purpose: str, token: str) -> str:
    return f"{MOUNT_PREFIX}/{purpose}/{token}"


#: The host the CLI tests hand to ``samtycke --host smtp_support:cli_host``.
CLI_HOSTS: list[Any] = []


def cli_host() -> Any:
    """Host factory for the CLI (``--host smtp_support:cli_host``)."""
    return CLI_HOSTS[-1]

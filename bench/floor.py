"""The floors: raw DB-API connections, hand-written SQL and a bare Jinja2 template."""

from __future__ import annotations

import sqlite3
from typing import Any

import jinja2
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

floor_metadata = MetaData()

#: A ledger-shaped table for the P2 floor (one row + commit), same columns and indexes.
floor_event = Table(
    "bench_floor_event",
    floor_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_ref", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("client_ref", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("text_version_id", Integer),
    Column("text_major", Integer),
    Column("text_sha256", String(64)),
    Column("language", String(8)),
    Column("channel", String(24), nullable=False),
    Column("method", String(24)),
    Column("actor", String(160), nullable=False),
    Column("given_at", DateTime(timezone=True)),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("booking_ref", String(64)),
    Column("request_id", Integer),
    Column("evidence_sha256", String(64)),
    Column("prev_hash", String(64), nullable=False),
    Column("row_hash", String(64), nullable=False),
    UniqueConstraint("tenant_ref", "seq", name="uq_bench_floor_event_seq"),
    Index("ix_bench_floor_event_client", "tenant_ref", "client_ref", "seq"),
)

def floor_event_insert(tenant: str, now: str) -> tuple[str, list[Any]]:
    """P2's floor: its one-row insert (``?`` placeholders, ``seq`` first) and the row's
    other values, in ``tenant`` at ``now``."""
    cols = [c.name for c in floor_event.columns if c.name not in ("id", "seq")]
    sql = (f"INSERT INTO bench_floor_event (seq, {', '.join(cols)}) "
           f"VALUES (?, {', '.join('?' for _ in cols)})")
    row = {"tenant_ref": tenant, "client_ref": "x", "state": "given", "text_version_id": 1,
           "text_major": 1, "text_sha256": "a" * 64, "language": "sv",
           "channel": "online_booking", "method": "checkbox", "actor": "client",
           "given_at": now, "occurred_at": now, "expires_at": None, "booking_ref": "b1",
           "request_id": None, "evidence_sha256": "b" * 64, "prev_hash": "0" * 64,
           "row_hash": "c" * 64}
    return sql, [row[c] for c in cols]


#: An outbox-shaped table for the P5 floor (executemany of the same number of rows).
floor_outbox = Table(
    "bench_floor_outbox",
    floor_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_ref", String(64), nullable=False),
    Column("client_ref", String(64)),
    Column("request_id", Integer),
    Column("kind", String(24), nullable=False),
    Column("message_id", String(255), nullable=False, unique=True),
    Column("to_addr", String(320)),
    Column("locale", String(8), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_bench_floor_outbox_due", "status", "next_attempt_at"),
)


class Raw:
    """A raw DB-API connection to the benchmark database, in its default (autocommit) mode."""

    def __init__(self, engine: Engine) -> None:
        self.dialect = engine.dialect.name
        url = engine.url
        if self.dialect == "sqlite":
            conn: Any = sqlite3.connect(url.database or "", isolation_level=None)
            # The same durability settings as the app's engine (samtycke_plugin.db).
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            self.mark = "?"
        else:
            import psycopg

            conn = psycopg.connect(
                host=url.host, port=url.port or 5432, user=url.username,
                password=url.password, dbname=url.database, autocommit=True,
            )
            # No server-side prepared statements, as for the app: a host's pool resets
            # each connection with a ROLLBACK after every request, and psycopg drops its
            # prepared statements on rollback, so every request plans its statements.
            conn.prepare_threshold = None
            self.mark = "%s"
        self.conn = conn
        self.cur = conn.cursor()

    def sql(self, statement: str) -> str:
        """Hand-written SQL with ``?`` placeholders, in this driver's parameter style."""
        return statement.replace("?", self.mark)

    def begin(self) -> None:
        self.cur.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")

    def commit(self) -> None:
        self.cur.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


#: The status lookup of one client (the floor of P1 and P6).
STATUS_SQL = (
    "SELECT state, text_major, expires_at, since, delivery FROM samtycke_consent_state "
    "WHERE tenant_ref = ? AND client_ref = ?"
)

#: An equivalent of samtycke/profile_panel.html without the app's machinery.
PANEL_TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    '<section class="samtycke-panel" aria-labelledby="samtycke-panel-title">\n'
    '  <h2 id="samtycke-panel-title">Samtycke</h2>\n'
    '  <p><span class="samtycke-badge samtycke-{{ tone }}" data-status="{{ status }}">'
    '<span aria-hidden="true">{{ icon }}</span> {{ label }}</span></p>\n'
    '  <p class="samtycke-reason">{{ reason }}{% if since %} Givet {{ since }}.{% endif %}</p>\n'
    '  <ul class="samtycke-actions">\n'
    '    {% if status != "valid" %}<li><a href="{{ prefix }}/clients/{{ client }}/obtain">'
    'Inhämta samtycke</a></li>{% endif %}\n'
    '    {% if withdrawable %}<li><a href="{{ prefix }}/clients/{{ client }}/withdraw">'
    'Registrera återkallelse</a></li>{% endif %}\n'
    '    <li><a href="{{ prefix }}/clients/{{ client }}/history">Samtyckeshistorik</a></li>\n'
    '  </ul>\n'
    '</section>\n'
)

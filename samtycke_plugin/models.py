"""The app's tables: own metadata, every table prefixed ``samtycke_``, no foreign
keys into host tables (practice, client and booking are opaque string refs).

The schema itself is created by the Alembic migrations in
``samtycke_plugin/migrations``; these classes are the typed view of it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

GENESIS_HASH = "0" * 64

#: The key of every practice's first purpose (``purposes.DEFAULT_PURPOSE``, which imports
#: this module): rows written before purposes existed belong to it.
_CARE = "care"

#: The outbox kind of a consent request mail.
KIND_REQUEST = "consent_request"
#: An outbox row of a batch request whose link the relay has not minted yet.
WAITING_REQUEST = f"kind = '{KIND_REQUEST}' AND request_id IS NULL AND status = 'queued'"

#: 64-bit ids on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


class _SqliteUTCText(sqlite.DATETIME):
    """SQLite's DATETIME (ISO text) that also accepts a ``datetime`` coming back: a host
    connection opened with ``detect_types`` (Django) converts DATETIME columns itself."""

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        parse = super().result_processor(dialect, coltype)

        def process(value: Any) -> Any:
            if value is None or isinstance(value, datetime) or parse is None:
                return value
            return parse(value)

        return process


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC as text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SqliteUTCText())  # type: ignore[no-untyped-call]
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Practice(Base):
    """One practice (tenant) that has activated the app; also the chain head."""

    __tablename__ = "samtycke_practice"

    tenant_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean)
    setup_complete: Mapped[bool] = mapped_column(Boolean)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Held equal to the default purpose's ``current_major`` for the schema; the app
    #: reads the purpose row (:class:`Purpose`).
    current_major: Mapped[int] = mapped_column(Integer)
    default_language: Mapped[str] = mapped_column(String(8))
    head_seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    activated_at: Mapped[datetime]
    deactivated_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class Purpose(Base):
    """One purpose a practice asks consent for, with its own text versions."""

    __tablename__ = "samtycke_purpose"

    tenant_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    required: Mapped[bool] = mapped_column(Boolean)
    validity_days: Mapped[int | None] = mapped_column(Integer)
    #: ``{language: text}``.
    names: Mapped[dict[str, str]] = mapped_column(JSON)
    #: ``{language: text}``: the legal ground the practice declares beside consent.
    legal_basis: Mapped[dict[str, str]] = mapped_column(JSON)
    current_major: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    archived_at: Mapped[datetime | None]


def _purpose_key() -> Mapped[str]:
    return mapped_column(String(32), server_default=_CARE)


class TextVersion(Base):
    """An immutable version of a practice's consent text of one purpose in one language."""

    __tablename__ = "samtycke_text_version"
    __table_args__ = (
        UniqueConstraint(
            "tenant_ref", "purpose_key", "language", "major", "minor",
            name="uq_samtycke_text_version_purpose_version",
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_ref: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    major: Mapped[int] = mapped_column(Integer)
    minor: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    change_kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime]
    purpose_key: Mapped[str] = _purpose_key()


class ConsentEvent(Base):
    """One append-only, hash-chained ledger event."""

    __tablename__ = "samtycke_consent_event"
    __table_args__ = (
        UniqueConstraint("tenant_ref", "seq"),
        Index("ix_samtycke_consent_event_client", "tenant_ref", "client_ref", "seq"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_ref: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    client_ref: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    text_version_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("samtycke_text_version.id")
    )
    text_major: Mapped[int | None] = mapped_column(Integer)
    text_sha256: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(24))
    method: Mapped[str | None] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(160))
    given_at: Mapped[datetime | None]
    occurred_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    booking_ref: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[int | None] = mapped_column(Id)
    evidence_sha256: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))
    purpose_key: Mapped[str] = _purpose_key()
    #: SHA-256 of the change note shown above the text (``None``: none was shown).
    change_note_sha256: Mapped[str | None] = mapped_column(String(64))
    #: SHA-256 of the scan of a signed paper form (``samtycke_attachment``), if any.
    attachment_sha256: Mapped[str | None] = mapped_column(String(64))


class Evidence(Base):
    """Personal evidence of an event (erasable: the chain covers only its salted hash)."""

    __tablename__ = "samtycke_evidence"
    __table_args__ = (Index("ix_samtycke_evidence_client", "tenant_ref", "client_ref"),)

    event_id: Mapped[int] = mapped_column(
        Id, ForeignKey("samtycke_consent_event.id"), primary_key=True
    )
    tenant_ref: Mapped[str] = mapped_column(String(64))
    client_ref: Mapped[str] = mapped_column(String(64))
    salt: Mapped[str] = mapped_column(String(32))
    ip_prefix: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    note: Mapped[str | None] = mapped_column(Text)


class ConsentStateRow(Base):
    """The projection: one row per practice, client and purpose (rebuildable from the
    ledger)."""

    __tablename__ = "samtycke_consent_state"
    __table_args__ = (
        Index(
            "ix_samtycke_consent_state_valid",
            "tenant_ref", "purpose_key", "text_major", "state", "expires_at", "client_ref",
        ),
    )

    tenant_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    text_major: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime | None]
    since: Mapped[datetime]
    last_seq: Mapped[int] = mapped_column(BigInteger)
    delivery: Mapped[str | None] = mapped_column(String(16))
    purpose_key: Mapped[str] = mapped_column(String(32), primary_key=True, server_default=_CARE)


class ConsentRequest(Base):
    """An e-mailed link (consent or withdrawal); the token is stored only as a hash."""

    __tablename__ = "samtycke_consent_request"
    __table_args__ = (
        Index(
            "uq_samtycke_consent_request_pending",
            "tenant_ref", "client_ref", "purpose",
            unique=True,
            sqlite_where=text("used_at IS NULL AND revoked_at IS NULL"),
            postgresql_where=text("used_at IS NULL AND revoked_at IS NULL"),
        ),
        # Erasure deletes requests; SQLite would hand a deleted highest id to the next
        # request, and chained events name requests by id: never reuse one.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_ref: Mapped[str] = mapped_column(String(64))
    client_ref: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(16))
    text_version_id: Mapped[int | None] = mapped_column(Id)
    text_major: Mapped[int | None] = mapped_column(Integer)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    nonce: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(160))
    delivery: Mapped[str] = mapped_column(String(16))
    batch_key: Mapped[str | None] = mapped_column(String(64))
    #: ``{purpose key: content version}`` a consent link asks about (``None``: the
    #: default purpose only, at ``text_major``; withdrawal links name none).
    purpose_majors: Mapped[dict[str, int] | None] = mapped_column(JSON(none_as_null=True))


class OutboxMessage(Base):
    """A queued e-mail (transactional outbox), rendered and sent by the relay."""

    __tablename__ = "samtycke_outbox"
    __table_args__ = (
        Index("ix_samtycke_outbox_due", "status", "next_attempt_at"),
        # A batch request queues one row per client and the relay mints the link when it
        # claims the row; this index lets such a row wait at most once per client (a
        # double "send to all" inserts with ON CONFLICT DO NOTHING against it).
        Index(
            "uq_samtycke_outbox_waiting_request",
            "tenant_ref", "client_ref",
            unique=True,
            sqlite_where=text(WAITING_REQUEST),
            postgresql_where=text(WAITING_REQUEST),
        ),
        # Erasure deletes mail; a relay still holding a deleted id must not reach a new row.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_ref: Mapped[str] = mapped_column(String(64))
    client_ref: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[int | None] = mapped_column(Id)
    kind: Mapped[str] = mapped_column(String(24))
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    to_addr: Mapped[str | None] = mapped_column(String(320))
    locale: Mapped[str] = mapped_column(String(8))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


#: A batch job that has not finished (queued, or running under a runner's lease).
UNFINISHED_JOB = "state IN ('queued', 'running')"


class BatchJob(Base):
    """A batch request ("ask everyone without valid consent") run outside the web
    request, in chunks, by the relay: its options, state, progress and counts."""

    __tablename__ = "samtycke_batch_job"
    __table_args__ = (
        # At most one unfinished job per practice: a second "send to all" while one runs
        # finds it instead of starting another.
        Index(
            "uq_samtycke_batch_job_unfinished",
            "tenant_ref",
            unique=True,
            sqlite_where=text(UNFINISHED_JOB),
            postgresql_where=text(UNFINISHED_JOB),
        ),
        Index("ix_samtycke_batch_job_state", "state"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_ref: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime]
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    batch_key: Mapped[str] = mapped_column(String(64))
    #: queued, running, done or failed.
    state: Mapped[str] = mapped_column(String(16))
    #: The runner holding the job and until when (a runner that died loses it then).
    runner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    #: Clients expected (counted when the job starts) and looked at so far.
    total: Mapped[int | None] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer)
    #: Where the next chunk starts (the last client ref of a host's client query).
    after_ref: Mapped[str | None] = mapped_column(String(64))
    asked: Mapped[int] = mapped_column(Integer)
    skipped_valid: Mapped[int] = mapped_column(Integer)
    skipped_pending: Mapped[int] = mapped_column(Integer)
    skipped_no_email: Mapped[int] = mapped_column(Integer)
    skipped_bad_name: Mapped[int] = mapped_column(Integer)
    skipped_withdrawn: Mapped[int] = mapped_column(Integer)
    skipped_refused: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class Checkpoint(Base):
    """A signed statement of a practice's chain head at some sequence number."""

    __tablename__ = "samtycke_checkpoint"
    __table_args__ = (UniqueConstraint("tenant_ref", "seq", "key_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_ref: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)


APPEND_ONLY_TABLES = ("samtycke_consent_event", "samtycke_text_version")


class AccessLogEntry(Base):
    """One view or export of a client's (or the whole practice's) consent data by a
    person: who, what, which client, when and how.  Append-only: the database refuses
    UPDATE and DELETE, and the row names the client only by the host's opaque ref."""

    __tablename__ = "samtycke_access_log"
    __table_args__ = (
        Index("ix_samtycke_access_log_practice", "tenant_ref", "id"),
        Index("ix_samtycke_access_log_client", "tenant_ref", "client_ref", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_ref: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(160))
    action: Mapped[str] = mapped_column(String(32))
    #: page (the app's practitioner pages), download (a host's export route) or cli.
    via: Mapped[str] = mapped_column(String(16))
    #: ``None``: the whole practice (the status list).
    client_ref: Mapped[str | None] = mapped_column(String(64))
    #: A short code (format, language), never free text or personal data.
    detail: Mapped[str | None] = mapped_column(String(80))


class PageLink(Base):
    """A link to a client's own page ("Mina samtycken"): long-lived, one client of one
    practice, the token stored only as its hash; several may be valid at once until
    the practice revokes them."""

    __tablename__ = "samtycke_page_link"
    __table_args__ = (
        Index("ix_samtycke_page_link_client", "tenant_ref", "client_ref"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_ref: Mapped[str] = mapped_column(String(64))
    client_ref: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    nonce: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(160))
    revoked_at: Mapped[datetime | None]


class LinkWish(Base):
    """A "send me my link" form sent (known address or not), until the relay handles it."""

    __tablename__ = "samtycke_link_wish"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_ref: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(320))
    locale: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]


class Attachment(Base):
    """The scan or photo of a signed paper form, stored by the app.  The event that
    recorded the consent names it by its SHA-256 (``attachment_sha256``, in the hash
    chain); erasure of the client empties ``data`` and keeps the rest."""

    __tablename__ = "samtycke_attachment"
    __table_args__ = (
        UniqueConstraint("tenant_ref", "client_ref", "sha256"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    tenant_ref: Mapped[str] = mapped_column(String(64))
    client_ref: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    #: The file itself; ``None`` once the client was erased.
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    erased_at: Mapped[datetime | None]


class RenewalAsked(Base):
    """One renewal request per consent: the client's consent to a purpose that lapses at
    ``expires_at`` was looked at for renewal (written in the transaction that queues the
    request, so two workers, or one restarted after dying, never ask twice)."""

    __tablename__ = "samtycke_renewal"

    tenant_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(primary_key=True)
    asked_at: Mapped[datetime]
    #: The consent request queued (``None``: not asked, see ``outcome``).
    request_id: Mapped[int | None] = mapped_column(Id)
    #: ``asked`` or why the client was not asked (a short code, no personal data).
    outcome: Mapped[str] = mapped_column(String(80))


class ReminderSent(Base):
    """The one reminder of an e-mailed consent request (written in the transaction that
    queues it: at most one reminder per request, whatever runs the work)."""

    __tablename__ = "samtycke_reminder"

    tenant_ref: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    reminded_at: Mapped[datetime]
    #: The reminder's outbox row (``None``: not sent, see ``outcome``).
    outbox_id: Mapped[int | None] = mapped_column(Id)
    outcome: Mapped[str] = mapped_column(String(80))

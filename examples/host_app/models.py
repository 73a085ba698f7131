"""The booking platform's own tables (prefix ``host_``).

These belong to the platform, not to Samtycke: the app never reads them and
keeps its own ``samtycke_`` tables with opaque references (practice id, client
id, booking id as strings).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both SQLite (stored naive) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Practice(Base):
    """A practice: one tenant of the platform."""

    __tablename__ = "host_practice"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    city: Mapped[str | None] = mapped_column(String(80))
    locale: Mapped[str] = mapped_column(String(8), default="sv")
    created_at: Mapped[datetime]


class Staff(Base):
    """A practitioner (or receptionist) who signs in."""

    __tablename__ = "host_staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    practice_id: Mapped[int] = mapped_column(ForeignKey("host_practice.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(20))  # "owner" or "staff"
    #: May record consent the client gave outside the platform (paper, verbal).
    can_record_consent: Mapped[bool] = mapped_column(Boolean, default=True)

    practice: Mapped[Practice] = relationship(lazy="joined")


class Service(Base):
    """Something a client can book (name in both languages)."""

    __tablename__ = "host_service"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    practice_id: Mapped[int] = mapped_column(ForeignKey("host_practice.id"), index=True)
    name_sv: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))
    minutes: Mapped[int] = mapped_column(Integer)
    price_sek: Mapped[int] = mapped_column(Integer)

    def name(self, language: str) -> str:
        return self.name_sv if language == "sv" else self.name_en


def email_key(email: str | None) -> str | None:
    """The form of an address two clients of one practice may not share (case-insensitive)."""
    return email.strip().lower() if email and email.strip() else None


class Client(Base):
    """A client of one practice.

    One client per practice and e-mail address: ``email_key`` (set whenever ``email`` is)
    is unique per practice, so two simultaneous first bookings with one address cannot
    create two clients.  Clients without an address have no key and no such limit.
    """

    __tablename__ = "host_client"
    __table_args__ = (
        Index("ix_host_client_practice_name", "practice_id", "name", "id"),
        Index("ix_host_client_practice_email", "practice_id", "email"),
        UniqueConstraint("practice_id", "email_key", name="uq_host_client_practice_email_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    practice_id: Mapped[int] = mapped_column(ForeignKey("host_practice.id"))
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str | None] = mapped_column(String(254))
    email_key: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    locale: Mapped[str] = mapped_column(String(8), default="sv")
    notes: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(10))  # "online" or "staff"
    created_at: Mapped[datetime]

    @validates("email")
    def _keep_key(self, _name: str, value: str | None) -> str | None:
        self.email_key = email_key(value)
        return value


class Booking(Base):
    """A booked time. One treatment room per practice: one booking per start time."""

    __tablename__ = "host_booking"
    __table_args__ = (UniqueConstraint("practice_id", "starts_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    practice_id: Mapped[int] = mapped_column(ForeignKey("host_practice.id"))
    client_id: Mapped[int] = mapped_column(ForeignKey("host_client.id"), index=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("host_service.id"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    channel: Mapped[str] = mapped_column(String(10))  # "online" or "staff"
    created_at: Mapped[datetime]
    #: When the reminder the day before was sent (``None``: not yet).
    reminder_sent_at: Mapped[datetime | None]

    client: Mapped[Client] = relationship(lazy="joined")
    service: Mapped[Service] = relationship(lazy="joined")


class AppActivation(Base):
    """Which installed app is active for which practice (the app menu)."""

    __tablename__ = "host_app_activation"

    practice_id: Mapped[int] = mapped_column(ForeignKey("host_practice.id"), primary_key=True)
    app_key: Mapped[str] = mapped_column(String(60), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime]
    changed_by: Mapped[int | None] = mapped_column(Integer)


class DevMail(Base):
    """Development mailbox: e-mails the platform and its apps "sent" in demo mode."""

    __tablename__ = "host_dev_mail"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    practice_id: Mapped[int | None] = mapped_column(Integer, index=True)
    source: Mapped[str] = mapped_column(String(40))  # "platform" or the app key
    to: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(300))
    sent_at: Mapped[datetime]


class StaffSession(Base):
    """A live sign-in: the browser's session holds the random id, this table its hash.

    A session cookie is only honoured while its row exists, so signing out (which
    deletes the row) ends it on the server too: a copy of the cookie taken before
    does not sign anyone in afterwards.
    """

    __tablename__ = "host_staff_session"

    sid_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("host_staff.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(index=True)


class SignInFailure(Base):
    """One wrong password, counted per account and per source address for a while.

    ``subject`` is a hash of ``account:<e-mail>`` or ``source:<address>``, so the
    table holds neither the addresses people typed nor where they came from.
    """

    __tablename__ = "host_sign_in_failure"
    __table_args__ = (Index("ix_host_sign_in_failure_subject_at", "subject", "failed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[datetime] = mapped_column(index=True)

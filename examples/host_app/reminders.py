"""Booking reminders: an e-mail the day before each booking, to clients who may be contacted.

Who may be contacted is asked of the practice's consent app, for the purpose
:data:`PURPOSE`, in one lookup for all the clients of a batch (or of a page of the client
list).  A practice with the app active but without that purpose reminds nobody: none of
its clients was asked.  A practice without a consent app keeps the platform's own rule:
every client with an e-mail address is reminded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from examples.host_app import mailer
from examples.host_app.i18n import translate, when_label
from examples.host_app.models import Booking, Practice
from examples.host_app.runtime import platform
from examples.host_app.scheduling import ZONE, local

#: The consent purpose that reminders rest on (the key of the app's catalogue entry).
PURPOSE = "reminders"


@dataclass
class Batch:
    """A practice's bookings of tomorrow, sorted by what their reminder does."""

    practice: Practice
    due: list[Booking] = field(default_factory=list)
    not_allowed: list[Booking] = field(default_factory=list)
    no_email: list[Booking] = field(default_factory=list)
    already: list[Booking] = field(default_factory=list)
    sent: list[Booking] = field(default_factory=list)

    def rows(self) -> list[tuple[Booking, str]]:
        """Every booking with what happens to its reminder, by start time."""
        kinds = [(b, "due") for b in self.due] + [(b, "not_allowed") for b in self.not_allowed]
        kinds += [(b, "no_email") for b in self.no_email] + [(b, "sent") for b in self.already]
        return sorted(kinds, key=lambda row: (row[0].starts_at, row[0].id))


def contactable(practice_id: int, client_ids: Sequence[int]) -> dict[int, bool]:
    """Whether each client may be sent reminders, in one lookup."""
    found = platform().apps.may_use(practice_id, client_ids, PURPOSE)
    return {c: True if found is None else found[str(c)] for c in client_ids}


def tomorrow(now: datetime) -> tuple[datetime, datetime]:
    """Tomorrow in the practice's time zone, as a UTC range ``[start, end)``."""
    day = local(now).date() + timedelta(days=1)
    start = datetime.combine(day, time(0), tzinfo=ZONE)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=ZONE)
    return start.astimezone(UTC), end.astimezone(UTC)


def plan(session: Session, practice: Practice, now: datetime, *, lock: bool = False) -> Batch:
    """Tomorrow's bookings of ``practice`` and whether each gets a reminder (``lock``:
    the bookings stay locked until commit, so two senders never remind twice)."""
    start, end = tomorrow(now)
    query = (select(Booking).where(Booking.practice_id == practice.id,
                                   Booking.starts_at >= start, Booking.starts_at < end)
             .order_by(Booking.starts_at, Booking.id))
    if lock:
        query = query.with_for_update(of=Booking).execution_options(populate_existing=True)
    bookings = session.scalars(query).unique().all()
    batch = Batch(practice=practice)
    waiting = []
    for booking in bookings:
        if booking.reminder_sent_at is not None:
            batch.already.append(booking)
        elif not booking.client.email:
            batch.no_email.append(booking)
        else:
            waiting.append(booking)
    allowed = contactable(practice.id, sorted({b.client_id for b in waiting}))
    for booking in waiting:
        (batch.due if allowed[booking.client_id] else batch.not_allowed).append(booking)
    return batch


def reminder_text(booking: Booking, practice: Practice) -> tuple[str, str]:
    """The reminder's subject and body, in the client's language."""
    language = booking.client.locale
    subject = translate(language, "Reminder: your booking at %(practice)s tomorrow") % {
        "practice": practice.name}
    lines = [
        translate(language, "Hello %(name)s,") % {"name": booking.client.name},
        "",
        translate(language, "A reminder of your booking tomorrow:"),
        f"  {booking.service.name(language)}",
        f"  {when_label(booking.starts_at, language)}",
        f"  {practice.name}" + (f", {practice.city}" if practice.city else ""),
        "",
        translate(language, "To change or cancel, contact the practice: %(contact)s")
        % {"contact": ", ".join(x for x in (practice.phone, practice.email) if x)},
    ]
    return subject, "\n".join(lines)


def send(session: Session, practice: Practice, now: datetime) -> Batch:
    """Send the reminders of ``practice`` that are due, in the caller's transaction."""
    batch = plan(session, practice, now, lock=True)
    for booking in batch.due:
        subject, text = reminder_text(booking, practice)
        if mailer.send(practice, booking.client.email or "", subject, text):
            booking.reminder_sent_at = now
            batch.sent.append(booking)
    session.flush()
    return batch


def send_all(session: Session, now: datetime) -> list[Batch]:
    """Every practice's due reminders, each practice in its own transaction."""
    start, end = tomorrow(now)
    practice_ids = session.scalars(
        select(Booking.practice_id).where(Booking.starts_at >= start, Booking.starts_at < end,
                                          Booking.reminder_sent_at.is_(None))
        .distinct().order_by(Booking.practice_id)).all()
    session.rollback()
    batches = []
    for practice_id in practice_ids:
        practice = session.get(Practice, practice_id)
        if practice is not None:
            batches.append(send(session, practice, now))
            session.commit()
    return batches

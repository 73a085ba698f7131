"""Opening hours and free times of a practice (one treatment room, hourly slots)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from examples.host_app.models import Booking

ZONE = ZoneInfo("Europe/Stockholm")
OPENING_HOURS = range(9, 17)  # first start 09:00, last start 16:00
DAYS_AHEAD = 14


def local(moment: datetime) -> datetime:
    return moment.astimezone(ZONE)


def slot_value(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def parse_slot(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def candidate_slots(now: datetime, days: int = DAYS_AHEAD) -> list[datetime]:
    """Weekday hourly start times from the next full hour on, in UTC."""
    today = local(now).date()
    out: list[datetime] = []
    for offset in range(days):
        day: date = today + timedelta(days=offset)
        if day.weekday() >= 5:
            continue
        for hour in OPENING_HOURS:
            start = datetime.combine(day, time(hour), tzinfo=ZONE).astimezone(UTC)
            if start > now + timedelta(minutes=30):
                out.append(start)
    return out


def free_slots(session: Session, practice_id: int, now: datetime) -> list[datetime]:
    slots = candidate_slots(now)
    if not slots:
        return []
    taken = set(session.scalars(
        select(Booking.starts_at).where(
            Booking.practice_id == practice_id,
            Booking.starts_at >= slots[0], Booking.starts_at <= slots[-1],
        )
    ))
    return [s for s in slots if s not in taken]


def by_day(slots: list[datetime]) -> list[tuple[date, list[datetime]]]:
    days: dict[date, list[datetime]] = {}
    for slot in slots:
        days.setdefault(local(slot).date(), []).append(slot)
    return list(days.items())

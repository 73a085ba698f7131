"""The pure rules of renewal: "expires soon", when a renewal request and when a
reminder is due; the settings that steer them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from samtycke_plugin.errors import SettingsError
from samtycke_plugin.rules import (
    Snapshot,
    State,
    Status,
    expires_soon,
    reminder_due,
    renewal_due,
    renewal_window,
    status,
)
from samtycke_plugin.settings import PracticeSettings, structure_settings, unstructure_settings

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
SETTINGS = PracticeSettings(renew_days_before=30, remind_after_days=7)
YEAR = 365


def snap(state: State = State.GIVEN, major: int = 1, expires: datetime | None = None) -> Snapshot:
    return Snapshot(state=state, text_major=major, expires_at=expires, since=NOW)


def _soon(s: Snapshot | None, major: int = 1, settings: PracticeSettings = SETTINGS) -> bool:
    return expires_soon(s, major, NOW, settings, validity_days=YEAR)


def test_expires_soon_is_valid_consent_lapsing_within_the_window() -> None:
    assert _soon(snap(expires=NOW + timedelta(days=30)))
    assert _soon(snap(State.RENEWED, expires=NOW + timedelta(days=1)))
    assert not _soon(snap(expires=NOW + timedelta(days=30, seconds=1)))
    assert not _soon(snap(expires=None))  # no end date
    assert not _soon(snap(expires=NOW))  # lapsed: expired
    assert not _soon(snap(expires=NOW + timedelta(days=3)), major=2)  # outdated
    assert not _soon(snap(State.WITHDRAWN, expires=NOW + timedelta(days=3)))
    assert not _soon(None)
    off = PracticeSettings(renew_days_before=0)
    assert not _soon(snap(expires=NOW + timedelta(days=1)), settings=off)


def test_the_window_is_at_most_half_the_lifetime() -> None:
    assert renewal_window(SETTINGS, None) == 30
    assert renewal_window(SETTINGS, YEAR) == 30
    assert renewal_window(SETTINGS, 30) == 15
    assert renewal_window(SETTINGS, 1) == 0
    assert renewal_window(PracticeSettings(renew_days_before=0), YEAR) == 0
    # Consent that lasts 30 days is not "expiring soon" the day it is given.
    just_given = snap(expires=NOW + timedelta(days=30))
    assert not expires_soon(just_given, 1, NOW, SETTINGS, validity_days=30)
    assert expires_soon(just_given, 1, NOW + timedelta(days=15), SETTINGS, validity_days=30)


def test_a_renewal_is_due_once_per_end_date() -> None:
    soon = snap(expires=NOW + timedelta(days=10))
    assert renewal_due(soon, 1, NOW, SETTINGS, validity_days=YEAR, already_asked=False)
    assert not renewal_due(soon, 1, NOW, SETTINGS, validity_days=YEAR, already_asked=True)
    later = snap(expires=NOW + timedelta(days=100))
    assert not renewal_due(later, 1, NOW, SETTINGS, validity_days=YEAR, already_asked=False)
    assert renewal_due(later, 1, NOW + timedelta(days=70), SETTINGS, validity_days=YEAR, already_asked=False)


def _reminder(**over: object) -> bool:
    values: dict[str, object] = {
        "requested_at": NOW - timedelta(days=7), "link_expires_at": NOW + timedelta(days=7),
        "answered": False, "delivered": True, "reminded": False, "now": NOW,
        "settings": SETTINGS,
    }
    values.update(over)
    return reminder_due(**values)  # type: ignore[arg-type]


def test_one_reminder_for_an_unanswered_delivered_request_with_a_working_link() -> None:
    assert _reminder()
    assert not _reminder(requested_at=NOW - timedelta(days=6, hours=23))
    assert not _reminder(answered=True)
    assert not _reminder(delivered=False)  # bounced or not sent yet
    assert not _reminder(reminded=True)
    assert not _reminder(link_expires_at=NOW)
    assert not _reminder(settings=PracticeSettings(remind_after_days=0))


@given(
    days_left=st.integers(min_value=-5, max_value=400),
    window=st.integers(min_value=0, max_value=365),
    lifetime=st.one_of(st.none(), st.integers(min_value=1, max_value=3650)),
)
def test_expires_soon_implies_valid(days_left: int, window: int, lifetime: int | None) -> None:
    settings = PracticeSettings(renew_days_before=window)
    s = snap(expires=NOW + timedelta(days=days_left))
    soon = expires_soon(s, 1, NOW, settings, validity_days=lifetime)
    if soon:
        assert status(s, 1, NOW) is Status.VALID
    effective = window if lifetime is None else min(window, lifetime // 2)
    assert soon == (effective > 0 and 0 < days_left <= effective)


def test_renewal_settings_are_checked_and_kept() -> None:
    s = structure_settings({"renew_days_before": "14", "remind_after_days": "0"})
    assert (s.renew_days_before, s.remind_after_days) == (14, 0)
    assert structure_settings(unstructure_settings(s)) == s
    assert (PracticeSettings().renew_days_before, PracticeSettings().remind_after_days) == (30, 7)
    with pytest.raises(SettingsError, match="renew_days_before"):
        structure_settings({"renew_days_before": 366})
    with pytest.raises(SettingsError, match="remind_after_days"):
        structure_settings({"remind_after_days": -1})

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
    status,
)
from samtycke_plugin.settings import PracticeSettings, structure_settings, unstructure_settings

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
SETTINGS = PracticeSettings(renew_days_before=30, remind_after_days=7)


def snap(state: State = State.GIVEN, major: int = 1, expires: datetime | None = None) -> Snapshot:
    return Snapshot(state=state, text_major=major, expires_at=expires, since=NOW)


def test_expires_soon_is_valid_consent_lapsing_within_the_window() -> None:
    assert expires_soon(snap(expires=NOW + timedelta(days=30)), 1, NOW, SETTINGS)
    assert expires_soon(snap(State.RENEWED, expires=NOW + timedelta(days=1)), 1, NOW, SETTINGS)
    assert not expires_soon(snap(expires=NOW + timedelta(days=30, seconds=1)), 1, NOW, SETTINGS)
    assert not expires_soon(snap(expires=None), 1, NOW, SETTINGS)  # no end date
    assert not expires_soon(snap(expires=NOW), 1, NOW, SETTINGS)  # lapsed: expired
    assert not expires_soon(snap(expires=NOW + timedelta(days=3)), 2, NOW, SETTINGS)  # outdated
    assert not expires_soon(snap(State.WITHDRAWN, expires=NOW + timedelta(days=3)), 1, NOW,
                            SETTINGS)
    assert not expires_soon(None, 1, NOW, SETTINGS)
    off = PracticeSettings(renew_days_before=0)
    assert not expires_soon(snap(expires=NOW + timedelta(days=1)), 1, NOW, off)


def test_a_renewal_is_due_once_per_end_date() -> None:
    soon = snap(expires=NOW + timedelta(days=10))
    assert renewal_due(soon, 1, NOW, SETTINGS, already_asked=False)
    assert not renewal_due(soon, 1, NOW, SETTINGS, already_asked=True)
    later = snap(expires=NOW + timedelta(days=100))
    assert not renewal_due(later, 1, NOW, SETTINGS, already_asked=False)
    assert renewal_due(later, 1, NOW + timedelta(days=70), SETTINGS, already_asked=False)


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
)
def test_expires_soon_implies_valid(days_left: int, window: int) -> None:
    settings = PracticeSettings(renew_days_before=window)
    s = snap(expires=NOW + timedelta(days=days_left))
    soon = expires_soon(s, 1, NOW, settings)
    if soon:
        assert status(s, 1, NOW) is Status.VALID
    assert soon == (window > 0 and 0 < days_left <= window)


def test_renewal_settings_are_checked_and_kept() -> None:
    s = structure_settings({"renew_days_before": "14", "remind_after_days": "0"})
    assert (s.renew_days_before, s.remind_after_days) == (14, 0)
    assert structure_settings(unstructure_settings(s)) == s
    assert (PracticeSettings().renew_days_before, PracticeSettings().remind_after_days) == (30, 7)
    with pytest.raises(SettingsError, match="renew_days_before"):
        structure_settings({"renew_days_before": 366})
    with pytest.raises(SettingsError, match="remind_after_days"):
        structure_settings({"remind_after_days": -1})

"""The pure status rules (no database) and the settings converter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from samtycke_plugin.errors import SettingsError
from samtycke_plugin.rules import (
    ASK_AGAIN,
    VALID_STATES,
    EventFacts,
    GateOutcome,
    Snapshot,
    State,
    Status,
    asks_at_booking,
    fold,
    gate,
    grant_state,
    paused,
    purpose_asking,
    should_ask,
    status,
)
from samtycke_plugin.settings import PracticeSettings, structure_settings, unstructure_settings

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def snap(state: State, major: int | None = 1, expires: datetime | None = None) -> Snapshot:
    return Snapshot(state=state, text_major=major, expires_at=expires, since=NOW)


def test_valid_means_given_for_current_major_and_not_expired() -> None:
    assert status(None, 1, NOW) is Status.UNKNOWN
    assert status(snap(State.GIVEN), 1, NOW) is Status.VALID
    assert status(snap(State.RENEWED), 1, NOW) is Status.VALID
    assert status(snap(State.GIVEN), 2, NOW) is Status.OUTDATED
    assert status(snap(State.GIVEN, expires=NOW), 1, NOW) is Status.EXPIRED
    assert status(snap(State.GIVEN, expires=NOW + timedelta(seconds=1)), 1, NOW) is Status.VALID
    for state in State:
        if state not in VALID_STATES:
            assert status(snap(state), 1, NOW) is not Status.VALID


def test_bounced_request_is_its_own_status() -> None:
    bounced = Snapshot(
        state=State.REQUESTED, text_major=1, expires_at=None, since=NOW, delivery="bounced"
    )
    assert status(bounced, 1, NOW) is Status.BOUNCED
    assert status(snap(State.REQUESTED), 1, NOW) is Status.REQUESTED
    gave_up = Snapshot(state=State.REQUESTED, text_major=1, expires_at=None, since=NOW, delivery="failed")
    assert status(gave_up, 1, NOW) is Status.UNDELIVERED


def test_a_request_does_not_take_away_valid_consent() -> None:
    given_now = snap(State.GIVEN, major=2)
    request = EventFacts(state=State.REQUESTED, text_major=2, expires_at=None, occurred_at=NOW)
    assert fold(given_now, request) is given_now
    outdated = snap(State.GIVEN, major=1)
    assert fold(outdated, request).state is State.REQUESTED
    withdraw = EventFacts(state=State.WITHDRAWN, text_major=2, expires_at=None, occurred_at=NOW)
    assert fold(given_now, withdraw).state is State.WITHDRAWN


def test_renewed_only_after_an_earlier_grant() -> None:
    assert grant_state(None) is State.GIVEN
    assert grant_state(snap(State.WITHDRAWN)) is State.GIVEN
    assert grant_state(snap(State.GIVEN, major=1)) is State.RENEWED


SETTINGS = st.builds(
    PracticeSettings,
    ask_new_clients=st.booleans(),
    ask_clients_without_consent=st.booleans(),
    require_consent_for_online_booking=st.booleans(),
)


@given(
    settings=SETTINGS,
    current=st.sampled_from(list(Status)),
    is_new=st.booleans(),
    ticked=st.booleans(),
    shown=st.one_of(st.none(), st.integers(1, 4)),
    major=st.integers(1, 4),
)
def test_gate_properties(
    settings: PracticeSettings,
    current: Status,
    is_new: bool,
    ticked: bool,
    shown: int | None,
    major: int,
) -> None:
    outcome = gate(
        settings,
        current,
        is_new_client=is_new,
        ticked=ticked,
        shown_major=shown,
        current_major=major,
    )
    asked = should_ask(settings, current, is_new_client=is_new)
    if current is Status.VALID:
        assert outcome is GateOutcome.ACCEPT  # valid clients are never asked again
    if outcome is GateOutcome.ACCEPT_GIVEN:
        assert ticked and shown == major  # consent only for the text actually shown, and ticked
    if not ticked and asked:
        assert outcome is (
            GateOutcome.VETO_REQUIRED
            if settings.require_consent_for_online_booking
            else GateOutcome.ACCEPT_REFUSED
        )
    if settings.require_consent_for_online_booking and current is not Status.VALID:
        assert outcome in (
            GateOutcome.VETO_REQUIRED,
            GateOutcome.VETO_TEXT_CHANGED,
            GateOutcome.ACCEPT_GIVEN,
        )
    if not asked:
        assert outcome is GateOutcome.ACCEPT
    # every setting that asks at booking asks a client whose consent is outdated
    if current in ASK_AGAIN:
        assert asked == asks_at_booking(settings)


def test_outdated_consent_is_asked_again_when_only_new_clients_are_asked() -> None:
    only_new = PracticeSettings(
        ask_new_clients=True, ask_clients_without_consent=False,
        require_consent_for_online_booking=False,
    )
    assert should_ask(only_new, Status.OUTDATED, is_new_client=False)
    assert gate(only_new, Status.OUTDATED, is_new_client=False, ticked=True, shown_major=2,
                current_major=2) is GateOutcome.ACCEPT_GIVEN
    # a returning client never asked, or one who said no, is not asked with this setting
    for current in (Status.UNKNOWN, Status.REFUSED, Status.WITHDRAWN):
        assert not should_ask(only_new, current, is_new_client=False)
    nobody = PracticeSettings(
        ask_new_clients=False, ask_clients_without_consent=False,
        require_consent_for_online_booking=False,
    )
    assert not asks_at_booking(nobody)
    assert not should_ask(nobody, Status.OUTDATED, is_new_client=False)


def test_a_client_who_said_no_is_left_in_peace_for_the_pause() -> None:
    optional = PracticeSettings(require_consent_for_online_booking=False, pause_days=365)
    for state in (State.REFUSED, State.WITHDRAWN):
        said_no = Snapshot(state=state, text_major=1, expires_at=None, since=NOW)
        assert paused(said_no, optional, NOW + timedelta(days=364))
        assert not paused(said_no, optional, NOW + timedelta(days=365))  # the pause is over
        current = status(said_no, 1, NOW)
        assert not should_ask(optional, current, is_new_client=False, paused=True)
        # three bookings in the pause record no refusal: the form does not ask
        assert gate(optional, current, is_new_client=False, ticked=False, shown_major=None,
                    current_major=1, paused=True) is GateOutcome.ACCEPT
        # a box ticked anyway (a form shown before the pause) is the client's own act
        assert gate(optional, current, is_new_client=False, ticked=True, shown_major=1,
                    current_major=1, paused=True) is GateOutcome.ACCEPT_GIVEN
        assert gate(optional, current, is_new_client=False, ticked=True, shown_major=None,
                    current_major=1, paused=True) is GateOutcome.ACCEPT
        assert should_ask(optional, current, is_new_client=False, paused=False)
    # no pause, or states that are not a "no": never paused
    assert not paused(snap(State.REFUSED), PracticeSettings(pause_days=0), NOW)
    for state in (State.GIVEN, State.REQUESTED, State.EXPIRED, State.DEFERRED):
        assert not paused(snap(state), optional, NOW)
    assert not paused(None, optional, NOW)
    # consent the practice requires to book online is asked for even in the pause
    required = PracticeSettings(require_consent_for_online_booking=True, pause_days=365)
    assert should_ask(required, Status.REFUSED, is_new_client=False, paused=True)
    assert gate(required, Status.REFUSED, is_new_client=False, ticked=False, shown_major=None,
                current_major=1, paused=True) is GateOutcome.VETO_REQUIRED


@given(
    settings=SETTINGS,
    current=st.sampled_from(list(Status)),
    is_new=st.booleans(),
    in_pause=st.booleans(),
    required=st.booleans(),
)
def test_each_purpose_is_asked_at_booking_by_its_own_requirement(
    settings: PracticeSettings, current: Status, is_new: bool, in_pause: bool, required: bool
) -> None:
    asking = purpose_asking(settings, required=required)
    assert asking.require_consent_for_online_booking is required
    assert asking.ask_clients_without_consent == settings.ask_clients_without_consent
    assert asking.pause_days == settings.pause_days
    asked = should_ask(asking, current, is_new_client=is_new, paused=in_pause)
    if current is Status.VALID:
        assert not asked
    elif required:
        assert asked  # without valid consent to it nobody books online, pause or not
    elif not asks_at_booking(settings) or in_pause:
        assert not asked
    elif is_new or current in ASK_AGAIN:
        assert asked  # offered to new clients and to those whose consent no longer holds
    # only a required purpose vetoes a booking
    outcome = gate(asking, current, is_new_client=is_new, ticked=False, shown_major=None,
                   current_major=1, paused=in_pause)
    assert (outcome is GateOutcome.VETO_REQUIRED) is (required and current is not Status.VALID)


def test_an_optional_purpose_is_offered_whenever_the_practice_asks_at_booking() -> None:
    care_required = PracticeSettings(
        ask_new_clients=False, ask_clients_without_consent=False,
        require_consent_for_online_booking=True,
    )
    optional = purpose_asking(care_required, required=False)
    assert not optional.require_consent_for_online_booking
    assert should_ask(optional, Status.UNKNOWN, is_new_client=True)
    assert should_ask(optional, Status.OUTDATED, is_new_client=False)
    assert not should_ask(optional, Status.UNKNOWN, is_new_client=False)
    assert gate(optional, Status.UNKNOWN, is_new_client=True, ticked=False, shown_major=None,
                current_major=1) is GateOutcome.ACCEPT_REFUSED
    nobody = PracticeSettings(
        ask_new_clients=False, ask_clients_without_consent=False,
        require_consent_for_online_booking=False,
    )
    assert not should_ask(purpose_asking(nobody, required=False), Status.UNKNOWN,
                          is_new_client=True)
    assert should_ask(purpose_asking(nobody, required=True), Status.UNKNOWN,
                      is_new_client=False)


def test_settings_round_trip_and_clear_errors() -> None:
    s = structure_settings({"require_consent_for_online_booking": "on", "validity_days": "365"})
    assert s.require_consent_for_online_booking and s.validity_days == 365
    assert structure_settings(unstructure_settings(s)) == s
    with pytest.raises(SettingsError) as info:
        structure_settings(
            {"ask_new_clinets": True, "validity_days": 0, "ask_new_clients": "maybe"}
        )
    text = str(info.value)
    assert "ask_new_clinets" in text
    with pytest.raises(SettingsError, match="validity_days"):
        structure_settings({"validity_days": 0})
    with pytest.raises(SettingsError, match="ask_new_clients"):
        structure_settings({"ask_new_clients": "maybe"})
    with pytest.raises(SettingsError, match="request_link_days"):
        structure_settings({"request_link_days": True})
    with pytest.raises(SettingsError, match="mapping"):
        structure_settings(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_a_delivery_outcome_shows_only_on_an_open_request_of_a_waiting_client() -> None:
    from samtycke_plugin.rules import with_delivery

    waiting = Snapshot(state=State.REQUESTED, text_major=1, expires_at=None, since=NOW)
    assert with_delivery(waiting, "bounced", request_open=True) == Snapshot(
        state=State.REQUESTED, text_major=1, expires_at=None, since=NOW, delivery="bounced")
    # a late outcome of a request that was answered or replaced does not show
    assert with_delivery(waiting, "bounced", request_open=False) is None
    given = Snapshot(state=State.GIVEN, text_major=1, expires_at=None, since=NOW)
    assert with_delivery(given, "bounced", request_open=True) is None
    assert with_delivery(None, "bounced", request_open=True) is None

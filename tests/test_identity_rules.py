"""The pure rules of verified identity for online consent: when a booker may be someone
other than the client, and what an unconfirmed consent means for the status."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import product

import attrs
import pytest

from hookspecs.types import BookingSubmission, ClientRef, TenantRef
from samtycke_plugin.email.confirm import booker, may_need_confirmation
from samtycke_plugin.errors import SettingsError
from samtycke_plugin.rules import (
    ASK_AGAIN,
    Booker,
    EventFacts,
    Snapshot,
    State,
    Status,
    fold,
    identity_mismatch,
    needs_confirmation,
    same_details,
    should_ask,
    status,
)
from samtycke_plugin.settings import PracticeSettings, structure_settings

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)

ANNA = Booker(existing_client=True, signed_in=True, typed_name="Anna Svensson",
              typed_email="anna@example.org", record_name="Anna Svensson",
              record_email="anna@example.org")


def test_same_details_ignores_case_spacing_and_unicode_form() -> None:
    assert same_details("  anna   SVENSSON ", "Anna Svensson")
    assert same_details("Åsa Öberg", "A\u030asa O\u0308berg")  # composed and decomposed
    assert same_details(None, "Anna Svensson")  # not typed: nothing to disagree with
    assert not same_details("Eva Annan", "Anna Svensson")
    assert not same_details("Anna", None)


def test_a_mismatch_is_another_name_or_address_or_not_signed_in() -> None:
    assert not identity_mismatch(ANNA)
    assert identity_mismatch(attrs.evolve(ANNA, typed_name="Eva Annan"))
    assert identity_mismatch(attrs.evolve(ANNA, typed_email="eva@example.org"))
    assert identity_mismatch(attrs.evolve(ANNA, signed_in=False))
    # A host that says nothing of signing in: the name decides.
    assert not identity_mismatch(attrs.evolve(ANNA, signed_in=None))
    assert identity_mismatch(attrs.evolve(ANNA, signed_in=None, typed_name="Eva Annan"))
    # Nothing said at all: an older host's booking stays as it was.
    assert not identity_mismatch(attrs.evolve(ANNA, signed_in=None, typed_name=None,
                                              typed_email=None))


def test_a_booking_that_creates_the_client_is_never_a_mismatch() -> None:
    new = attrs.evolve(ANNA, existing_client=False, signed_in=False, typed_name="Eva Annan")
    assert not identity_mismatch(new)


def test_the_practice_chooses_always_or_only_on_mismatch() -> None:
    default = PracticeSettings()
    always = PracticeSettings(confirm_online_consent="always")
    assert default.confirm_online_consent == "on_mismatch"
    assert not needs_confirmation(default, ANNA)
    assert needs_confirmation(default, attrs.evolve(ANNA, signed_in=False))
    assert needs_confirmation(always, ANNA)
    assert needs_confirmation(always, attrs.evolve(ANNA, existing_client=False))


def test_the_setting_is_checked_when_stored() -> None:
    assert structure_settings({"confirm_online_consent": "always"}).confirm_online_consent \
        == "always"
    assert structure_settings({}).confirm_online_consent == "on_mismatch"
    with pytest.raises(SettingsError):
        structure_settings({"confirm_online_consent": "sometimes"})


def test_unconfirmed_consent_is_not_valid_and_is_asked_again() -> None:
    snap = Snapshot(state=State.UNCONFIRMED, text_major=1, expires_at=None, since=NOW)
    assert status(snap, 1, NOW) is Status.UNCONFIRMED
    assert Status.UNCONFIRMED in ASK_AGAIN
    only_new = PracticeSettings(ask_new_clients=True, ask_clients_without_consent=False)
    assert should_ask(only_new, Status.UNCONFIRMED, is_new_client=False)


def test_an_unconfirmed_consent_does_not_end_consent_given_for_that_text() -> None:
    given = Snapshot(state=State.GIVEN, text_major=2, expires_at=None, since=NOW)
    same = EventFacts(state=State.UNCONFIRMED, text_major=2, expires_at=None, occurred_at=NOW)
    assert fold(given, same) is given
    older = Snapshot(state=State.GIVEN, text_major=1, expires_at=None, since=NOW)
    assert fold(older, same).state is State.UNCONFIRMED
    assert fold(None, same).state is State.UNCONFIRMED


def test_the_booking_looks_the_client_up_whenever_the_rule_could_say_yes() -> None:
    """The record step skips the client look-up when nothing said could mismatch: that
    shortcut never hides a mismatch the rule would find."""
    modes = [PracticeSettings(), PracticeSettings(confirm_online_consent="always")]
    checked = 0
    for settings, client, signed, name, email in product(
        modes, [None, ClientRef("c1")], [True, False, None], [None, "Eva Annan"],
        [None, "eva@example.org"],
    ):
        sub = BookingSubmission(
            tenant=TenantRef("t1"), client=client, is_new_client=client is None,
            channel="online", fields={}, locale="sv", ip_address=None, user_agent=None,
            booker_signed_in=signed, booker_name=name, booker_email=email)
        on_record = attrs.evolve(booker(sub, None), record_name=ANNA.record_name,
                                 record_email=ANNA.record_email)
        if needs_confirmation(settings, on_record):
            assert may_need_confirmation(settings, sub), (settings, sub)
        checked += 1
    assert checked == 2 * 2 * 3 * 2 * 2

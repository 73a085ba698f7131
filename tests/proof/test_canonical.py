"""The ledger's canonical JSON is RFC 8785 (JCS), byte for byte.

``chain.jcs`` writes the chained fields with the standard library's JSON encoder when
every value is of a kind where that is provably the same as JCS, and hands anything
else to the ``rfc8785`` reference implementation.  These tests hold the fast path to
the reference on generated inputs, including the awkward corners (control characters,
quotes and backslashes, U+2028, astral characters, lone surrogates, integers at and
beyond ±2^53, non-ASCII member names).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from samtycke_plugin import canonical, chain

# Any code point, surrogates included (the chain must not silently accept what JCS refuses).
_any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=40)
_tricky_text = st.text(
    alphabet=st.sampled_from(['"', "\\", "\b", "\f", "\n", "\r", "\t", "\x00", "\x1f",
                              "\x7f", "\u2028", "\u2029", "é", "å", "😀", "\ud800", "a", "/"]),
    max_size=20,
)
_values = st.one_of(
    st.none(), st.booleans(), _any_text, _tricky_text,
    st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1),
    st.integers(min_value=2**53 - 5, max_value=2**64), st.integers(max_value=-(2**53 - 5)),
    st.floats(allow_nan=False, allow_infinity=False),
)
_names = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
    _tricky_text,
)


def _reference(members: dict[str, Any]) -> bytes | type[BaseException]:
    try:
        return bytes(rfc8785.dumps(members))
    except Exception as exc:  # the kind of refusal is what is compared
        return type(exc)


def _ours(members: dict[str, Any]) -> bytes | type[BaseException]:
    try:
        return chain.jcs(members)
    except Exception as exc:
        return type(exc)


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(_names, _values, max_size=20))
def test_jcs_equals_the_reference_implementation(members: dict[str, Any]) -> None:
    assert _ours(members) == _reference(members)


def _event_fields(draw: Any) -> dict[str, Any]:
    stamp = st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)),
                                   timezone(timedelta(hours=-5, minutes=-30))]),
    )
    return {
        "tenant_ref": draw(_any_text), "seq": draw(st.integers(1, 2**53 - 1)),
        "client_ref": draw(_any_text), "state": draw(st.sampled_from(["given", "refused"])),
        "text_version_id": draw(st.none() | st.integers(1, 2**31)),
        "text_major": draw(st.none() | st.integers(1, 1000)),
        "text_sha256": draw(st.none() | st.text("0123456789abcdef", min_size=64, max_size=64)),
        "language": draw(st.none() | st.sampled_from(["sv", "en"])),
        "channel": draw(_tricky_text), "method": draw(st.none() | _any_text),
        "actor": draw(_any_text), "given_at": draw(st.none() | stamp),
        "occurred_at": draw(stamp), "expires_at": draw(st.none() | stamp),
        "booking_ref": draw(st.none() | _tricky_text),
        "request_id": draw(st.none() | st.integers(1, 2**53 - 1)),
        "evidence_sha256": draw(st.none() | st.text("0123456789abcdef", min_size=64,
                                                     max_size=64)),
        "purpose_key": draw(st.sampled_from(["care", "newsletter", "sms-reminders"])),
        "change_note_sha256": draw(st.none() | st.text("0123456789abcdef", min_size=64,
                                                        max_size=64)),
        "attachment_sha256": draw(st.none() | st.text("0123456789abcdef", min_size=64,
                                                       max_size=64)),
    }


def _members(fields: dict[str, Any]) -> dict[str, Any]:
    """The canonical members: the default purpose and an absent change note are left
    out, so that events written before those fields existed keep their hashes."""
    omitted = {"purpose_key": "care", "change_note_sha256": None, "attachment_sha256": None}
    return {
        k: canonical.jsonable(fields[k]) for k in chain.CHAINED_FIELDS
        if k not in omitted or fields[k] != omitted[k]
    }


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_canonical_event_fields_equal_rfc8785(data: st.DataObject) -> None:
    fields = _event_fields(data.draw)
    reference = _reference(_members(fields))
    assert _ours(_members(fields)) == reference
    if isinstance(reference, bytes):
        assert chain.canonical(fields) == reference
        assert (b'"purpose_key"' in reference) == (fields["purpose_key"] != "care")
        assert (b'"change_note_sha256"' in reference) == (
            fields["change_note_sha256"] is not None
        )
        assert (b'"attachment_sha256"' in reference) == (
            fields["attachment_sha256"] is not None
        )
        if fields["attachment_sha256"] is None:
            # An event written before the column existed hashes exactly as before.
            older = {k: v for k, v in fields.items() if k != "attachment_sha256"}
            assert chain.canonical(older) == reference


@pytest.mark.parametrize(
    "members",
    [
        {"b": 1, "a": "x", "c": None},
        {"s": "tab\there \"quoted\" back\\slash \x00 \x1f \x7f \u2028 å 😀"},
        {"n": 2**53 - 1, "m": -(2**53 - 1), "t": True, "f": False},
    ],
)
def test_jcs_known_bytes(members: dict[str, Any]) -> None:
    assert chain.jcs(members) == rfc8785.dumps(members)


def test_jcs_refuses_what_the_reference_refuses() -> None:
    for members in ({"big": 2**53}, {"s": "lone \ud800 surrogate"}):
        with pytest.raises(Exception) as ours:
            chain.jcs(members)
        with pytest.raises(Exception) as theirs:
            rfc8785.dumps(members)
        assert type(ours.value) is type(theirs.value)

"""Per-practice settings, structured from plain data with a private cattrs converter."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import cattrs
from attrs import field, frozen, validators
from cattrs.v import format_exception

from samtycke_plugin.errors import SettingsError
from samtycke_plugin.inputs import whole_number

#: A brand colour as stored: ``#`` and six lower-case hexadecimal digits.
BRAND_COLOUR = re.compile(r"#[0-9a-f]{6}")
_SHORT_COLOUR = re.compile(r"#[0-9a-f]{3}")


def normalise_colour(value: object) -> object:
    """``" #1A5FB4 "`` → ``"#1a5fb4"``, ``"#abc"`` → ``"#aabbcc"``, blank → ``None``;
    anything else is left for the validator to refuse."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if not text:
        return None
    if _SHORT_COLOUR.fullmatch(text):
        return "#" + "".join(digit * 2 for digit in text[1:])
    return text


def _check_colour(_instance: object, _attribute: object, value: str | None) -> None:
    if value is not None and not BRAND_COLOUR.fullmatch(value):
        raise ValueError(f"brand_colour must be a colour such as #1a5fb4, got {value!r}")


#: Values of :attr:`PracticeSettings.confirm_online_consent`: every consent ticked in an
#: online booking waits for the client's confirmation by e-mail, or only one whose booker
#: may be someone else (see :func:`samtycke_plugin.rules.identity_mismatch`).
CONFIRM_ALWAYS = "always"
CONFIRM_ON_MISMATCH = "on_mismatch"
CONFIRM_MODES = (CONFIRM_ALWAYS, CONFIRM_ON_MISMATCH)


@frozen(kw_only=True)
class PracticeSettings:
    """How and when a practice asks for consent (activation wizard, step 3)."""

    #: Ask new clients on their first online booking (and, as every asking setting does,
    #: clients whose consent no longer holds or who have not answered a mailed request).
    ask_new_clients: bool = True
    #: Ask any client without valid consent when they book online.
    ask_clients_without_consent: bool = True
    #: Require consent to complete an online booking (GDPR Art. 7(4): a real decision).
    require_consent_for_online_booking: bool = False
    #: E-mail a consent request to a client created by staff.
    email_request_to_new_clients: bool = False
    #: E-mail a consent request after a booking made by staff, when consent is missing.
    email_request_after_staff_booking: bool = False
    #: Consent lapses after this many days (``None``: no fixed lifetime).
    validity_days: int | None = field(
        default=None,
        validator=validators.optional([validators.ge(1), validators.le(3650)]),
    )
    #: E-mailed links expire after this many days.
    request_link_days: int = field(default=14, validator=[validators.ge(1), validators.le(90)])
    #: After a client declines or withdraws, neither the booking form nor a batch request
    #: asks them again for this many days (0: no pause), unless they act themselves.
    #: Consent the practice requires for online booking is still asked for.
    pause_days: int = field(default=365, validator=[validators.ge(0), validators.le(1825)])
    #: A client whose consent to a purpose lapses within this many days is mailed one
    #: request to renew it, and the consent shows as "expires soon" (0: neither).
    renew_days_before: int = field(default=30, validator=[validators.ge(0), validators.le(365)])
    #: A client who has not answered an e-mailed request this many days after it was
    #: made gets one reminder with the same link (0: no reminders).
    remind_after_days: int = field(default=7, validator=[validators.ge(0), validators.le(90)])
    #: The colour of the practice's mails (header and button); ``None``: the app's own.
    brand_colour: str | None = field(
        default=None, converter=normalise_colour, validator=_check_colour
    )
    #: When consent ticked in an online booking waits for the client to confirm it from
    #: a mail to their address on record: ``"on_mismatch"`` (an existing client's booking
    #: whose booker is not signed in or typed another name) or ``"always"``.
    confirm_online_consent: str = field(
        default=CONFIRM_ON_MISMATCH, validator=validators.in_(CONFIRM_MODES)
    )


_TRUE = {"true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no", ""}


def _structure_bool(value: Any, _type: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {value!r}")


def _structure_int(value: Any, _type: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):  # ASCII digits only ("²" and "٣" are isdigit() too)
        text = value.strip()
        number = whole_number(text.removeprefix("-"))
        if number is not None:
            return -number if text.startswith("-") else number
    raise ValueError(f"expected a whole number, got {value!r}")


def _format(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, ValueError) and not isinstance(exc, cattrs.BaseValidationError):
        return str(exc)
    return format_exception(exc, type_)


converter = cattrs.Converter(forbid_extra_keys=True)
converter.register_structure_hook(bool, _structure_bool)
converter.register_structure_hook(int, _structure_int)


def structure_settings(data: Mapping[str, object]) -> PracticeSettings:
    """Settings from plain data; raises :class:`SettingsError` naming every bad field."""
    if not isinstance(data, Mapping):
        raise SettingsError([f"settings must be a mapping, got {type(data).__name__}"])
    cleaned = {k: (None if v == "" and k == "validity_days" else v) for k, v in data.items()}
    try:
        return converter.structure(cleaned, PracticeSettings)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            raise SettingsError(
                cattrs.transform_error(exc, path="settings", format_exception=_format)
            ) from None
        raise SettingsError([str(exc)]) from None


def unstructure_settings(settings: PracticeSettings) -> dict[str, object]:
    """Plain data for storage."""
    result: dict[str, object] = converter.unstructure(settings)
    return result

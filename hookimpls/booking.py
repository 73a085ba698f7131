"""Online booking: the consent block, the check and the record step."""

from __future__ import annotations

from hookspecs import hookimpl
from hookspecs.host import Host
from hookspecs.types import (
    BookingFormContext,
    BookingRef,
    BookingSubmission,
    ClientCreated,
    ClientRef,
    FormFragment,
    Veto,
)
from samtycke_plugin import booking as online_booking
from samtycke_plugin.email import requests as mail_requests


@hookimpl
def booking_form_render(host: Host, form: BookingFormContext) -> list[FormFragment]:
    fragment = online_booking.form_fragment(host, form)
    return [fragment] if fragment else []


@hookimpl
def booking_submit_check(host: Host, submission: BookingSubmission) -> list[Veto]:
    return online_booking.check_booking(host, submission)


@hookimpl
def booking_submitted(
    host: Host, submission: BookingSubmission, booking: BookingRef, client: ClientRef
) -> None:
    online_booking.record(host, submission, booking, client)


@hookimpl
def booking_client_created(host: Host, created: ClientCreated) -> None:
    # E-mail a consent request to a client created by staff (when the practice chose so).
    mail_requests.on_client_created(host, created)

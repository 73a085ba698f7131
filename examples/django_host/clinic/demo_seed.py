"""Demo data: two practices, their staff and clients, and bookings made through the
same two-phase submit as the booking page (so the consent history is real)."""

from __future__ import annotations

import re
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.test import RequestFactory
from django.utils import timezone

from examples.django_host.clinic import samtycke_glue as glue
from examples.django_host.clinic.models import Booking, Client, Practice, StaffMember

#: (practice, user name, password, owner, may record consent, full name)
LOGINS = [
    ("Lugn & Ro Massage", "anna", "lugn-demo", True, True, "Anna Lind"),
    ("Lugn & Ro Massage", "erik", "lugn-demo", False, False, "Erik Berg"),
    ("Fysio Norr", "sara", "norr-demo", True, True, "Sara Nilsson"),
]
CLIENTS = ["Astrid Ek", "Bo Holm", "Cecilia Ström", "David Åberg", "Elin Sjö", "Filip Lund",
           "Greta Vik", "Hugo Falk", "Ines Dahl", "Jonas Berg", "Karin Alm", "Lars Ek"]


def logins() -> list[tuple[str, str, str]]:
    return [(practice, user, password) for practice, user, password, *_rest in LOGINS]


def _book(practice: Practice, name: str, consent: bool, hours_ago: int) -> None:
    """One online booking as the booking page makes it (check, then record)."""
    email = name.lower().replace(" ", ".").translate(str.maketrans("åäöé", "aaoe")) + \
        "@example.com"
    fields = {"name": name, "email": email}
    html = " ".join(h for _k, h, _n in glue_fragments(practice))
    shown = re.search(r'name="samtycke_text" value="(\d+)"', html)
    if consent and shown:
        fields |= {"samtycke_consent": "yes", "samtycke_text": shown.group(1)}
    request = RequestFactory().post("/", REMOTE_ADDR="192.0.2.10",
                                    HTTP_USER_AGENT="demo-seed")
    submission, vetoes = glue.check_booking(request, practice, None, fields)
    assert not vetoes, vetoes
    now = timezone.now()
    with transaction.atomic():
        client = Client.objects.create(practice=practice, name=name, email=email,
                                       email_key=email, locale="sv", created_at=now)
        glue.client_created(client)
        booking = Booking.objects.create(
            practice=practice, client=client, channel="online", created_at=now,
            starts_at=(now - timedelta(hours=hours_ago)).replace(minute=0, second=0,
                                                                microsecond=0))
        glue.booking_made(submission, booking)


def glue_fragments(practice: Practice) -> list[tuple[str, str, tuple[str, ...]]]:
    from samtycke_plugin.integrations.django.templatetags.samtycke import (
        samtycke_form_fragments,
    )

    return [(k, str(h), n) for k, h, n in samtycke_form_fragments(practice, None)]


def seed() -> bool:
    """Add the demo data to an empty clinic; ``False`` when there already is some."""
    if Practice.objects.exists():
        return False
    with transaction.atomic():
        practices = {
            "Lugn & Ro Massage": Practice.objects.create(
                slug="lugn-och-ro", name="Lugn & Ro Massage", email="info@lugnochro.example",
                phone="08-123 45 67"),
            "Fysio Norr": Practice.objects.create(
                slug="fysio-norr", name="Fysio Norr", email="info@fysionorr.example"),
        }
        for practice, user, password, owner, record, full in LOGINS:
            first, last = full.split(" ", 1)
            account = User.objects.create_user(user, password=password, first_name=first,
                                               last_name=last)
            StaffMember.objects.create(user=account, practice=practices[practice],
                                       is_owner=owner, can_record_consent=record)
        glue.set_active(practices["Lugn & Ro Massage"], "samtycke", True,
                        {"require_consent_for_online_booking": False})
    for n, name in enumerate(CLIENTS):
        _book(practices["Lugn & Ro Massage"], name, consent=n % 3 != 2, hours_ago=24 * (n + 1))
    return True

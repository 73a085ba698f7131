"""The Django host signals consent recorded by a booking to the platform's other apps
after the booking commits (``transaction.on_commit``), and never for a booking that
rolled back (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import OperationalError, transaction
from django_support import add_practice, book

from examples.django_host.clinic import samtycke_glue as glue
from examples.django_host.clinic.models import Client
from hookspecs import hookimpl
from hookspecs.facade import hooks_of
from hookspecs.host import OnCommit
from hookspecs.types import ConsentChange
from samtycke_plugin.integrations.django.runtime import samtycke

pytestmark = pytest.mark.usefixtures("clinic_db")


class Listener:
    def __init__(self) -> None:
        self.changes: list[ConsentChange] = []

    @hookimpl
    def booking_consent_changed(self, host: object, change: ConsentChange) -> None:
        self.changes.append(change)


@pytest.fixture
def listener() -> Iterator[Listener]:
    heard = Listener()
    pm = samtycke().hooks.pm
    pm.register(heard, name="signals-listener")
    yield heard
    pm.unregister(name="signals-listener")


def test_a_django_booking_is_signalled_once_after_commit(listener: Listener, monkeypatch) -> None:
    host = samtycke().host
    assert isinstance(host, OnCommit) and hooks_of(host) is samtycke().hooks
    practice, _owner = add_practice()
    with transaction.atomic():
        glue.set_active(practice, "samtycke", True, {"require_consent_for_online_booking": True})

    original = glue.booking_made

    def record_then_fail(submission, booking) -> None:
        original(submission, booking)
        raise OperationalError("disk I/O error")  # after the app wrote its evidence

    monkeypatch.setattr(glue, "booking_made", record_then_fail)
    assert book(practice, name="Cia Ek", email="cia@example.com", consent=True).status_code == 400
    assert listener.changes == []  # every attempt rolled back

    monkeypatch.undo()
    assert book(practice, name="Dan Ek", email="dan@example.com", consent=True).status_code == 302
    dan = Client.objects.get(practice=practice, email_key="dan@example.com")
    [change] = listener.changes
    assert (change.tenant, change.client, change.purpose) == (str(practice.pk), str(dan.pk), "care")
    assert (change.status, change.may_use) == ("valid", True)

"""The clinic's booking transaction and the app's evidence commit or roll back together,
and a write hook outside ``transaction.atomic()`` is refused (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection, transaction
from django.test import Client as Browser
from django_support import add_practice, book

from examples.django_host.clinic import samtycke_glue as glue
from examples.django_host.clinic.models import Booking, Client
from hookspecs.types import BookingRef, BookingSubmission, ClientRef, NoHostTransaction
from samtycke_plugin.integrations.django.runtime import samtycke

pytestmark = pytest.mark.usefixtures("clinic_db")


def _active_practice(required: bool = True):
    practice, _owner = add_practice()
    with transaction.atomic():
        glue.set_active(practice, "samtycke", True,
                        {"require_consent_for_online_booking": required})
    return practice


def _events(practice, client_ref: str | None = None) -> int:
    sql = "SELECT COUNT(*) FROM samtycke_consent_event WHERE tenant_ref = %s"
    params = [str(practice.pk)]
    if client_ref is not None:
        sql += " AND client_ref = %s"
        params.append(client_ref)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.fetchone()[0])


def test_the_booking_failing_after_the_apps_record_keeps_neither(monkeypatch) -> None:
    practice = _active_practice()
    recorded = []
    original = glue.booking_made

    def record_then_fail(submission, booking) -> None:
        original(submission, booking)
        recorded.append(booking.pk)
        raise OperationalError("disk I/O error")  # after the app wrote its evidence

    monkeypatch.setattr(glue, "booking_made", record_then_fail)
    failed = book(practice, name="Cia Ek", email="cia@example.com", consent=True)
    assert failed.status_code == 400 and "ingenting bokades" in failed.content.decode()
    assert len(recorded) == 3  # run again after each (transient) failure, then given up
    assert not Client.objects.filter(practice=practice).exists()
    assert not Booking.objects.filter(practice=practice).exists()
    assert _events(practice) == 0


def test_the_apps_insert_failing_after_the_booking_row_keeps_neither(monkeypatch) -> None:
    practice = _active_practice()
    import samtycke_plugin.ledger as ledger

    def broken_append(*args, **kwargs):
        assert Booking.objects.filter(practice=practice).exists()  # the row is there
        raise RuntimeError("the app's insert failed")

    monkeypatch.setattr(ledger, "append", broken_append)
    with pytest.raises(RuntimeError, match="the app's insert failed"):
        book(practice, name="Dan Ek", email="dan@example.com", consent=True,
             browser=Browser(raise_request_exception=True))
    assert not Client.objects.filter(practice=practice).exists()
    assert not Booking.objects.filter(practice=practice).exists()
    assert _events(practice) == 0

    monkeypatch.undo()
    assert book(practice, name="Dan Ek", email="dan@example.com", consent=True).status_code == 302
    dan = Client.objects.get(practice=practice, email_key="dan@example.com")
    assert Booking.objects.filter(client=dan).count() == 1
    assert _events(practice, str(dan.pk)) == 1


def test_a_busy_database_runs_the_whole_booking_again_with_exactly_one_event(monkeypatch
                                                                            ) -> None:
    practice = _active_practice()
    original = glue.booking_made
    attempts = []

    def busy_once(submission, booking) -> None:
        original(submission, booking)
        attempts.append(booking.pk)
        if len(attempts) == 1:
            raise OperationalError("database is locked")

    monkeypatch.setattr(glue, "booking_made", busy_once)
    assert book(practice, name="Eva Ek", email="eva@example.com",
                consent=True).status_code == 302
    eva = Client.objects.get(practice=practice, email_key="eva@example.com")
    assert len(attempts) == 2
    assert Booking.objects.filter(client=eva).count() == 1
    assert _events(practice, str(eva.pk)) == 1


def test_a_write_hook_outside_transaction_atomic_is_refused_and_writes_nothing() -> None:
    practice = _active_practice(required=False)
    assert book(practice, name="Fia Ek", email="fia@example.com", consent=True).status_code == 302
    fia = Client.objects.get(practice=practice, email_key="fia@example.com")
    booking = Booking.objects.get(client=fia)
    before = _events(practice)
    submission = BookingSubmission(
        tenant=glue.tenant(practice), client=ClientRef(str(fia.pk)), is_new_client=False,
        channel="staff", fields={}, locale="sv", ip_address=None, user_agent=None)
    assert connection.get_autocommit()  # no transaction.atomic() around the call
    with pytest.raises(NoHostTransaction):
        samtycke().hooks.submitted(submission, BookingRef(str(booking.pk)),
                                   ClientRef(str(fia.pk)))
    with pytest.raises(NoHostTransaction):
        samtycke().hooks.deactivate(glue.tenant(practice), "samtycke")
    assert _events(practice) == before
    with transaction.atomic():  # the same call inside the host's transaction works
        samtycke().hooks.deactivate(glue.tenant(practice), "samtycke")

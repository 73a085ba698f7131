"""Everything the clinic has because of Samtycke (with settings.py's SAMTYCKE entries,
the URL include in urls.py and the ``{% load samtycke %}`` tags in its templates).

1. :class:`ClinicHost` tells the app what only the clinic knows: its clients and
   practices, who is signed in, which apps a practice has switched on, where a
   client's page is and which template is the clinic's layout around the app's pages;
2. the functions below are the places where the clinic's own flow lets apps take
   part: the app menu, the two-phase booking submit, the client-list filter and the
   sending of queued e-mail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from examples.django_host.clinic.models import AppActivation, Booking, Client, Practice, StaffMember
from hookspecs import types as t
from samtycke_plugin.email import relay
from samtycke_plugin.integrations import django as integration
from samtycke_plugin.integrations.django import samtycke


class ClinicHost(integration.DjangoClients, integration.DjangoPageLayout, integration.DjangoHost):
    layout_template = "clinic/samtycke_page.html"

    def clients(self, tenant: t.TenantRef) -> QuerySet[Client]:
        return Client.objects.filter(practice_id=tenant)

    def practice_info(self, tenant: t.TenantRef) -> t.PracticeInfo | None:
        row = Practice.objects.filter(pk=tenant).first()
        return row and t.PracticeInfo(ref=tenant, name=row.name, email=row.email or None,
                                      phone=row.phone or None, locale=row.locale)

    def active_apps(self, tenant: t.TenantRef) -> list[str]:
        return list(AppActivation.objects.filter(practice_id=tenant, active=True)
                    .values_list("app_key", flat=True))

    def staff(self, user: Any) -> tuple[t.TenantRef, t.StaffContext] | None:
        member = StaffMember.objects.filter(user_id=user.pk).first()
        # What the role may do: settings.SAMTYCKE["ROLES"]; the member's own flag can
        # withhold recording consent.
        return member and (t.TenantRef(str(member.practice_id)), self.staff_context(
            user.pk, user.get_full_name() or user.get_username(),
            "owner" if member.is_owner else "staff", member.can_record_consent))

    def home(self) -> tuple[str, str]:
        return reverse("clients"), "Kliniken"

    def client_path(self, tenant: t.TenantRef, client: t.ClientRef) -> str | None:
        return reverse("client", args=[client]) if client.isdigit() else None


def tenant(practice: Practice) -> t.TenantRef:
    return t.TenantRef(str(practice.pk))


def set_active(practice: Practice, key: str, active: bool,
               settings: Mapping[str, object] | None = None) -> str | None:
    """Inside the caller's ``transaction.atomic()``; returns the app's setup page
    (``KeyError``: no such app is installed)."""
    AppActivation.objects.update_or_create(practice=practice, app_key=key, defaults={
        "active": active, "changed_at": timezone.now()})
    return samtycke().switched(tenant(practice), key, active, settings or {})


def check_booking(request: HttpRequest, practice: Practice, client: Client | None,
                  fields: Mapping[str, str]) -> tuple[t.BookingSubmission, list[t.Veto]]:
    return samtycke().check_booking(request, tenant(practice), client and client.pk, fields,
                                    is_new_client=not (client and client.bookings.exists()))


def client_created(client: Client) -> None:
    samtycke().client_created(tenant(client.practice), client.pk, "online", client.created_at)


def booking_made(submission: t.BookingSubmission, booking: Booking) -> None:
    samtycke().booking_made(submission, booking.pk, booking.client_id)


def filtered(rows: QuerySet[Client], practice: Practice, key: str) -> QuerySet[Client] | None:
    return integration.filter_clients(rows, tenant(practice), key, integration.ref_column(Client))


def send_outbox() -> int:
    return relay.send_due(samtycke().host).sent

"""The clinic's pages: the start page, online booking, and for signed-in staff the
client list, a client's page and the app menu."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.core.validators import validate_email
from django.db import DatabaseError, IntegrityError, OperationalError, transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from examples.django_host.clinic import samtycke_glue as glue
from examples.django_host.clinic.models import Booking, Client, Practice, StaffMember
from examples.django_host.clinic.texts import language, text

log = logging.getLogger(__name__)
PAGE_SIZE = 25
ATTEMPTS = 3


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "clinic/index.html", {"practices": Practice.objects.order_by("name")})


# -- online booking ----------------------------------------------------------------------


def free_slots(practice: Practice) -> list[datetime]:
    """Whole hours 9-15 on the next five weekdays that nobody has booked."""
    today = timezone.localdate()
    days = [today + timedelta(days=n) for n in range(1, 10) if
            (today + timedelta(days=n)).weekday() < 5][:5]
    tz = timezone.get_current_timezone()
    slots = [datetime(d.year, d.month, d.day, h, tzinfo=tz) for d in days for h in range(9, 16)]
    taken = set(Booking.objects.filter(practice=practice, starts_at__in=slots)
                .values_list("starts_at", flat=True))
    return [s for s in slots if s not in taken]


def _validate(practice: Practice, fields: dict[str, str]) -> tuple[dict[str, str], Any]:
    errors: dict[str, str] = {}
    if not fields.get("name", "").strip() or len(fields["name"]) > 120:
        errors["name"] = text("need_name")
    try:
        validate_email(fields.get("email", "").strip())
    except ValidationError:
        errors["email"] = text("need_email")
    slot = next((s for s in free_slots(practice) if s.isoformat() == fields.get("slot")), None)
    if slot is None:
        errors["slot"] = text("need_time")
    return errors, slot


def _add_client(practice: Practice, name: str, email: str) -> Client:
    """The new client, or the one a simultaneous booking with the same address has just
    added: the unique (practice, e-mail) key decides, not the look-up before."""
    try:
        with transaction.atomic():  # a savepoint: a clash undoes this insert only
            client = Client.objects.create(practice=practice, name=name, email=email,
                                           email_key=email.lower(), locale=language(),
                                           created_at=timezone.now())
    except IntegrityError:
        return Client.objects.get(practice=practice, email_key=email.lower())
    glue.client_created(client)
    return client


def _record(practice: Practice, known: Client | None, fields: dict[str, str], slot: datetime,
            submission: Any) -> Booking:
    """Client, booking and the apps' evidence in one transaction; a busy database rolls
    all of it back, and the whole unit runs again."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with transaction.atomic():
                client = known or _add_client(practice, fields["name"].strip(),
                                              fields["email"].strip())
                booking = Booking.objects.create(practice=practice, client=client,
                                                 starts_at=slot, channel="online",
                                                 created_at=timezone.now())
                glue.booking_made(submission, booking)
            return booking
        except OperationalError:
            if attempt == ATTEMPTS:
                raise
    raise AssertionError("not reached")


def book(request: HttpRequest, slug: str) -> HttpResponse:
    practice = get_object_or_404(Practice, slug=slug)
    fields: dict[str, str] = {}
    errors: dict[str, str] = {}
    vetoes: list[Any] = []
    if request.method == "POST":
        fields = {k: v for k, v in request.POST.items() if k != "csrfmiddlewaretoken"}
        errors, slot = _validate(practice, fields)
        if not errors:
            known = Client.objects.filter(practice=practice,
                                          email_key=fields["email"].strip().lower()).first()
            submission, vetoes = glue.check_booking(request, practice, known, fields)
            if not vetoes:
                try:
                    booking = _record(practice, known, fields, slot, submission)
                except IntegrityError:
                    errors["slot"] = text("taken")
                except DatabaseError:
                    log.exception("online booking failed")
                    errors["form"] = text("failed")
                else:
                    request.session["booked"] = booking.pk
                    return redirect("booked", slug=slug)
    context = {"practice": practice, "slots": free_slots(practice), "values": fields,
               "errors": errors, "vetoes": vetoes}
    return render(request, "clinic/book.html", context, status=400 if errors or vetoes else 200)


def booked(request: HttpRequest, slug: str) -> HttpResponse:
    practice = get_object_or_404(Practice, slug=slug)
    booking = Booking.objects.filter(pk=request.session.get("booked"), practice=practice).first()
    if booking is None:
        return redirect("book", slug=slug)
    return render(request, "clinic/booked.html", {"practice": practice, "booking": booking})


# -- staff -------------------------------------------------------------------------------


def _member(request: HttpRequest) -> StaffMember:
    member = StaffMember.objects.select_related("practice").filter(user_id=request.user.pk).first()
    if member is None:
        raise PermissionDenied
    return member


@login_required
def clients(request: HttpRequest) -> HttpResponse:
    practice = _member(request).practice
    rows = Client.objects.filter(practice=practice)
    key, notice = request.GET.get("filter", ""), None
    if key:
        narrowed = glue.filtered(rows, practice, key)
        rows, notice = (rows, text("no_filter")) if narrowed is None else (narrowed, None)
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "clinic/clients.html",
                  {"practice": practice, "page": page, "filter": key, "notice": notice})


@login_required
def client(request: HttpRequest, pk: int) -> HttpResponse:
    practice = _member(request).practice
    row = get_object_or_404(Client, pk=pk, practice=practice)
    bookings = row.bookings.order_by("-starts_at")[:20]
    return render(request, "clinic/client.html", {"client": row, "bookings": bookings})


@login_required
def app_menu(request: HttpRequest) -> HttpResponse:
    member = _member(request)
    if request.method == "POST":
        if not member.is_owner:
            raise PermissionDenied(text("owner_only"))
        active = request.POST.get("action") == "activate"
        try:
            with transaction.atomic():
                setup = glue.set_active(member.practice, request.POST.get("app", ""), active)
        except KeyError:
            raise Http404 from None
        return redirect(setup or "app_menu")
    apps = glue.samtycke().app_menu(glue.tenant(member.practice))
    return render(request, "clinic/app_menu.html", {"apps": apps, "member": member})


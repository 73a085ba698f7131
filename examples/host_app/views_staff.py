"""Pages for signed-in practitioners: bookings, clients, the client profile and the app menu."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from email_validator import validate_email
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from examples.host_app import reminders
from examples.host_app.i18n import gettext as _
from examples.host_app.i18n import mark
from examples.host_app.inputs import db_id, email_problem, whole_number
from examples.host_app.models import Booking, Client, DevMail, Service, Staff
from examples.host_app.runtime import LANGUAGES, current_language, current_staff, db, platform
from examples.host_app.scheduling import by_day, free_slots, local, parse_slot, slot_value
from examples.host_app.security import login_required

log = logging.getLogger(__name__)
bp = Blueprint("staff", __name__)

PAGE_SIZE = 50


def me() -> Staff:
    staff = current_staff()
    assert staff is not None  # @login_required ran first
    return staff


def _client_or_404(client_id: int) -> Client:
    client = db().get(Client, client_id)
    if client is None or client.practice_id != me().practice_id:
        abort(404)  # another practice's client: as if it did not exist
    return client


# -- bookings ------------------------------------------------------------------------------


@bp.get("/dashboard")
@login_required
def dashboard() -> Any:
    staff = me()
    now = platform().now()
    start = local(now).replace(hour=0, minute=0, second=0, microsecond=0)
    week = request.args.get("week", "0")
    weeks = whole_number(week.removeprefix("-"), max_digits=3)
    offset = (-weeks if week.startswith("-") else weeks) if weeks is not None and weeks < 520 else 0
    start = start + timedelta(days=7 * offset)
    end = start + timedelta(days=14)
    bookings = db().scalars(
        select(Booking).where(Booking.practice_id == staff.practice_id,
                              Booking.starts_at >= start, Booking.starts_at < end)
        .order_by(Booking.starts_at)).all()
    days: dict[Any, list[Booking]] = {}
    for booking in bookings:
        days.setdefault(local(booking.starts_at).date(), []).append(booking)
    batch = reminders.plan(db(), staff.practice, now)
    return render_template("dashboard.html", days=list(days.items()), offset=offset,
                           start=start, end=end - timedelta(days=1), reminders=batch)


@bp.post("/reminders")
@login_required
def send_reminders() -> Response:
    """Send tomorrow's booking reminders of the practice now (a second press sends none)."""
    staff = me()
    batch = reminders.send(db(), staff.practice, platform().now())
    db().commit()
    flash(_("Reminders sent: %(sent)s. Not reminded: %(left)s.", sent=len(batch.sent),
            left=len(batch.not_allowed) + len(batch.no_email) + len(batch.due) - len(batch.sent)))
    return redirect(url_for("staff.dashboard"))


# -- clients -------------------------------------------------------------------------------


@bp.get("/clients")
@login_required
def clients() -> Any:
    staff = me()
    language = current_language()
    query = request.args.get("q", "").strip()[:100]
    chosen = request.args.get("filter", "")
    page = whole_number(request.args.get("page", "1"), max_digits=5) or 1

    conditions: list[Any] = [Client.practice_id == staff.practice_id]
    if query:
        like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(or_(Client.name.ilike(like, escape="\\"),
                              Client.email.ilike(like, escape="\\")))
    filters, condition = platform().apps.client_filter(staff.practice_id, chosen, language)
    notice = None
    if chosen:
        if condition is None:
            notice = mark("That filter is not available any more, so all clients are shown.")
            chosen = ""
        else:
            conditions.append(condition)
    total = db().scalar(select(func.count()).select_from(Client).where(*conditions)) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(page, pages)
    rows = db().scalars(
        select(Client).where(*conditions).order_by(Client.name, Client.id)
        .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    badges = platform().apps.row_badges(staff.practice_id, [c.id for c in rows], language)
    allowed = reminders.contactable(staff.practice_id, [c.id for c in rows])
    return render_template(
        "clients.html", rows=rows, badges=badges, total=total, page=page, pages=pages,
        first=(page - 1) * PAGE_SIZE + 1 if total else 0, last=(page - 1) * PAGE_SIZE + len(rows),
        query=query, filters=filters, chosen=chosen, notice=notice,
        no_contact={c for c, ok in allowed.items() if not ok},
    )


def _client_form_errors(form: dict[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    name = form.get("name", "").strip()
    if not name:
        errors["name"] = mark("Enter the client's name.")
    elif len(name) > 120 or any(ord(ch) < 32 for ch in name):
        errors["name"] = mark("Enter the name in at most 120 characters, on one line.")
    email = form.get("email", "").strip()
    if email and (problem := email_problem(email, mark(
            "Enter an e-mail address like name@example.com, or leave it empty."))):
        errors["email"] = problem
    if form.get("locale") not in LANGUAGES:
        errors["locale"] = mark("Choose the client's language.")
    return errors


@bp.route("/clients/new", methods=["GET", "POST"])
@login_required
def client_new() -> Any:
    staff = me()
    form = {k: request.form.get(k, "") for k in ("name", "email", "phone", "locale", "notes")}
    if request.method == "GET":
        form["locale"] = current_language()
        return render_template("client_new.html", values=form, errors={})
    errors = _client_form_errors(form)
    if errors:
        return render_template("client_new.html", values=form, errors=errors), 400
    email = form["email"].strip()
    client = Client(
        practice_id=staff.practice_id, name=form["name"].strip(),
        email=validate_email(email, check_deliverability=False).normalized if email else None,
        phone=form["phone"].strip()[:40] or None, locale=form["locale"],
        notes=form["notes"].strip()[:2000] or None, created_by="staff",
        created_at=platform().now(),
    )
    try:
        with db().begin_nested():  # one client per practice and e-mail address
            db().add(client)
    except IntegrityError:
        db().rollback()
        errors = {"email": mark("A client with this e-mail address already exists. Find them "
                                "in the client list, or leave the address empty.")}
        return render_template("client_new.html", values=form, errors=errors), 400
    platform().apps.client_created(staff.practice_id, client.id, "staff")
    db().commit()
    flash(_("The client was added."))
    return redirect(url_for("staff.client", client_id=client.id))


@bp.get("/clients/<id:client_id>")
@login_required
def client(client_id: int) -> Any:
    staff = me()
    row = _client_or_404(client_id)
    bookings = db().scalars(
        select(Booking).where(Booking.client_id == row.id).order_by(Booking.starts_at.desc())
    ).all()
    panels = platform().apps.profile_panels(row.id, current_language())
    services = db().scalars(
        select(Service).where(Service.practice_id == staff.practice_id).order_by(Service.id)).all()
    slots = free_slots(db(), staff.practice_id, platform().now())
    return render_template("client.html", client=row, bookings=bookings, panels=panels,
                           services=services, days=by_day(slots), slot_value=slot_value)


@bp.post("/clients/<id:client_id>/bookings")
@login_required
def client_book(client_id: int) -> Any:
    """A booking made by staff (phone, at the desk): apps record it with channel "staff"."""
    staff = me()
    row = _client_or_404(client_id)
    sid = request.form.get("service", "")
    service = db().get(Service, service_id) if (service_id := db_id(sid)) is not None else None
    slot = parse_slot(request.form.get("slot", ""))
    if service is None or service.practice_id != staff.practice_id or slot is None or \
            slot not in free_slots(db(), staff.practice_id, platform().now()):
        flash(_("Choose a service and one of the free times, then book again."), "error")
        return redirect(url_for("staff.client", client_id=row.id) + "#book")
    is_new = db().scalar(select(func.count()).where(Booking.client_id == row.id)) == 0
    submission, vetoes = platform().apps.check(
        staff.practice_id, row.id, is_new_client=is_new, channel="staff",
        fields={"service": sid, "slot": slot_value(slot)}, locale=row.locale)
    if vetoes:
        db().rollback()
        for veto in vetoes:
            flash(veto.message, "error")
        return redirect(url_for("staff.client", client_id=row.id) + "#book")
    try:
        booking = Booking(practice_id=staff.practice_id, client_id=row.id, service_id=service.id,
                          starts_at=slot, ends_at=slot + timedelta(minutes=service.minutes),
                          channel="staff", created_at=platform().now())
        db().add(booking)
        db().flush()
        platform().apps.booking_made(submission, booking.id, row.id)
        db().commit()
    except IntegrityError:
        db().rollback()
        flash(_("Someone else just booked that time. Choose another time."), "error")
        return redirect(url_for("staff.client", client_id=row.id) + "#book")
    flash(_("The time was booked."))
    return redirect(url_for("staff.client", client_id=row.id))


@bp.get("/clients/<id:client_id>/erase")
@login_required
def client_erase_confirm(client_id: int) -> Any:
    row = _client_or_404(client_id)
    return render_template("client_erase.html", client=row)


@bp.post("/clients/<id:client_id>/erase")
@login_required
def client_erase(client_id: int) -> Response:
    """GDPR Art. 17: apps erase what they hold in the same transaction, then the client goes."""
    staff = me()
    row = _client_or_404(client_id)
    if request.form.get("confirm") != "yes":
        flash(_("Tick the box to confirm that the client should be erased."), "error")
        return redirect(url_for("staff.client_erase_confirm", client_id=row.id))
    try:
        platform().apps.client_erased(staff.practice_id, row.id)
        db().execute(delete(Booking).where(Booking.client_id == row.id))
        if row.email:
            db().execute(delete(DevMail).where(DevMail.practice_id == staff.practice_id,
                                               DevMail.to == row.email))
        db().delete(row)
        db().commit()
    except Exception:
        db().rollback()
        log.exception("erasing a client failed")
        flash(_("The client could not be erased, and nothing was changed. "
                   "Try again in a moment."), "error")
        return redirect(url_for("staff.client", client_id=client_id))
    flash(_("The client and their bookings were erased."))
    return redirect(url_for("staff.clients"))


# -- the app menu ----------------------------------------------------------------------------


@bp.get("/app-menu")
@login_required
def app_menu() -> Any:
    staff = me()
    entries = platform().apps.menu(staff.practice_id, current_language())
    return render_template("app_menu.html", entries=entries, is_owner=staff.role == "owner")


@bp.post("/app-menu/<key>")
@login_required
def app_menu_change(key: str) -> Response:
    staff = me()
    if staff.role != "owner":
        flash(_("Only the practice owner can activate or deactivate apps."), "error")
        return redirect(url_for("staff.app_menu"))
    action = request.form.get("action")
    if action not in ("activate", "deactivate"):
        abort(400)
    try:
        setup = platform().apps.set_active(staff.practice_id, key, action == "activate", staff.id)
        db().commit()
    except KeyError:
        db().rollback()
        abort(404)
    if action == "activate":
        return redirect(setup or url_for("staff.app_menu"))
    flash(_("The app was deactivated. Its data is kept; activate it again to resume."))
    return redirect(url_for("staff.app_menu"))

"""Pages anyone can open: the start page, sign-in, the language switch and each
practice's online booking page."""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from email_validator import validate_email
from flask import Blueprint, abort, redirect, render_template, request, session, url_for
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

from examples.host_app import mailer, sign_in
from examples.host_app.i18n import gettext as _
from examples.host_app.i18n import mark, translate, when_label
from examples.host_app.inputs import db_id, email_problem
from examples.host_app.models import Booking, Client, Practice, Service, Staff, email_key
from examples.host_app.runtime import LANGUAGES, current_language, db, platform
from examples.host_app.scheduling import by_day, free_slots, parse_slot, slot_value
from examples.host_app.security import CSRF_FIELD, safe_next

log = logging.getLogger(__name__)
bp = Blueprint("public", __name__)

MAX_NAME = 120
MAX_EMAIL = 254
_PHONE = re.compile(r"^[0-9+()\- ]{5,40}$")


@bp.get("/")
def index() -> str:
    practices = db().scalars(select(Practice).order_by(Practice.name)).all()
    return render_template("index.html", practices=practices,
                           demo_logins=platform().settings.get("DEMO_LOGINS", []))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    email = ""
    status = 200
    minutes = 0
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()[:MAX_EMAIL]
        password = request.form.get("password", "")[:200]
        settings = platform().settings
        attempt = sign_in.Attempt(db(), settings, platform().now(), email=email,
                                  source=request.remote_addr)
        if not attempt.allowed():
            minutes = attempt.window_minutes
            error = mark("Too many wrong passwords: signing in is paused. Wait %(minutes)s "
                         "minutes and try again, or ask the practice owner for help.")
            return render_template("login.html", error=error, minutes=minutes,
                                   email=email), 429
        staff = db().scalar(select(Staff).where(Staff.email == email)) if email else None
        # Always run one hash check, so timing does not tell whether the account exists.
        known = staff.password_hash if staff else settings["DUMMY_HASH"]
        if check_password_hash(known, password) and staff is not None:
            attempt.succeeded()
            language = current_language()
            session.clear()
            session["staff_id"] = staff.id
            session["staff_key"] = staff.password_hash[-16:]
            session["sid"] = secrets.token_urlsafe(32)
            sign_in.start_session(db(), staff, session["sid"], platform().now(), settings)
            session["lang"] = language
            return redirect(safe_next(request.args.get("next"), url_for("staff.dashboard")))
        attempt.failed()
        error = mark("The e-mail address or password is wrong. Check them and try again.")
        status = 400
    return render_template("login.html", error=error, minutes=minutes, email=email), status


@bp.post("/logout")
def logout() -> Response:
    language = current_language()
    sid = session.get("sid")
    if isinstance(sid, str):
        sign_in.end_session(db(), sid)  # a copy of the cookie no longer signs anyone in
    session.clear()
    session["lang"] = language
    return redirect(url_for("public.index"))


@bp.post("/language")
def language() -> Response:
    chosen = request.form.get("lang", "")
    if chosen in LANGUAGES:
        session["lang"] = chosen
    return redirect(safe_next(request.form.get("next"), url_for("public.index")))


# -- online booking ----------------------------------------------------------------------


def _practice(slug: str) -> Practice:
    practice = db().scalar(select(Practice).where(Practice.slug == slug))
    if practice is None:
        abort(404)
    return practice


def _services(practice: Practice) -> list[Service]:
    return list(db().scalars(
        select(Service).where(Service.practice_id == practice.id).order_by(Service.id)))


def _has_bookings(client: Client) -> bool:
    return bool(db().scalar(select(exists().where(Booking.client_id == client.id))))


def _form(practice: Practice, returning: Client | None, token: str, *, values: dict[str, str],
          errors: dict[str, str], vetoes: list[Any], status: int = 200) -> tuple[str, int]:
    language = current_language()
    slots = free_slots(db(), practice.id, platform().now())
    fragments = platform().apps.form_fragments(practice.id, returning and returning.id, language)
    anchors = {name: "app-" + key.replace(".", "-") for key, _html, names in fragments
               for name in names}
    fragment_vetoes: dict[str, list[str]] = {}
    for veto in vetoes:
        for key, _html, names in fragments:
            if veto.field_name in names:
                fragment_vetoes.setdefault(key, []).append(veto.message)
    return render_template(
        "book.html", practice=practice, services=_services(practice), days=by_day(slots),
        slot_value=slot_value, returning=returning, token=token, values=values, errors=errors,
        fragments=fragments, fragment_vetoes=fragment_vetoes,
        veto_links=[(anchors.get(v.field_name or ""), v.message) for v in vetoes],
    ), status


@bp.get("/book/<slug>")
def book(slug: str) -> Any:
    practice = _practice(slug)
    token = request.args.get("r", "")[:400]
    returning = mailer.returning_client(token, practice.id) if token else None
    if token and returning is None:
        token = ""
    values = {"name": returning.name, "email": returning.email or ""} if returning else {}
    try:
        return _form(practice, returning, token, values=values, errors={}, vetoes=[])
    finally:
        db().rollback()


def _validate(practice: Practice, form: dict[str, str], returning: Client | None
              ) -> tuple[dict[str, str], Service | None, Any]:
    errors: dict[str, str] = {}
    service = None
    service_id = db_id(form.get("service", ""))
    if service_id is not None:
        service = db().get(Service, service_id)
    if service is None or service.practice_id != practice.id:
        errors["service"] = mark("Choose what you want to book.")
        service = None
    slot = parse_slot(form.get("slot", ""))
    if slot is None or slot not in free_slots(db(), practice.id, platform().now()):
        errors["slot"] = mark("Choose one of the free times in the list.")
    if returning is None:
        name = form.get("name", "").strip()
        if not name:
            errors["name"] = mark("Enter your name.")
        elif len(name) > MAX_NAME or any(ord(ch) < 32 for ch in name):
            errors["name"] = mark("Enter your name in at most 120 characters, on one line.")
        problem = email_problem(form.get("email", "").strip(),
                                mark("Enter an e-mail address like name@example.com."))
        if problem:
            errors["email"] = problem
    phone = form.get("phone", "").strip()
    if phone and not _PHONE.match(phone):
        errors["phone"] = mark("Enter the phone number with digits only, or leave it empty.")
    return errors, service, slot


@bp.post("/book/<slug>")
def book_submit(slug: str) -> Any:
    session_db = db()
    language = current_language()
    practice = _practice(slug)
    token = request.form.get("r", "")[:400]
    returning = mailer.returning_client(token, practice.id) if token else None
    form = {k: v for k, v in request.form.items() if k != CSRF_FIELD}
    values = {k: form.get(k, "") for k in ("name", "email", "phone", "service", "slot")}
    errors, service, slot = _validate(practice, form, returning)
    if errors:
        session_db.rollback()
        return _form(practice, returning, token, values=values, errors=errors, vetoes=[],
                     status=400)
    assert service is not None and slot is not None
    if returning is not None:
        client: Client | None = returning
    else:
        email = validate_email(form["email"].strip(), check_deliverability=False).normalized
        client = _client_with(practice, email)
    is_new = client is None or not _has_bookings(client)

    # Phase 1: the apps check the booking before anything is written.
    # Who is booking: a returning client came through their personal link (signed in);
    # anyone else typed a name and an address, which may be someone else's.
    submission, vetoes = platform().apps.check(
        practice.id, client.id if client else None, is_new_client=is_new, channel="online",
        fields=form, locale=language, booker_signed_in=returning is not None,
        booker_name=None if returning else form["name"].strip(),
        booker_email=None if returning else form["email"].strip())
    if vetoes:
        session_db.rollback()
        return _form(practice, returning, token, values=values, errors={}, vetoes=vetoes,
                     status=400)
    try:
        now = platform().now()
        if client is None:
            client, created = _add_client(practice, form, email, language, now)
            if created:
                platform().apps.client_created(practice.id, client.id, "online")
        booking = Booking(practice_id=practice.id, client_id=client.id, service_id=service.id,
                          starts_at=slot, ends_at=slot + _minutes(service), channel="online",
                          created_at=now)
        session_db.add(booking)
        session_db.flush()
        # Phase 2: the apps record what the booking means, in this same transaction.
        # … and give the link to the client's consent page for the confirmation mail.
        consents = platform().apps.booking_made(submission, booking.id, client.id)
        _confirm(practice, booking, client, language, consents)
        session_db.commit()
    except IntegrityError:
        session_db.rollback()
        errors = {"slot": mark("Someone else just booked that time. Choose another time.")}
        return _form(practice, returning, token, values=values, errors=errors, vetoes=[],
                     status=409)
    except Exception:
        session_db.rollback()
        log.exception("online booking failed")
        errors = {"_": mark("We could not save your booking, and nothing was booked. "
                            "Please try again in a moment.")}
        return _form(practice, returning, token, values=values, errors=errors, vetoes=[],
                     status=503)
    session["last_booking"] = booking.id
    return redirect(url_for("public.booked", slug=practice.slug))


def _client_with(practice: Practice, email: str) -> Client | None:
    return db().scalar(select(Client).where(Client.practice_id == practice.id,
                                            Client.email_key == email_key(email)))


def _add_client(practice: Practice, form: dict[str, str], email: str, language: str,
                now: Any) -> tuple[Client, bool]:
    """The new client, or the one a simultaneous booking with the same address has
    just added (the unique key decides, not the look-up before): (client, created)."""
    session_db = db()
    client = Client(practice_id=practice.id, name=form["name"].strip(), email=email,
                    phone=form.get("phone", "").strip() or None, locale=language,
                    created_by="online", created_at=now)
    try:
        with session_db.begin_nested():  # a savepoint: a clash undoes this insert only
            session_db.add(client)
    except IntegrityError:
        existing = _client_with(practice, email)
        if existing is None:
            raise
        return existing, False
    return client, True


def _minutes(service: Service) -> Any:
    from datetime import timedelta

    return timedelta(minutes=service.minutes)


def _confirm(practice: Practice, booking: Booking, client: Client, language: str,
             consents: str | None) -> None:
    if not client.email:
        return
    link = str(platform().settings["BASE_URL"]).rstrip("/") + url_for(
        "public.book", slug=practice.slug, r=mailer.returning_token(client))
    subject, text = mailer.confirmation_text(
        booking, practice, language, link, when_label(booking.starts_at, language),
        booking.service.name(language), consents)
    mailer.send(practice, client.email, subject, text)


@bp.get("/book/<slug>/booked")
def booked(slug: str) -> Any:
    practice = _practice(slug)
    booking_id = session.get("last_booking")
    booking = db().get(Booking, booking_id) if isinstance(booking_id, int) else None
    if booking is None or booking.practice_id != practice.id:
        return redirect(url_for("public.book", slug=slug))
    return render_template("booked.html", practice=practice, booking=booking)


def translated(message: str) -> str:
    return translate(current_language(), message)


__all__ = ["_", "bp"]

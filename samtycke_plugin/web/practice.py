"""Practitioner pages (signed in through the host): overview, the activation wizard,
obtain consent, withdrawal, per-client history, the text editor, text versions and
batch requests.

Every handler takes the practice (tenant) and the practitioner from what the host
put in the WSGI environ (:func:`samtycke_plugin.web.base.staff_of`), never from
request data.  Every POST is refused when the browser says it comes from another site,
and checks a CSRF token bound to the host's sign-in session, the practice and the
practitioner (so a form from an ended session fails).  A success is answered with a
303 redirect that carries only a fixed confirmation key (never free text).  GET and
HEAD never change anything.  Business rules live in the domain modules;
these handlers parse forms, call it and render ``templates/samtycke/practice_*.html``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from attrs import frozen
from babel.numbers import format_decimal
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, NotFound
from werkzeug.wrappers import Request, Response

from hookspecs.types import ClientInfo, ClientRef, StaffContext, TenantRef
from samtycke_plugin import common, consent, practices, status_text
from samtycke_plugin.email.batch import count_clients, request_batch
from samtycke_plugin.email.requests import send_request
from samtycke_plugin.errors import Conflict, InputError, PermissionDenied, SettingsError
from samtycke_plugin.i18n import N_, t, tn
from samtycke_plugin.inputs import record_id, whole_number
from samtycke_plugin.ledger import load_snapshot
from samtycke_plugin.models import Practice
from samtycke_plugin.render import trusted_html
from samtycke_plugin.rules import VALID_STATES, Status, asks_at_booking, status
from samtycke_plugin.settings import PracticeSettings
from samtycke_plugin.status_text import CHANNEL_LABELS, METHOD_LABELS, STATE_LABELS, code_label
from samtycke_plugin.text import LANGUAGES, MAX_TEXT_LENGTH, normalise_body
from samtycke_plugin.web.base import (
    CSRF_FIELD,
    Handler,
    cross_site,
    error_page,
    host_of,
    locale_of,
    page,
    secure_headers,
    session_csrf_ok,
    session_csrf_token,
    session_of,
    staff_of,
)
from samtycke_plugin.web.forms import damaged_field, free_text_error

if TYPE_CHECKING:
    from hookspecs.host import Host

log = logging.getLogger("samtycke.web.practice")

LANGUAGE_NAMES = {"sv": N_("Swedish"), "en": N_("English")}

CROSS_SITE = N_(
    "This form was sent from another website, so nothing was saved. Open the page in the "
    "booking platform and send the form from there."
)
NO_SESSION = N_(
    "Nothing was saved: the booking platform did not say which sign-in this form belongs "
    "to, so it cannot be checked. Sign out and in again; if this keeps happening, contact "
    "the platform's support."
)
STALE_FORM = N_(
    "This form belongs to an earlier sign-in or to another page, so nothing was saved. "
    "Reload the page and try again."
)

KIND_LABELS = {
    "initial": N_("Original text"),
    "correction": N_("Correction"),
    "content": N_("Change of content"),
}

#: Confirmation messages shown after a redirect (the redirect carries only the key).
DONE = {
    "text_saved": N_("Your edits were saved as a correction of the first version of the text."),
    "text_kept": N_("The default text was kept unchanged."),
    "settings_saved": N_("Your choices were saved."),
    "setup_done": N_("Samtycke is set up: clients will be asked as you chose."),
    "recorded": N_("The consent was recorded."),
    "already": N_("This text is already the current text; nothing more was saved."),
    "unchanged": N_(
        "Nothing more was recorded: something was recorded for this client after you "
        "opened the page (perhaps the form was sent twice). Check the status below."
    ),
    "sent": N_("The consent request is on its way to the client's e-mail address."),
    "withdrawn": N_("The withdrawal was recorded. The consent no longer applies."),
    "revoked": N_("The consent was ended on the practice's side."),
    "correction": N_("The correction was saved. Consents already given remain valid."),
    "content": N_("The new text was saved."),  # with who is asked again: _content_saved
}

BOOL_SETTINGS = (
    "ask_new_clients",
    "ask_clients_without_consent",
    "email_request_to_new_clients",
    "email_request_after_staff_booking",
)
REQUIRE = "require_consent_for_online_booking"


# -- request context ------------------------------------------------------------------------------


@frozen(kw_only=True)
class Ctx:
    """What every practitioner page needs: from the host's environ, never from the request."""

    request: Request
    host: Host
    tenant: str
    staff: StaffContext
    locale: str
    practice: Practice
    prefix: str
    csrf: str

    def url(self, path: str, **params: object) -> str:
        query = urlencode({k: str(v) for k, v in params.items() if v is not None})
        return self.prefix + path + (f"?{query}" if query else "")


def _scope(tenant: str, staff: StaffContext) -> tuple[str, str, str]:
    return ("staff", tenant, staff.ref)


def context(request: Request) -> Ctx:
    """The signed-in practitioner's context; 404 when the host did not authenticate one."""
    tenant, staff = staff_of(request)
    host = host_of(request)
    practice = practices.require_practice(host.session(), tenant)
    session = session_of(request)
    secret = host.app_secret(common.APP_KEY)
    return Ctx(
        request=request,
        host=host,
        tenant=tenant,
        staff=staff,
        locale=locale_of(request),
        practice=practice,
        prefix=request.script_root.rstrip("/"),
        # Without the host's session id there is no token to give: every POST is refused.
        csrf=session_csrf_token(secret, session, _scope(tenant, staff)) if session else "",
    )


def check_csrf(ctx: Ctx) -> MultiDict[str, str]:
    """The posted form, after checking where it comes from and its CSRF token (403 with
    what to do, and nothing done, otherwise)."""
    request = ctx.request
    if cross_site(request, ctx.host.absolute_url(TenantRef(ctx.tenant), "/")):
        raise PermissionDenied(CROSS_SITE)
    session = session_of(request)
    if session is None:
        log.warning("practitioner POST refused: the host set no environ['booking.session']")
        raise PermissionDenied(NO_SESSION)
    secret = ctx.host.app_secret(common.APP_KEY)
    form = request.form
    if not session_csrf_ok(secret, session, _scope(ctx.tenant, ctx.staff), form.get(CSRF_FIELD)):
        raise PermissionDenied(STALE_FORM)
    return form


def redirect(ctx: Ctx, path: str, **params: object) -> Response:
    """303 See Other after a successful POST."""
    response = Response(status=303)
    response.headers["Location"] = ctx.url(path, **params)
    return secure_headers(response, public=False)


def home_link(request: Request) -> tuple[str, str] | None:
    """The host's "back to the platform" link (``environ["booking.home"] = (url, label)``)."""
    home = request.environ.get("booking.home")
    if (
        isinstance(home, tuple)
        and len(home) == 2
        and all(isinstance(x, str) for x in home)
        and home[0].startswith("/")
        and not home[0].startswith("//")
    ):
        return home[0], home[1]
    return None


def render_page(ctx: Ctx, template: str, *, status: int = 200, **values: Any) -> Response:
    info = ctx.host.practice_info(TenantRef(ctx.tenant))
    done = ctx.request.args.get("done", "") if ctx.request.method in ("GET", "HEAD") else ""
    notice = t(ctx.locale, DONE[done]) if done in DONE else None
    values.setdefault("notice", notice)
    values.setdefault("errors", {})
    values.setdefault("active", "")
    return page(
        template,
        ctx.locale,
        status=status,
        prefix=ctx.prefix,
        csrf=ctx.csrf,
        csrf_field=CSRF_FIELD,
        staff=ctx.staff,
        practice_name=info.name if info else ctx.tenant,
        setup_complete=ctx.practice.setup_complete,
        home=home_link(ctx.request),
        **values,
    )


def client_of(ctx: Ctx, client: str) -> ClientInfo:
    """The host's client in this practice; another practice's (or no) client → 404."""
    try:
        ref = common.check_ref("client", client)
    except InputError:
        raise NotFound() from None
    info = ctx.host.lookup_client(TenantRef(ctx.tenant), ClientRef(ref))
    if info is None:
        raise NotFound()
    return info


def _damaged(ctx: Ctx, field: str) -> Response:
    return error_page(400, ctx.locale, damaged_field(ctx.locale, field))


def _free_text_error(ctx: Ctx, kind: str, value: str) -> str | None:
    return free_text_error(ctx.locale, kind, value, limit=_number(ctx, common.MAX_NOTE))


def _rollback(ctx: Ctx) -> None:
    """Forget anything a failed service call may have flushed before re-showing a form."""
    ctx.host.session().rollback()


def _actor(ctx: Ctx) -> str:
    return consent.staff_actor(ctx.staff)


def _badge(ctx: Ctx, current: Status) -> dict[str, str]:
    return {
        "status": current.value,
        "tone": status_text.tone(current),
        "icon": status_text.icon(current),
        "label": status_text.label(current, ctx.locale),
        "reason": status_text.reason(current, ctx.locale),
    }


def _who(ctx: Ctx, actor: str) -> str:
    if actor == "client":
        return t(ctx.locale, "The client")
    if actor == "system":
        return t(ctx.locale, "The system")
    if actor == consent.staff_actor(ctx.staff):
        return t(ctx.locale, "You (%(name)s)", name=ctx.staff.name)
    if actor.startswith("staff:"):
        return t(ctx.locale, "Staff member %(ref)s", ref=actor.removeprefix("staff:"))
    return actor


def _number(ctx: Ctx, value: int) -> str:
    """A number written the way the page's language writes it (20 000 / 20,000)."""
    return format_decimal(value, locale=ctx.locale)


def _language_name(ctx: Ctx, code: str | None) -> str:
    return status_text.code_label(LANGUAGE_NAMES, code, ctx.locale)


def _counts(ctx: Ctx) -> dict[str, int]:
    total = count_clients(ctx.host, ctx.tenant)
    valid = practices.count_valid(ctx.host.session(), ctx.practice, common.now_utc(ctx.host))
    return {"total": total, "valid": valid, "without": max(total - valid, 0)}


def _operational(ctx: Ctx) -> Response | None:
    """Pages that ask clients need the wizard finished first: send the practitioner there."""
    if ctx.practice.setup_complete:
        return None
    return redirect(ctx, "/setup")


# -- overview -------------------------------------------------------------------------------------


def overview(request: Request) -> Response:
    ctx = context(request)
    return render_page(ctx, "practice_overview.html", counts=_counts(ctx), active="overview")


# -- activation wizard (F2) -----------------------------------------------------------------------


def _text_rows(ctx: Ctx, bodies: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    current = practices.current_texts(ctx.host.session(), ctx.practice)
    rows = []
    for language in LANGUAGES:
        version = current.get(language)
        if version is None:
            continue
        rows.append(
            {
                "language": language,
                "name": _language_name(ctx, language),
                "body": (bodies or {}).get(language, version.body),
                "html": trusted_html(version.html),
                "version": version,
                "label": common.version_label(version.major, version.minor),
            }
        )
    return rows


def _settings_values(settings: PracticeSettings) -> dict[str, Any]:
    return {
        **{name: getattr(settings, name) for name in BOOL_SETTINGS},
        REQUIRE: "yes" if settings.require_consent_for_online_booking else "no",
        "validity_days": "" if settings.validity_days is None else str(settings.validity_days),
        "request_link_days": str(settings.request_link_days),
    }


def _settings_from_form(
    ctx: Ctx, form: Mapping[str, str]
) -> tuple[dict[str, object], dict[str, Any], dict[str, str]]:
    """(settings to store, values to re-show, errors by field)."""
    errors: dict[str, str] = {}
    data: dict[str, object] = {name: form.get(name) == "yes" for name in BOOL_SETTINGS}
    shown: dict[str, Any] = dict(data)
    require = form.get(REQUIRE, "")
    shown[REQUIRE] = require
    if require not in ("yes", "no"):
        errors[REQUIRE] = t(
            ctx.locale,
            "Choose whether clients must consent to book online, or may book without consenting.",
        )
    else:
        data[REQUIRE] = require == "yes"
    validity = form.get("validity_days", "").strip()
    shown["validity_days"] = validity
    if not validity:
        data["validity_days"] = None
    elif (days := whole_number(validity, max_digits=4)) is not None and 1 <= days <= 3650:
        data["validity_days"] = days
    else:
        errors["validity_days"] = t(
            ctx.locale,
            "Write the validity as a whole number of days from 1 to 3650, or leave it "
            "empty if consent should not lapse by itself.",
        )
    link_days = form.get("request_link_days", "").strip()
    shown["request_link_days"] = link_days
    if (days := whole_number(link_days, max_digits=2)) is not None and 1 <= days <= 90:
        data["request_link_days"] = days
    else:
        errors["request_link_days"] = t(
            ctx.locale, "Write how many days an e-mailed link works: a whole number from 1 to 90."
        )
    return data, shown, errors


def _setup_page(ctx: Ctx, step: int, *, status: int = 200, **values: Any) -> Response:
    values.setdefault("texts", _text_rows(ctx) if step == 2 else [])
    if "settings" not in values:
        values["settings"] = _settings_values(practices.settings_of(ctx.practice))
        if not ctx.practice.setup_complete:
            # A real decision (GDPR Art. 7(4)): nothing is preselected the first time.
            values["settings"][REQUIRE] = ""
    return render_page(
        ctx,
        "practice_setup.html",
        status=status,
        step=step,
        active="setup",
        expected_major=ctx.practice.current_major,
        first_setup=not ctx.practice.setup_complete,
        **values,
    )


def setup(request: Request) -> Response:
    ctx = context(request)
    if request.method == "POST":
        form = check_csrf(ctx)
        posted_step = form.get("step", "")
        if posted_step == "2":
            return _setup_save_text(ctx, form)
        if posted_step == "3":
            return _setup_save_settings(ctx, form)
        raise BadRequest()
    raw = request.args.get("step", "")
    if raw in ("1", "2", "3", "4"):
        step = int(raw)
    else:
        step = 3 if ctx.practice.setup_complete else 1
    if step == 4 and not ctx.practice.setup_complete:
        step = 3
    return _setup_page(ctx, step)


def _setup_save_text(ctx: Ctx, form: Mapping[str, str]) -> Response:
    if ctx.practice.setup_complete:
        # After set-up, text changes go through the editor, which asks about re-consent.
        return redirect(ctx, "/text")
    expected = whole_number(form.get("expected_major", ""), max_digits=9)
    if expected is None:
        return _damaged(ctx, "expected_major")
    if form.get("action") != "save":
        return redirect(ctx, "/setup", step=3, done="text_kept")
    current = practices.current_texts(ctx.host.session(), ctx.practice)
    bodies = {lang: form[f"text_{lang}"] for lang in LANGUAGES if f"text_{lang}" in form}
    changed = {
        lang: body
        for lang, body in bodies.items()
        if lang in current and normalise_body(body) != current[lang].body
    }
    if not changed:
        return redirect(ctx, "/setup", step=3, done="text_kept")
    try:
        practices.publish_text(
            ctx.host,
            ctx.tenant,
            bodies=changed,
            kind="correction",
            reason=t(ctx.locale, "Edited in the activation wizard."),
            actor=_actor(ctx),
            expected_major=expected,
        )
    except InputError as exc:
        _rollback(ctx)
        errors = {exc.field: _text_error(ctx, exc.field)}
        return _setup_page(ctx, 2, status=400, errors=errors, texts=_text_rows(ctx, bodies))
    return redirect(ctx, "/setup", step=3, done="text_saved")


def _text_error(ctx: Ctx, field: str) -> str:
    language = field.removeprefix("text_")
    return t(
        ctx.locale,
        "The text in %(language)s must be between 20 and %(max)s characters long. Complete "
        "or shorten it and try again.",
        language=_language_name(ctx, language),
        max=_number(ctx, MAX_TEXT_LENGTH),
    )


def _setup_save_settings(ctx: Ctx, form: Mapping[str, str]) -> Response:
    data, shown, errors = _settings_from_form(ctx, form)
    was_complete = ctx.practice.setup_complete
    if not errors:
        try:
            practices.complete_setup(ctx.host, ctx.tenant, data)
        except SettingsError:
            _rollback(ctx)
            errors["settings"] = t(
                ctx.locale, "Some choices could not be saved. Check them and try again."
            )
    if errors:
        return _setup_page(ctx, 3, status=400, errors=errors, settings=shown)
    if was_complete:
        return redirect(ctx, "/setup", done="settings_saved")
    return redirect(ctx, "/setup", step=4, done="setup_done")


# -- obtain consent (F5) --------------------------------------------------------------------------


def _obtain_page(ctx: Ctx, info: ClientInfo, *, status: int = 200, **values: Any) -> Response:
    session = ctx.host.session()
    current = consent.client_status(ctx.host, ctx.tenant, info.ref)
    text = practices.current_text(session, ctx.practice, info.locale)
    today = (common.now_utc(ctx.host) + timedelta(hours=14)).date()
    values.setdefault("form", {"method": "", "given_on": "", "note": ""})
    return render_page(
        ctx,
        "practice_obtain.html",
        status=status,
        client=info,
        badge=_badge(ctx, current.status),
        text_html=trusted_html(text.html),
        text_label=common.version_label(text.major, text.minor),
        text_language=text.language,
        text_language_name=_language_name(ctx, text.language),
        methods=[(m, t(ctx.locale, METHOD_LABELS[m])) for m in consent.MANUAL_METHODS],
        max_date=today.isoformat(),
        has_email=bool(info.email),
        seen_seq=consent.client_seq(session, ctx.tenant, info.ref),
        **values,
    )


def obtain(request: Request, client: str) -> Response:
    ctx = context(request)
    info = client_of(ctx, client)
    if request.method == "POST":
        form = check_csrf(ctx)
        if (gone := _operational(ctx)) is not None:
            return gone
        action = form.get("action")
        if action == "record":
            return _record(ctx, info, form)
        if action == "send":
            return _send(ctx, info)
        raise BadRequest()
    if (gone := _operational(ctx)) is not None:
        return gone
    return _obtain_page(ctx, info)


def _parse_given_on(ctx: Ctx, raw: str) -> tuple[datetime | None, str | None]:
    """The day the client gave consent → a UTC time on that day (never after now)."""
    if not raw:
        return None, t(ctx.locale, "Enter the date the client gave their consent.")
    try:
        day = date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None:
        return None, t(ctx.locale, "Enter the date as year-month-day, for example 2026-03-14.")
    now = common.now_utc(ctx.host)
    if day > (now + timedelta(hours=14)).date():
        return None, t(
            ctx.locale, "The date cannot be in the future. Enter the day the client gave consent."
        )
    if day < (now - timedelta(days=3650)).date():
        return None, t(
            ctx.locale, "The date is more than ten years ago. Check the year and try again."
        )
    return min(datetime.combine(day, time(12, 0), tzinfo=UTC), now), None


def _record(ctx: Ctx, info: ClientInfo, form: Mapping[str, str]) -> Response:
    if not ctx.staff.can_record_consent:
        raise PermissionDenied(
            N_(
                "You do not have permission to record consent given outside the app. Ask the "
                "practice owner for permission, or send the client a request by e-mail."
            )
        )
    method = form.get("method", "")
    raw_date = form.get("given_on", "").strip()
    note = form.get("note", "")
    errors: dict[str, str] = {}
    if method not in consent.MANUAL_METHODS:
        errors["method"] = t(ctx.locale, "Choose how the client gave their consent.")
    given_at, date_error = _parse_given_on(ctx, raw_date)
    if date_error:
        errors["given_on"] = date_error
    if (note_error := _free_text_error(ctx, "note", note)) is not None:
        errors["note"] = note_error
    seen = form.get("seen_seq", "")
    seen_seq = whole_number(seen)
    if seen and seen_seq is None:
        return _damaged(ctx, "seen_seq")
    if not errors and seen_seq is not None:
        # The form was posted twice (double click), or someone else recorded something
        # for this client meanwhile: record nothing more, show what is there now.
        if consent.client_changed_since(ctx.host, ctx.tenant, info.ref, seen_seq):
            return redirect(ctx, f"/clients/{info.ref}/obtain", done="unchanged")
    if not errors:
        assert given_at is not None
        try:
            consent.record_manual(
                ctx.host,
                ctx.tenant,
                info.ref,
                ctx.staff,
                method=method,
                given_at=given_at,
                note=note,
            )
        except InputError as exc:
            _rollback(ctx)
            errors[exc.field if exc.field in ("method", "given_at", "note") else "record"] = t(
                ctx.locale, "The consent could not be recorded. Check the fields and try again."
            )
    if errors:
        if "given_at" in errors:
            errors["given_on"] = errors.pop("given_at")
        return _obtain_page(
            ctx,
            info,
            status=400,
            errors=errors,
            form={"method": method, "given_on": raw_date, "note": note},
        )
    return redirect(ctx, f"/clients/{info.ref}/obtain", done="recorded")


def _send(ctx: Ctx, info: ClientInfo) -> Response:
    try:
        send_request(ctx.host, ctx.tenant, info.ref, actor=_actor(ctx))
    except InputError as exc:
        _rollback(ctx)
        if exc.field not in ("email", "name", "practice_name"):
            raise
        # requests.py words these as sentences (address missing or invalid, a name that
        # cannot go into a mail header) and translates them.
        reason = t(ctx.locale, str(exc).removeprefix(f"{exc.field}: "))
        message = t(ctx.locale, "The request was not sent.") + " " + reason
        return _obtain_page(ctx, info, status=400, errors={"email": message})
    return redirect(ctx, f"/clients/{info.ref}/obtain", done="sent")


# -- withdrawal (F15) -----------------------------------------------------------------------------


def withdraw(request: Request, client: str) -> Response:
    ctx = context(request)
    info = client_of(ctx, client)
    if request.method == "POST":
        form = check_csrf(ctx)
        action = form.get("action")
        if action not in ("withdraw", "revoke"):
            raise BadRequest()
        by_client = action == "withdraw"
        if not by_client and not ctx.staff.can_record_consent:
            raise PermissionDenied(
                N_(
                    "You do not have permission to end a consent on the practice's side. Ask "
                    "the practice owner. You can still record a withdrawal the client asked for."
                )
            )
        note = form.get("note", "")
        if (error := _free_text_error(ctx, "note", note)) is not None:
            return _withdraw_page(ctx, info, status=400, errors={f"note_{action}": error})
        seen = form.get("seen_seq", "")
        seen_seq = whole_number(seen)
        if seen and seen_seq is None:
            return _damaged(ctx, "seen_seq")
        if seen_seq is not None:
            if consent.client_changed_since(ctx.host, ctx.tenant, info.ref, seen_seq):
                # Posted twice, or changed meanwhile: show the history as it is now.
                return redirect(ctx, f"/clients/{info.ref}/history", done="unchanged")
        consent.withdraw(
            ctx.host,
            ctx.tenant,
            info.ref,
            actor=_actor(ctx),
            channel="practitioner",
            method="reported_by_staff" if by_client else "ended_by_practice",
            by_client=by_client,
            note=note,
        )
        return redirect(
            ctx, f"/clients/{info.ref}/history", done="withdrawn" if by_client else "revoked"
        )
    return _withdraw_page(ctx, info)


def _withdraw_page(ctx: Ctx, info: ClientInfo, *, status: int = 200, **values: Any) -> Response:
    current = consent.client_status(ctx.host, ctx.tenant, info.ref)
    snap = current.snapshot
    return render_page(
        ctx,
        "practice_withdraw.html",
        status=status,
        client=info,
        badge=_badge(ctx, current.status),
        withdrawable=snap is not None and snap.state in VALID_STATES,
        seen_seq=consent.client_seq(ctx.host.session(), ctx.tenant, info.ref),
        **values,
    )


# -- history (F10) and text versions --------------------------------------------------------------


def client_history(request: Request, client: str) -> Response:
    ctx = context(request)
    try:
        ref = common.check_ref("client", client)
    except InputError:
        raise NotFound() from None
    info = ctx.host.lookup_client(TenantRef(ctx.tenant), ClientRef(ref))
    entries = consent.history(ctx.host, ctx.tenant, ref)
    if info is None and not entries:
        raise NotFound()
    snap = load_snapshot(ctx.host.session(), ctx.practice.tenant_ref, ref)
    current = status(snap, ctx.practice.current_major, common.now_utc(ctx.host))
    rows = []
    for entry in reversed(entries):
        given_differs = entry.given_at is not None and entry.given_at != entry.occurred_at
        rows.append(
            {
                "entry": entry,
                "state": code_label(STATE_LABELS, entry.state, ctx.locale),
                "channel": code_label(CHANNEL_LABELS, entry.channel, ctx.locale),
                "method": code_label(METHOD_LABELS, entry.method, ctx.locale),
                "who": _who(ctx, entry.actor),
                "given_differs": given_differs,
                "given_date_only": entry.channel == "manual",
                "language": _language_name(ctx, entry.language),
                "tone": "ok" if entry.state in ("given", "renewed") else "missing",
            }
        )
    return render_page(
        ctx,
        "practice_history.html",
        client=info,
        client_ref=ref,
        rows=rows,
        badge=_badge(ctx, current),
        withdrawable=snap is not None and snap.state in VALID_STATES,
    )


def text_version(request: Request, text_id: str) -> Response:
    ctx = context(request)
    number = record_id(text_id)  # not Werkzeug's int converter: its \d takes "٣" as 3
    if number is None:
        raise NotFound()
    text = practices.text_by_id(ctx.host.session(), ctx.tenant, number)
    return render_page(
        ctx,
        "practice_text_version.html",
        active="text",
        text=text,
        label=common.version_label(text.major, text.minor),
        language_name=_language_name(ctx, text.language),
        kind=status_text.code_label(KIND_LABELS, text.change_kind, ctx.locale),
        who=_who(ctx, text.created_by),
        html=trusted_html(text.html),
        is_current=text.major == ctx.practice.current_major,
    )


# -- the text editor (F11) ------------------------------------------------------------------------


def _versions(ctx: Ctx) -> list[dict[str, Any]]:
    return [
        {
            "id": v.id,
            "label": common.version_label(v.major, v.minor),
            "language": _language_name(ctx, v.language),
            "kind": status_text.code_label(KIND_LABELS, v.change_kind, ctx.locale),
            "who": _who(ctx, v.created_by),
            "at": v.created_at,
            "reason": v.reason,
            "current": v.major == ctx.practice.current_major,
        }
        for v in practices.text_versions(ctx.host.session(), ctx.tenant)
    ]


def _editor(
    ctx: Ctx, *, bodies: Mapping[str, str] | None = None, status: int = 200, **values: Any
) -> Response:
    return render_page(
        ctx,
        "practice_text.html",
        status=status,
        active="text",
        texts=_text_rows(ctx, bodies),
        expected_major=ctx.practice.current_major,
        versions=_versions(ctx),
        asks_at_booking=asks_at_booking(practices.settings_of(ctx.practice)),
        **values,
    )


def _content_saved(ctx: Ctx, raw_affected: str) -> str:
    """The message after a change of content: how many clients must consent again, and
    when they are asked, as the practice's settings say."""
    affected = int(raw_affected) if raw_affected.isdigit() and len(raw_affected) < 10 else 0
    if affected == 0:
        return t(
            ctx.locale,
            "The new text was saved. No client had valid consent to the earlier text, so "
            "no consent became outdated.",
        )
    if asks_at_booking(practices.settings_of(ctx.practice)):
        return tn(
            ctx.locale,
            "The new text was saved. %(count)s client who had consented must consent again: "
            "they are asked at their next online booking, and you can e-mail them a "
            "request now under “Ask clients”.",
            "The new text was saved. %(count)s clients who had consented must consent again: "
            "they are asked at their next online booking, and you can e-mail them a "
            "request now under “Ask clients”.",
            affected,
            count=_number(ctx, affected),
        )
    return tn(
        ctx.locale,
        "The new text was saved. %(count)s client who had consented must consent again. "
        "Your settings ask no one at online booking, so they are asked only if you "
        "e-mail them a request under “Ask clients”.",
        "The new text was saved. %(count)s clients who had consented must consent again. "
        "Your settings ask no one at online booking, so they are asked only if you "
        "e-mail them a request under “Ask clients”.",
        affected,
        count=_number(ctx, affected),
    )


def text_editor(request: Request) -> Response:
    ctx = context(request)
    if request.method != "POST":
        if request.args.get("done") == "content":
            return _editor(ctx, notice=_content_saved(ctx, request.args.get("affected", "")))
        return _editor(ctx)
    form = check_csrf(ctx)
    action = form.get("action")
    expected = whole_number(form.get("expected_major", ""), max_digits=9)
    if expected is None:
        return _damaged(ctx, "expected_major")
    bodies = {lang: form[f"text_{lang}"] for lang in LANGUAGES if f"text_{lang}" in form}
    if action == "edit":
        return _editor(ctx, bodies=bodies)
    if action not in ("preview", "save"):
        raise BadRequest()
    current = practices.current_texts(ctx.host.session(), ctx.practice)
    bodies = {lang: body for lang, body in bodies.items() if lang in current}
    changed = [lang for lang, body in bodies.items() if normalise_body(body) != current[lang].body]
    if action == "save" and bodies and not changed:
        # The preview refuses an unchanged text, so this is the same save posted again
        # (double click) or someone saved exactly this text meanwhile: it is saved.
        return redirect(ctx, "/text", done="already")
    if expected != ctx.practice.current_major:
        raise Conflict(practices.TEXT_CHANGED_MEANWHILE)
    if not changed:
        return _editor(
            ctx,
            bodies=bodies,
            status=400,
            errors={"text": t(ctx.locale, "You have not changed the text. Edit it, then preview.")},
        )
    previews: list[dict[str, Any]] = []
    affected = 0
    for lang in changed:
        try:
            content = practices.preview_text_change(
                ctx.host, ctx.tenant, language=lang, body=bodies[lang], kind="content"
            )
            correction = practices.preview_text_change(
                ctx.host, ctx.tenant, language=lang, body=bodies[lang], kind="correction"
            )
        except InputError as exc:
            return _editor(
                ctx, bodies=bodies, status=400, errors={exc.field: _text_error(ctx, exc.field)}
            )
        affected = content.affected  # the same for every language: clients, not texts
        previews.append(
            {
                "language": lang,
                "name": _language_name(ctx, lang),
                "diff": content.diff,
                "correction_label": common.version_label(
                    correction.new_major, correction.new_minor
                ),
                "content_label": common.version_label(content.new_major, content.new_minor),
            }
        )
    kind = form.get("kind", "")
    reason = form.get("reason", "")
    if action == "save":
        errors: dict[str, str] = {}
        if kind not in ("correction", "content"):
            errors["kind"] = t(
                ctx.locale,
                "Choose whether this is a correction or a change of content, then save.",
            )
        if (reason_error := _free_text_error(ctx, "reason", reason)) is not None:
            errors["reason"] = reason_error
        if not errors:
            publish = bodies if kind == "content" else {lang: bodies[lang] for lang in changed}
            practices.publish_text(
                ctx.host,
                ctx.tenant,
                bodies=publish,
                kind=kind,
                reason=reason,
                actor=_actor(ctx),
                expected_major=expected,
            )
            if kind == "content":
                return redirect(ctx, "/text", done=kind, affected=affected)
            return redirect(ctx, "/text", done=kind)
        status_code = 400
    else:
        errors, status_code = {}, 200
    unchanged = [_language_name(ctx, lang) for lang in bodies if lang not in changed]
    return render_page(
        ctx,
        "practice_text_preview.html",
        status=status_code,
        active="text",
        previews=previews,
        bodies=bodies,
        expected_major=expected,
        affected=affected,
        affected_sentence=tn(
            ctx.locale,
            "%(n)s client who has consented now will need to consent again.",
            "%(n)s clients who have consented now will need to consent again.",
            affected,
        ),
        unchanged=unchanged,
        asks_at_booking=asks_at_booking(practices.settings_of(ctx.practice)),
        kind=kind,
        reason=reason,
        errors=errors,
    )


# -- batch request (F7) ---------------------------------------------------------------------------


def batch(request: Request) -> Response:
    ctx = context(request)
    if request.method == "POST":
        check_csrf(ctx)
        if (gone := _operational(ctx)) is not None:
            return gone
        result = request_batch(ctx.host, ctx.tenant, actor=_actor(ctx))
        return redirect(
            ctx,
            "/batch",
            done="batch",
            asked=result.asked,
            valid=result.skipped_valid,
            pending=result.skipped_pending,
            no_email=result.skipped_no_email,
            bad_name=result.skipped_bad_name,
            withdrawn=result.skipped_withdrawn,
            refused=result.skipped_refused,
        )
    if (gone := _operational(ctx)) is not None:
        return gone
    result_counts = None
    if request.args.get("done") == "batch":
        result_counts = {}
        for key in ("asked", "valid", "pending", "no_email", "bad_name", "withdrawn", "refused"):
            raw = request.args.get(key, "")
            result_counts[key] = whole_number(raw, max_digits=9) or 0
    return render_page(
        ctx,
        "practice_batch.html",
        active="batch",
        counts=_counts(ctx),
        result=result_counts,
    )


#: (path, endpoint, handler, methods).
ROUTES: list[tuple[str, str, Handler, tuple[str, ...]]] = [
    ("/", "practice.overview", overview, ("GET",)),
    ("/setup", "practice.setup", setup, ("GET", "POST")),
    ("/text", "practice.text", text_editor, ("GET", "POST")),
    ("/texts/<text_id>", "practice.text_version", text_version, ("GET",)),
    ("/batch", "practice.batch", batch, ("GET", "POST")),
    ("/clients/<client>/obtain", "practice.obtain", obtain, ("GET", "POST")),
    ("/clients/<client>/withdraw", "practice.withdraw", withdraw, ("GET", "POST")),
    ("/clients/<client>/history", "practice.history", client_history, ("GET",)),
]

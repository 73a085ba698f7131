"""The practitioner's overview and the activation wizard: general information, the
consent text, when clients are asked, done.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Request, Response

from hookspecs.types import Permission
from samtycke_plugin import common, hostdb, practice_texts, practices
from samtycke_plugin.errors import InputError, SettingsError
from samtycke_plugin.i18n import t
from samtycke_plugin.inputs import whole_number
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.render import trusted_html
from samtycke_plugin.settings import (
    BRAND_COLOUR,
    CONFIRM_MODES,
    PracticeSettings,
    normalise_colour,
)
from samtycke_plugin.text import LANGUAGES, MAX_TEXT_LENGTH, normalise_body
from samtycke_plugin.web import purposes_page
from samtycke_plugin.web.base import Handler, requires
from samtycke_plugin.web.staff import (
    Ctx,
    _actor,
    _counts,
    _damaged,
    _language_name,
    _number,
    _rollback,
    check_csrf,
    context,
    redirect,
    render_page,
)

BOOL_SETTINGS = (
    "ask_new_clients",
    "ask_clients_without_consent",
    "email_request_to_new_clients",
    "email_request_after_staff_booking",
)


REQUIRE = "require_consent_for_online_booking"


def overview(request: Request) -> Response:
    ctx = context(request)
    return render_page(ctx, "practice_overview.html", counts=_counts(ctx), active="overview")


def _text_rows(
    ctx: Ctx, bodies: Mapping[str, str] | None = None, purpose: str = DEFAULT_PURPOSE
) -> list[dict[str, Any]]:
    with hostdb.session(ctx.host) as session:
        current = practice_texts.current_texts(session, ctx.practice, purpose)
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
        "pause_days": str(settings.pause_days),
        "renew_days_before": str(settings.renew_days_before),
        "remind_after_days": str(settings.remind_after_days),
        "brand_colour": settings.brand_colour or "",
        "confirm_online_consent": settings.confirm_online_consent,
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
    # A form without the field (an older page still open) keeps the practice's pause.
    pause = form.get("pause_days", str(practices.settings_of(ctx.practice).pause_days)).strip()
    shown["pause_days"] = pause
    if (days := whole_number(pause, max_digits=4)) is not None and days <= 1825:
        data["pause_days"] = days
    else:
        errors["pause_days"] = t(
            ctx.locale,
            "Write how many days to wait before asking a client who said no again: a whole "
            "number from 0 to 1825 (0 asks again at the next booking).",
        )
    _renewal_from_form(ctx, form, data, shown, errors)
    # A form without the field (an older page still open) keeps the practice's colour.
    kept = practices.settings_of(ctx.practice).brand_colour or ""
    colour = form.get("brand_colour", kept).strip()
    shown["brand_colour"] = colour
    normalised = normalise_colour(colour)
    if normalised is None or (isinstance(normalised, str) and BRAND_COLOUR.fullmatch(normalised)):
        data["brand_colour"] = normalised
    else:
        errors["brand_colour"] = t(
            ctx.locale,
            "Write the colour as # followed by six digits or letters from a to f, such as "
            "#1a5fb4, or leave the field empty.",
        )
    # A form without the field (an older page still open) keeps the practice's choice.
    kept_mode = practices.settings_of(ctx.practice).confirm_online_consent
    mode = form.get("confirm_online_consent", kept_mode)
    shown["confirm_online_consent"] = mode
    if mode in CONFIRM_MODES:
        data["confirm_online_consent"] = mode
    else:
        errors["confirm_online_consent"] = t(
            ctx.locale,
            "Choose when clients must confirm consent given in an online booking.",
        )
    return data, shown, errors


def _renewal_from_form(
    ctx: Ctx, form: Mapping[str, str], data: dict[str, object], shown: dict[str, Any],
    errors: dict[str, str],
) -> None:
    """The renewal and reminder days (a form without them, an older page still open,
    keeps the practice's)."""
    stored = practices.settings_of(ctx.practice)
    limits = {
        "renew_days_before": (stored.renew_days_before, 365, t(
            ctx.locale,
            "Write how many days before consent lapses the client is asked to renew it: "
            "a whole number from 0 to 365 (0 sends no renewal requests).",
        )),
        "remind_after_days": (stored.remind_after_days, 90, t(
            ctx.locale,
            "Write after how many days an unanswered request is followed by a reminder: "
            "a whole number from 0 to 90 (0 sends no reminders).",
        )),
    }
    for name, (kept, highest, message) in limits.items():
        value = form.get(name, str(kept)).strip()
        shown[name] = value
        if (days := whole_number(value, max_digits=3)) is not None and days <= highest:
            data[name] = days
        else:
            errors[name] = message


def _setup_page(ctx: Ctx, step: int, *, status: int = 200, **values: Any) -> Response:
    values.setdefault("texts", _text_rows(ctx) if step == 2 else [])
    if step == 2:
        # The step also offers the catalogue's optional purposes: add, edit or skip each.
        values.setdefault("offers", purposes_page._offers(ctx))
        values.setdefault("added", [
            {"key": p.key, "name": purposes_page.purpose_name(ctx, p)}
            for p in purposes_page.active_purposes(ctx) if p.key != DEFAULT_PURPOSE
        ])
    if "settings" not in values:
        values["settings"] = _settings_values(practices.settings_of(ctx.practice))
        if not ctx.practice.setup_complete:
            # A real decision (GDPR Art. 7(4)): nothing is preselected the first time.
            values["settings"][REQUIRE] = ""
    with hostdb.session(ctx.host) as session:
        expected_major = practices.purpose_major(session, ctx.practice)
    return render_page(
        ctx,
        "practice_setup.html",
        status=status,
        step=step,
        active="setup",
        expected_major=expected_major,
        first_setup=not ctx.practice.setup_complete,
        **values,
    )


@requires(Permission.MANAGE_SETTINGS)
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
    with hostdb.session(ctx.host) as session:
        current = practice_texts.current_texts(session, ctx.practice)
        bodies = {lang: form[f"text_{lang}"] for lang in LANGUAGES if f"text_{lang}" in form}
        changed = {
            lang: body
            for lang, body in bodies.items()
            if lang in current and normalise_body(body) != current[lang].body
        }
        if not changed:
            return redirect(ctx, "/setup", step=3, done="text_kept")
        try:
            practice_texts.publish_text(
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


ROUTES: list[tuple[str, str, Handler, tuple[str, ...]]] = [
    ("/", "practice.overview", overview, ("GET",)),
    ("/setup", "practice.setup", setup, ("GET", "POST")),
]

"""Practitioner pages about clients: obtain consent (record it or send a request),
record a withdrawal, a client's history, and the batch request to many clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from werkzeug.exceptions import BadRequest, NotFound
from werkzeug.wrappers import Request, Response

from hookspecs.types import ClientInfo, ClientRef, Permission, TenantRef
from samtycke_plugin import common, consent, hostdb, practice_texts, roles
from samtycke_plugin.email import jobs
from samtycke_plugin.email.purpose_names import purpose_names
from samtycke_plugin.email.requests import send_request
from samtycke_plugin.errors import InputError
from samtycke_plugin.i18n import t
from samtycke_plugin.inputs import whole_number
from samtycke_plugin.purposes import DEFAULT_PURPOSE, PurposeInfo, list_purposes
from samtycke_plugin.render import trusted_html
from samtycke_plugin.status_text import CHANNEL_LABELS, METHOD_LABELS, STATE_LABELS, code_label
from samtycke_plugin.web.access_page import log_view_of_history
from samtycke_plugin.web.base import Handler, requires
from samtycke_plugin.web.batch_page import batch
from samtycke_plugin.web.purposes_page import (
    active_purposes,
    all_purposes,
    find_purpose,
    purpose_name,
)
from samtycke_plugin.web.staff import (
    Ctx,
    _actor,
    _badge,
    _damaged,
    _free_text_error,
    _language_name,
    _operational,
    _rollback,
    _who,
    check_csrf,
    client_of,
    context,
    redirect,
    render_page,
)


def _obtain_page(
    ctx: Ctx, info: ClientInfo, *, status: int = 200, purpose: PurposeInfo | None = None,
    **values: Any,
) -> Response:
    purpose = purpose or find_purpose(ctx, DEFAULT_PURPOSE)
    choices = [
        {"key": p.key, "name": purpose_name(ctx, p), "current": p.key == purpose.key}
        for p in active_purposes(ctx)
    ]
    with hostdb.session(ctx.host) as session:
        current = consent.client_status(ctx.host, ctx.tenant, info.ref, purpose.key)
        text = practice_texts.current_text(session, ctx.practice, info.locale, purpose.key)
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
            request_purposes=_request_purposes(ctx, session, info.ref),
            purpose=purpose,
            purpose_label=purpose_name(ctx, purpose),
            choices=choices if len(choices) > 1 else [],
            **values,
        )


def _request_purposes(ctx: Ctx, session: Any, client: str) -> list[tuple[str, str, bool]]:
    """``(key, name, ticked)`` of the purposes a request can ask for (ticked: no valid
    consent now); empty when the practice has only one."""
    names = purpose_names(session, ctx.tenant, ctx.locale)
    if len(list_purposes(session, ctx.tenant)) < 2:
        return []
    return [
        (p.key, names.get(p.key, p.key),
         not consent.client_status(ctx.host, ctx.tenant, client, p.key).valid)
        for p in list_purposes(session, ctx.tenant)
    ]


def _purpose_of(ctx: Ctx, key: str | None) -> PurposeInfo:
    """The purpose the page records for (none given: the default one), within the
    signed-in practice only."""
    return find_purpose(ctx, key or DEFAULT_PURPOSE)


def obtain(request: Request, client: str) -> Response:
    ctx = context(request)
    info = client_of(ctx, client)
    if request.method == "POST":
        form = check_csrf(ctx)
        if (gone := _operational(ctx)) is not None:
            return gone
        action = form.get("action")
        if action == "record":
            return _record(ctx, info, form, _purpose_of(ctx, form.get("purpose")))
        if action == "send":
            chosen = form.getlist("purpose")
            return _send(ctx, info, chosen or None)
        raise BadRequest()
    if (gone := _operational(ctx)) is not None:
        return gone
    return _obtain_page(ctx, info, purpose=_purpose_of(ctx, request.args.get("purpose")))


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


def _record(
    ctx: Ctx, info: ClientInfo, form: Mapping[str, str], purpose: PurposeInfo
) -> Response:
    roles.require(ctx.staff, Permission.RECORD_CONSENT)
    here = {"purpose": purpose.key} if purpose.key != DEFAULT_PURPOSE else {}
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
            return redirect(ctx, f"/clients/{info.ref}/obtain", **here, done="unchanged")
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
                purpose=purpose.key,
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
            purpose=purpose,
        )
    return redirect(ctx, f"/clients/{info.ref}/obtain", **here, done="recorded")


def _send(ctx: Ctx, info: ClientInfo, purposes: list[str] | None) -> Response:
    try:
        send_request(ctx.host, ctx.tenant, info.ref, actor=_actor(ctx), purposes=purposes)
    except InputError as exc:
        _rollback(ctx)
        if exc.field not in ("email", "name", "practice_name"):
            raise
        # email.addresses words these as sentences (address missing or invalid, a name that
        # cannot go into a mail header) and translates them.
        reason = t(ctx.locale, str(exc).removeprefix(f"{exc.field}: "))
        message = t(ctx.locale, "The request was not sent.") + " " + reason
        return _obtain_page(ctx, info, status=400, errors={"email": message})
    return redirect(ctx, f"/clients/{info.ref}/obtain", done="sent")


def withdraw(request: Request, client: str) -> Response:
    ctx = context(request)
    info = client_of(ctx, client)
    if request.method == "POST":
        form = check_csrf(ctx)
        action = form.get("action")
        if action not in ("withdraw", "revoke"):
            raise BadRequest()
        by_client = action == "withdraw"
        if not by_client:
            # Anyone signed in may record a withdrawal the client asked for (withdrawing
            # must stay as easy as consenting); ending it on the practice's side may not.
            roles.require(ctx.staff, Permission.RECORD_CONSENT)
        note = form.get("note", "")
        if (error := _free_text_error(ctx, "note", note)) is not None:
            return _withdraw_page(ctx, info, status=400, errors={f"note_{action}": error})
        seen = form.get("seen_seq", "")
        seen_seq = whole_number(seen)
        if seen and seen_seq is None:
            return _damaged(ctx, "seen_seq")
        if seen_seq is not None:
            if consent.client_changed_since(ctx.host, ctx.tenant, info.ref, seen_seq):
                # Posted twice, or changed meanwhile: show the status as it is now.
                return redirect(ctx, _after_change(ctx, info), done="unchanged")
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
        done = "withdrawn" if by_client else "revoked"
        return redirect(ctx, f"{_after_change(ctx, info)}", done=done)
    return _withdraw_page(ctx, info)


def _after_change(ctx: Ctx, info: ClientInfo) -> str:
    """Where a recorded withdrawal leads: the history, for staff who may see it."""
    if ctx.staff.may(Permission.VIEW_HISTORY):
        return f"/clients/{info.ref}/history"
    return f"/clients/{info.ref}/withdraw"


def _withdraw_page(ctx: Ctx, info: ClientInfo, *, status: int = 200, **values: Any) -> Response:
    current = consent.client_status(ctx.host, ctx.tenant, info.ref)
    with hostdb.session(ctx.host) as session:
        return render_page(
            ctx,
            "practice_withdraw.html",
            status=status,
            client=info,
            badge=_badge(ctx, current.status),
            withdrawable=current.withdrawable,
            seen_seq=consent.client_seq(session, ctx.tenant, info.ref),
            **values,
        )


@requires(Permission.VIEW_HISTORY)
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
    # The one write of this GET: its access-log row (see samtycke_plugin.access_log).
    access = log_view_of_history(ctx, ref)
    current = consent.client_status(ctx.host, ctx.tenant, ref)
    names = {p.key: purpose_name(ctx, p) for p in all_purposes(ctx)}
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
                "tone": "ok" if entry.consents else "missing",
                "purpose": names.get(entry.purpose, entry.purpose),
            }
        )
    return render_page(
        ctx,
        "practice_history.html",
        client=info,
        client_ref=ref,
        rows=rows,
        badge=_badge(ctx, current.status),
        withdrawable=current.withdrawable,
        access=access,
    )


#: Seconds between the progress page's reloads while the job is unfinished.
JOB_REFRESH_S = 3


@requires(Permission.SEND_BATCH)
def batch_job(request: Request, job_id: int) -> Response:
    """A batch job's progress (a GET that changes nothing; another practice's job is
    not found)."""
    ctx = context(request)
    job = jobs.job_progress(ctx.host, ctx.tenant, job_id)
    if job is None:
        raise NotFound()
    response = render_page(
        ctx,
        "practice_batch_job.html",
        active="batch",
        job=job,
        error=t(ctx.locale, job.error) if job.error else "",
    )
    if not job.finished:
        # A header, not a <meta>: the page may be the body of the host's layout, whose
        # <head> is the host's.
        response.headers["Refresh"] = str(JOB_REFRESH_S)
    return response


ROUTES: list[tuple[str, str, Handler, tuple[str, ...]]] = [
    ("/batch", "practice.batch", batch, ("GET", "POST")),
    (f"/batch/jobs/<int(max={2**63 - 1}):job_id>", "practice.batch_job", batch_job, ("GET",)),
    ("/clients/<client>/obtain", "practice.obtain", obtain, ("GET", "POST")),
    ("/clients/<client>/withdraw", "practice.withdraw", withdraw, ("GET", "POST")),
    ("/clients/<client>/history", "practice.history", client_history, ("GET",)),
]

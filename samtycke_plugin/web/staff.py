"""What every practitioner page shares: the signed-in context, CSRF and cross-site
checks, redirects, rendering, and small formatting helpers.

Every handler takes the practice (tenant) and the practitioner from what the host
put in the WSGI environ (:func:`samtycke_plugin.web.base.staff_of`), never from
request data.  Every POST is refused when the browser says it comes from another site,
and checks a CSRF token bound to the host's sign-in session, the practice and the
practitioner (so a form from an ended session fails).  A success is answered with a
303 redirect that carries only a fixed confirmation key (never free text).  GET and
HEAD never change anything.  Business rules live in the domain modules; the page
handlers parse forms, call them and render ``templates/samtycke/practice_*.html``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from attrs import frozen
from babel.numbers import format_decimal
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Request, Response

from hookspecs.types import ClientInfo, ClientRef, StaffContext, TenantRef
from samtycke_plugin import common, consent, hostdb, practice_texts, practices, roles, status_text
from samtycke_plugin.email.batch import count_clients
from samtycke_plugin.errors import InputError, PermissionDenied
from samtycke_plugin.i18n import N_, t
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.rules import Status
from samtycke_plugin.web.base import (
    CSRF_FIELD,
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
from samtycke_plugin.web.layout import LAYOUT_CSP, client_back, local_path, render_in_layout

if TYPE_CHECKING:
    from hookspecs.host import Host
    from samtycke_plugin.models import Practice


log = logging.getLogger("samtycke.web.staff")


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
    with hostdb.session(host) as db_session:
        practice = practices.require_practice(db_session, tenant)
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
        and local_path(home[0]) is not None
    ):
        return home[0], home[1]
    return None


def back_link(ctx: Ctx, client: object) -> tuple[str, str] | None:
    """Where the page's "back" link goes: the client's profile in the host for a page
    about one client (when the host offers it), else the host's ``booking.home``."""
    if isinstance(client, ClientInfo):
        back = client_back(ctx.host, ctx.tenant, client, ctx.locale)
        if back is not None:
            return back
    home = home_link(ctx.request)
    if home is None:
        return None
    return home[0], t(ctx.locale, "Back to %(platform)s", platform=home[1])


def render_page(ctx: Ctx, template: str, *, status: int = 200, **values: Any) -> Response:
    """The page, in the host's layout when the host offers one (see web/layout.py)."""
    info = ctx.host.practice_info(TenantRef(ctx.tenant))
    done = ctx.request.args.get("done", "") if ctx.request.method in ("GET", "HEAD") else ""
    notice = t(ctx.locale, DONE[done]) if done in DONE else None
    values.setdefault("notice", notice)
    values.setdefault("errors", {})
    values.setdefault("active", "")
    back = back_link(ctx, values.get("client"))
    values.update(
        prefix=ctx.prefix,
        csrf=ctx.csrf,
        csrf_field=CSRF_FIELD,
        staff=ctx.staff,
        refused=roles.allowed(ctx.staff, ctx.locale),
        practice_name=info.name if info else ctx.tenant,
        setup_complete=ctx.practice.setup_complete,
    )
    client = values.get("client")
    document = render_in_layout(
        ctx.host,
        template,
        ctx.locale,
        tenant=ctx.tenant,
        staff=ctx.staff,
        client=client if isinstance(client, ClientInfo) else None,
        back=back,
        context=values,
    )
    if document is None:
        return page(template, ctx.locale, status=status, embedded=False, back=back, **values)
    response = Response(document, status=status, content_type="text/html; charset=utf-8")
    secure_headers(response, public=False, csp=LAYOUT_CSP)
    response.headers["Content-Language"] = ctx.locale
    return response


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
    """Forget anything a failed domain call may have flushed: the page's unit of work is
    rolled back, not committed, when the page re-shows its form."""
    hostdb.discard(ctx.host)


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


def _counts(ctx: Ctx, purpose: str = DEFAULT_PURPOSE) -> dict[str, int]:
    """The practice's clients, and those with and without valid consent to ``purpose``."""
    total = count_clients(ctx.host, ctx.tenant)
    with hostdb.session(ctx.host) as session:
        valid = practice_texts.count_valid(session, ctx.practice, common.now_utc(ctx.host),
                                           purpose)
        return {"total": total, "valid": valid, "without": max(total - valid, 0)}


def _operational(ctx: Ctx) -> Response | None:
    """Pages that ask clients need the wizard finished first: send the practitioner there."""
    if ctx.practice.setup_complete:
        return None
    return redirect(ctx, "/setup")

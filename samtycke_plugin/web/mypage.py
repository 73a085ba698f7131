"""The client's own page, "Mina samtycken" (public, no login), and its practitioner side.

* ``/mina/<token>`` — every purpose of the practice with its status, the text version
  the client agreed to and when, and one button per purpose (give or withdraw).  Each
  button is its own form (POST, CSRF token bound to the link); GET/HEAD never change
  anything.
* ``/mina/<token>/kvitto/<seq>`` — one consent event as a printable receipt.
* ``/p/<practice>/mina`` — "send me my link": the practice's public form.  Whatever the
  address, the answer is the same and so is the work (one queued row, see
  :mod:`samtycke_plugin.email.page_mail`); rate limited per address and per source.
* ``/clients/<client>/page-links`` — practitioner: revoke every link to the client's
  page (staff who may record consent).

An unknown token counts towards the link pages' rate limit
(:data:`samtycke_plugin.web.public.LIMITER`); a revoked link, or a client who no
longer exists in the practice, gets a page saying what to do instead.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from typing import Any

from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Request, Response

from hookspecs.types import Permission, TenantRef
from samtycke_plugin import client_page, common, hostdb, practices
from samtycke_plugin.email import page_links, page_mail
from samtycke_plugin.email.addresses import normalise_address
from samtycke_plugin.errors import Conflict, InputError, NotActive
from samtycke_plugin.i18n import lang, t
from samtycke_plugin.web import public
from samtycke_plugin.web.base import (
    CSRF_FIELD,
    Handler,
    cross_site,
    csrf_ok,
    csrf_token,
    error_page,
    host_of,
    locale_of,
    page,
    requires,
)
from samtycke_plugin.web.ratelimit import SlidingWindowLimiter, source_of
from samtycke_plugin.web.staff import check_csrf, client_of, context, redirect, render_page

log = logging.getLogger("samtycke.web.mypage")

_WINDOW = float(os.environ.get("SAMTYCKE_WISH_WINDOW_SECONDS", "3600") or 3600)
#: "Send me my link" forms accepted per address and per source within the window.
WISH_PER_ADDRESS = int(os.environ.get("SAMTYCKE_WISH_PER_ADDRESS", "3") or 3)
WISH_PER_SOURCE = int(os.environ.get("SAMTYCKE_WISH_PER_SOURCE", "20") or 20)

ADDRESS_LIMITER = SlidingWindowLimiter(WISH_PER_ADDRESS, _WINDOW)
SOURCE_LIMITER = SlidingWindowLimiter(WISH_PER_SOURCE, _WINDOW)


def _problem(request: Request, problem: page_links.PageProblem) -> Response:
    if problem.kind == "unknown":
        return public._unknown(request, "page")
    locale = locale_of(request)
    assert problem.tenant is not None
    host = host_of(request)
    wish_url = host.absolute_url(TenantRef(problem.tenant), page_links.wish_path(problem.tenant))
    return page("public_mypage_problem.html", locale, status=410 if problem.kind == "revoked"
                else 404, public=True, kind=problem.kind, wish_url=wish_url,
                **public._contact(request, problem.tenant))


def _open(request: Request, token: str) -> page_links.Page | Response:
    try:
        return page_links.open_page(host_of(request), token)
    except page_links.PageProblem as problem:
        return _problem(request, problem)


def _scope(opened: page_links.Page) -> str:
    return f"page:{opened.token_hash}"


def _show(request: Request, opened: page_links.Page, token: str, *, status: int = 200,
          done: str | None = None) -> Response:
    host = host_of(request)
    locale = lang(opened.client.locale)
    return page(
        "public_mypage.html", locale, status=status, public=True,
        rows=client_page.rows(host, opened, locale),
        receipts=client_page.receipts(host, opened, locale), token=token,
        prefix=common.MOUNT_PREFIX, client_name=opened.client.name, done=done,
        active=opened.practice.active,
        csrf=csrf_token(host.app_secret(common.APP_KEY), _scope(opened)),
        **public._contact(request, opened.tenant),
    )


def my_page(request: Request, token: str) -> Response:
    """``/mina/<token>``: show (GET/HEAD), or give or withdraw one purpose (POST)."""
    opened = _open(request, token)
    if isinstance(opened, Response):
        return opened
    if request.method != "POST":
        return _show(request, opened, token)
    host = host_of(request)
    locale = lang(opened.client.locale)
    if cross_site(request, host.absolute_url(TenantRef(opened.tenant), "/")) or not csrf_ok(
        host.app_secret(common.APP_KEY), _scope(opened), request.form.get(CSRF_FIELD)
    ):
        return error_page(403, locale, t(locale, "This page was open too long. Reload it and "
                                                 "press the button again."))
    action = request.form.get("action")
    evidence = {"ip_address": request.remote_addr,
                "user_agent": request.user_agent.string or None}
    try:
        if action == "withdraw":
            client_page.withdraw(host, opened, request.form.get("purpose"), **evidence)
        elif action == "give":
            client_page.give(host, opened, request.form.get("purpose"),
                             request.form.get("text"), **evidence)
        else:
            return error_page(400, locale)
    except client_page.TextChanged:
        return _show(request, opened, token, status=409, done="text_changed")
    except (Conflict, NotActive):
        return _show(request, opened, token, status=409, done="unchanged")
    except InputError:
        return error_page(400, locale)
    log.info("practice %s: %s from the client's page", opened.tenant, action)
    return _show(request, opened, token, done="withdrawn" if action == "withdraw" else "given")


def receipt_page(request: Request, token: str, seq: int) -> Response:
    """``/mina/<token>/kvitto/<seq>``: one of the client's events, printable."""
    opened = _open(request, token)
    if isinstance(opened, Response):
        return opened
    locale = lang(opened.client.locale)
    host = host_of(request)
    return page(
        "public_mypage_receipt.html", locale, public=True,
        receipt=client_page.receipt(host, opened, locale, seq), token=token,
        prefix=common.MOUNT_PREFIX, client_name=opened.client.name,
        **public._contact(request, opened.tenant),
    )


def _wish_scope(tenant: str) -> str:
    return f"wish:{tenant}"


def send_me_my_link(request: Request, practice: str) -> Response:
    """``/p/<practice>/mina``: the form (GET) and its one answer (POST)."""
    host = host_of(request)
    locale = locale_of(request)
    with hostdb.session(host) as session:
        try:
            found = practices.get_practice(session, common.check_ref("tenant", practice))
        except InputError:
            found = None
    if found is None:
        raise NotFound()
    tenant = found.tenant_ref
    secret = host.app_secret(common.APP_KEY)
    shown: dict[str, Any] = {
        "csrf": csrf_token(secret, _wish_scope(tenant)), "action": request.path,
        "sent": False, "invalid": False, "email": "",
        **public._contact(request, tenant),
    }
    if request.method != "POST":
        return page("public_wish.html", locale, public=True, **shown)
    if cross_site(request, host.absolute_url(TenantRef(tenant), "/")) or not csrf_ok(
        secret, _wish_scope(tenant), request.form.get(CSRF_FIELD)
    ):
        return error_page(403, locale, t(locale, "This page was open too long. Reload it and "
                                                 "send the form again."))
    try:
        address = normalise_address(request.form.get("email"))
    except InputError:
        shown.update(invalid=True, email=request.form.get("email", "")[:320])
        return page("public_wish.html", locale, public=True, status=400, **shown)
    # Both budgets are spent whatever the address: a known one is never told apart.
    keyed = hashlib.sha256(f"{tenant}\x1f{address.casefold()}".encode()).hexdigest()
    by_address = ADDRESS_LIMITER.failure(keyed)
    by_source = SOURCE_LIMITER.failure(source_of(request))
    if by_address.refused or by_source.refused:
        response = error_page(429, locale)
        response.headers["Retry-After"] = str(math.ceil(_WINDOW))
        return response
    page_mail.add_wish(host, tenant, address, locale)
    shown["sent"] = True
    return page("public_wish.html", locale, public=True, **shown)


@requires(Permission.RECORD_CONSENT)
def page_links_of_client(request: Request, client: str) -> Response:
    """Practitioner: how many links to the client's page work, and revoke them all."""
    ctx = context(request)
    info = client_of(ctx, client)
    if request.method == "POST":
        check_csrf(ctx)
        revoked = page_links.revoke_all(ctx.host, ctx.tenant, info.ref)
        log.info("practice %s: %d links to a client's page revoked", ctx.tenant, revoked)
        return redirect(ctx, f"/clients/{info.ref}/page-links", done="revoked")
    return render_page(ctx, "practice_page_links.html", client=info,
                       count=page_links.active_count(ctx.host, ctx.tenant, info.ref),
                       done=request.args.get("done") == "revoked")


ROUTES: list[tuple[str, str, Handler, tuple[str, ...]]] = [
    ("/mina/<token>", "public.my_page", my_page, ("GET", "POST")),
    (f"/mina/<token>/kvitto/<int(max={2**63 - 1}):seq>", "public.my_receipt", receipt_page,
     ("GET",)),
    ("/p/<practice>/mina", "public.send_me_my_link", send_me_my_link, ("GET", "POST")),
    ("/clients/<client>/page-links", "practice.page_links", page_links_of_client,
     ("GET", "POST")),
]

"""Public pages reached from e-mailed links (no login): consent and withdrawal.

* ``/c/<token>`` — the consent page: GET/HEAD show the practice's current text in the
  client's language with "I accept" / "I decline" (a plain form: no script, no
  auto-submit, so mail scanners that open links record nothing); POST records
  ``given``/``renewed`` or ``refused`` for the text version shown and uses the link.
* ``/w/<token>`` — withdrawal from the receipt: GET shows a confirmation, POST appends
  ``withdrawn``.  One click more than opening the link, as for consent.
* ``/v/<token>`` — confirming consent ticked in an online booking made with the
  client's address (:mod:`samtycke_plugin.email.confirm`): GET shows the text that was
  ticked and a "Confirm" button, POST records ``given`` by the client.

Every response carries ``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``
and loads nothing from third parties.  Unknown, malformed and forged links, and
expired or replaced consent links, get the same page; a used link (double submit, a
second tab, a duplicate mail) gets a calm "already recorded" page and writes nothing.
A withdrawal link never expires and works while the practice has the app deactivated
(withdrawal is possible at any time); a used or replaced one says that nothing is left
to withdraw, or where to withdraw instead.  Tokens never reach a log (the app logs
redacted paths only).

POSTs are protected by a CSRF token bound to the link (and the app's one check of
the ``Sec-Fetch-Site``/``Origin`` headers, :func:`samtycke_plugin.web.base.cross_site`).
Note that a page sent with ``Referrer-Policy: no-referrer`` makes browsers post
``Origin: null``, which is therefore accepted; the CSRF token and the single-use link
are the real protection.

**Rate limit** (:mod:`samtycke_plugin.web.ratelimit`).  A token is checked first (one
indexed hash look-up); only a token that matches no link counts as a failure, per
source address (IPv4, or IPv6 /64) and over all sources.  Past :data:`MAX_FAILURES`
failures of one source, or :data:`MAX_FAILURES_TOTAL` of all sources, within
:data:`WINDOW_SECONDS`, unknown tokens get 429 instead of the "cannot be used" page.
A real link — usable, used, replaced or expired — always gets its own page, so a
shared address full of guessers never locks a client out of consenting or
withdrawing.  What keeps links from being guessed is their 256 random bits; the
limit keeps a guessing source from costing more than a look-up and flags it in the
log.  The state is per process, bounded in memory, and keyed by ``REMOTE_ADDR`` — a
host behind a proxy must set that from its trusted proxy headers (e.g. Werkzeug's
``ProxyFix``).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from werkzeug.wrappers import Request, Response

from hookspecs.types import TenantRef
from samtycke_plugin import common, consent, hostdb, practice_texts
from samtycke_plugin.email import addresses, confirm, links, tokens
from samtycke_plugin.email.purpose_names import purpose_names
from samtycke_plugin.errors import InputError
from samtycke_plugin.i18n import lang, t
from samtycke_plugin.render import trusted_html
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
)
from samtycke_plugin.web.ratelimit import SlidingWindowLimiter, source_of

log = logging.getLogger("samtycke.web.public")

MAX_FAILURES = int(os.environ.get("SAMTYCKE_LINK_MAX_FAILURES", "30") or 30)
MAX_FAILURES_TOTAL = int(os.environ.get("SAMTYCKE_LINK_MAX_FAILURES_TOTAL", "1000") or 1000)
WINDOW_SECONDS = float(os.environ.get("SAMTYCKE_LINK_WINDOW_SECONDS", "600") or 600)

LIMITER = SlidingWindowLimiter(MAX_FAILURES, WINDOW_SECONDS, total_limit=MAX_FAILURES_TOTAL)


def _unknown(request: Request, purpose: str) -> Response:
    """A token that matches no link: count it; over a budget, answer 429."""
    verdict = LIMITER.failure(source_of(request))
    if verdict.spent == "source":
        log.warning("a source passed %d failed link look-ups in %.0f s: its unknown links "
                    "get 429 until it slows down", LIMITER.limit, LIMITER.window)
    elif verdict.spent == "total":
        log.warning("%d failed link look-ups from all sources in %.0f s: unknown links get "
                    "429 until the spray slows down; real links still work",
                    LIMITER.total_limit, LIMITER.window)
    locale = locale_of(request)
    if verdict.refused:
        response = error_page(429, locale)
        response.headers["Retry-After"] = str(math.ceil(LIMITER.window))
        return response
    log.info("unusable %s link (%s)", purpose, request.method)  # never the token itself
    return page("public_invalid.html", locale, status=404, public=True)


def _problem(request: Request, problem: links.LinkProblem, purpose: str) -> Response:
    if problem.kind == "unknown":
        return _unknown(request, purpose)
    locale = locale_of(request)
    if problem.tenant is None or problem.client is None:
        log.info("unusable %s link (%s)", purpose, request.method)  # never the token itself
        return page("public_invalid.html", locale, status=404, public=True)
    contact = _contact(request, problem.tenant)
    if purpose != tokens.PURPOSE_WITHDRAW:
        return page("public_used.html", locale, public=True, **contact)
    # A withdrawal link that was used or replaced: nothing to do, or where to withdraw.
    if not links.any_consent_given(host_of(request), problem.tenant, problem.client):
        return page("public_nothing.html", locale, public=True, **contact)
    page_url, is_page = links.client_page_url(host_of(request), problem)
    return page("public_withdraw_elsewhere.html", locale, public=True,
                used=problem.kind == "used", page_url=page_url, is_page=is_page, **contact)


def _open(request: Request, token: str, purpose: str) -> links.Link | Response:
    """The link, or the page for a link that cannot be used (checked before any limit:
    a real link is never refused)."""
    try:
        return links.open_link(host_of(request), token, purpose)
    except links.LinkProblem as problem:
        return _problem(request, problem, purpose)


def _locale(request: Request, link: links.Link) -> str:
    return lang(link.client.locale) if link.client is not None else locale_of(request)


def _contact(request: Request, tenant: str) -> dict[str, Any]:
    host = host_of(request)
    info = host.practice_info(TenantRef(tenant))
    try:
        name = addresses.practice_name(host, tenant)
    except InputError:
        raw = info.name if info else tenant
        name = " ".join(raw.split())
    return {
        "practice": name,
        "practice_email": info.email if info else None,
        "practice_phone": info.phone if info else None,
    }


def _csrf_scope(link: links.Link) -> str:
    return f"link:{link.token_hash}"


def _post_allowed(request: Request, link: links.Link) -> bool:
    """CSRF token bound to this link, and no cross-site post."""
    host = host_of(request)
    if cross_site(request, host.absolute_url(TenantRef(link.practice.tenant_ref), "/")):
        return False
    secret = host.app_secret(common.APP_KEY)
    return csrf_ok(secret, _csrf_scope(link), request.form.get(CSRF_FIELD))


def _expired_form(locale: str) -> Response:
    return error_page(
        403, locale,
        t(locale, "This page was open too long or did not come from the link in your e-mail. "
                  "Open the link from the e-mail again and answer there."),
    )


def _purpose_sections(request: Request, link: links.Link, locale: str) -> list[dict[str, Any]]:
    """One section per purpose the link asks for: its name, current text in the client's
    language, the change note when the client is asked again after a change of
    content, and whether their consent to it stands already."""
    host = host_of(request)
    keys = links.asked_purposes(host, link)
    client = link.request.client_ref
    out: list[dict[str, Any]] = []
    with hostdb.session(host) as session:
        names = purpose_names(session, link.practice.tenant_ref, locale)
        for key in keys:
            version = practice_texts.current_text(session, link.practice, locale, key)
            out.append({
                "key": key, "suffix": "" if len(keys) == 1 else f"_{key}",
                "name": names.get(key, key),
                "text_html": trusted_html(version.html), "text_language": version.language,
                "text_id": version.id,
                "version": common.version_label(version.major, version.minor),
                "change_note": consent.change_note_for(session, link.practice, client, key),
                "already_valid": consent.client_status(
                    host, link.practice.tenant_ref, client, key).valid,
            })
    return out


def _consent_page(request: Request, link: links.Link, *, text_changed: bool = False,
                  unanswered: bool = False, status: int = 200) -> Response:
    host = host_of(request)
    locale = _locale(request, link)
    sections = _purpose_sections(request, link, locale)
    single = sections[0] if len(sections) == 1 else None
    return page(
        "public_consent.html", locale, public=True, status=status, sections=sections,
        single=single, csrf=csrf_token(host.app_secret(common.APP_KEY), _csrf_scope(link)),
        text_changed=text_changed, unanswered=unanswered,
        **_contact(request, link.practice.tenant_ref),
    )


def consent_link(request: Request, token: str) -> Response:
    """``/c/<token>``: show the texts (GET/HEAD) or record the answers (POST)."""
    opened = _open(request, token, tokens.PURPOSE_CONSENT)
    if isinstance(opened, Response):
        return opened
    link = opened
    if request.method != "POST":
        return _consent_page(request, link)
    locale = _locale(request, link)
    if not _post_allowed(request, link):
        return _expired_form(locale)
    host = host_of(request)
    try:
        answers = links.read_answers(host, link, request.form)
    except links.TextChanged:
        return _consent_page(request, link, text_changed=True, status=409)
    except InputError as exc:
        if exc.field.startswith("decision_"):  # a purpose left without a choice
            return _consent_page(request, link, unanswered=True, status=400)
        return error_page(400, locale)
    try:
        events = links.answer(
            host, link, answers, ip_address=request.remote_addr,
            user_agent=request.user_agent.string or None,
        )
    except links.LinkProblem as problem:
        return _problem(request, problem, tokens.PURPOSE_CONSENT)
    accepted = any(event.state in ("given", "renewed") for event in events)
    log.info("practice %s: %s recorded from an e-mailed link (request %d)",
             link.practice.tenant_ref, ", ".join(f"{e.purpose_key} {e.state}" for e in events),
             link.request.id)
    receipt = accepted and link.client is not None and bool(link.client.email)
    return page(
        "public_done.html", locale, public=True,
        title=t(locale, "Thank you") if accepted else t(locale, "Your answer is recorded"),
        outcome="given" if accepted else "refused", receipt=receipt,
        **_contact(request, link.practice.tenant_ref),
    )


def withdraw_link(request: Request, token: str) -> Response:
    """``/w/<token>``: confirm (GET/HEAD) and withdraw (POST), one purpose or all that
    the link covers."""
    opened = _open(request, token, tokens.PURPOSE_WITHDRAW)
    if isinstance(opened, Response):
        return opened
    link = opened
    host = host_of(request)
    locale = _locale(request, link)
    contact = _contact(request, link.practice.tenant_ref)
    given = links.consented(host, link, locale)
    if not given:
        return page("public_nothing.html", locale, public=True, **contact)
    if request.method != "POST":
        first = given[0]
        return page(
            "public_withdraw.html", locale, public=True, given=given,
            several=len(given) > 1, given_at=first.given_at, version=first.version,
            csrf=csrf_token(host.app_secret(common.APP_KEY), _csrf_scope(link)), **contact,
        )
    if not _post_allowed(request, link):
        return _expired_form(locale)
    chosen = request.form.get("purpose")
    try:
        links.withdraw(
            host, link, ip_address=request.remote_addr,
            user_agent=request.user_agent.string or None,
            purposes=[chosen] if chosen else None,
        )
    except links.LinkProblem as problem:
        return _problem(request, problem, tokens.PURPOSE_WITHDRAW)
    except InputError:
        return error_page(400, locale)
    log.info("practice %s: withdrawn from an e-mailed link (request %d)",
             link.practice.tenant_ref, link.request.id)
    return page(
        "public_done.html", locale, public=True, title=t(locale, "Consent withdrawn"),
        outcome="withdrawn", receipt=False, **contact,
    )


def confirm_link(request: Request, token: str) -> Response:
    """``/v/<token>``: show the consent ticked in a booking made with the client's
    address (GET/HEAD) or record the client's confirmation (POST)."""
    opened = _open(request, token, tokens.PURPOSE_CONFIRM)
    if isinstance(opened, Response):
        return opened
    link = opened
    host = host_of(request)
    locale = _locale(request, link)
    contact = _contact(request, link.practice.tenant_ref)
    sections = confirm.waiting(host, link, locale)
    if not sections:
        return page("public_confirmed.html", locale, public=True, confirmed=False,
                    title=t(locale, "Nothing to confirm"), **contact)
    if request.method != "POST":
        return page("public_confirm.html", locale, public=True, sections=sections,
                    csrf=csrf_token(host.app_secret(common.APP_KEY), _csrf_scope(link)),
                    **contact)
    if not _post_allowed(request, link):
        return _expired_form(locale)
    try:
        events = confirm.confirm(host, link, ip_address=request.remote_addr,
                                 user_agent=request.user_agent.string or None, locale=locale)
    except links.LinkProblem as problem:
        return _problem(request, problem, tokens.PURPOSE_CONFIRM)
    log.info("practice %s: %d consent(s) confirmed from an e-mailed link (request %d)",
             link.practice.tenant_ref, len(events), link.request.id)
    receipt = link.client is not None and bool(link.client.email)
    return page("public_confirmed.html", locale, public=True, confirmed=True,
                title=t(locale, "Thank you"), receipt=receipt, **contact)


#: (path, endpoint, handler, methods).  GET routes answer HEAD too (Werkzeug).
ROUTES: list[tuple[str, str, Handler, tuple[str, ...]]] = [
    ("/c/<token>", "public.consent", consent_link, ("GET", "POST")),
    ("/w/<token>", "public.withdraw", withdraw_link, ("GET", "POST")),
    ("/v/<token>", "public.confirm", confirm_link, ("GET", "POST")),
]

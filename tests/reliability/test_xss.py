"""XSS in a real browser (checklist B1): script payloads in every string a practitioner,
a client or a host supplies — practice name, client name, consent text (Markdown with
raw HTML), reasons and notes — rendered through every page of the app, the hook
fragments a host embeds in its own pages (form block, profile panel, list badge), the
public link pages and the e-mails, in Chromium.  A sentinel records any execution:
every payload calls ``alert()`` (caught with ``page.on("dialog")``) or sets
``window.__xss``.  Pages are loaded with the Content-Security-Policy *bypassed*, so
escaping and sanitizing are tested on their own, not hidden behind the CSP (a host's
pages that embed our fragments may have no CSP at all).  Result: zero executions, and
no script, event-handler attribute or ``javascript:`` URL in any DOM.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs

import pytest
from browser_support import launch, playwright_sync_api
from hostkit import TestHost, staff, submission
from reliability_support import FIGURES, complete_receipts, form_text_id
from sqlalchemy import Engine, select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from hookspecs.types import BookingFormContext, BookingRef, ClientRef, TenantRef
from samtycke_plugin import consent, practice_texts
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.email import tokens
from samtycke_plugin.email.messages import render_message
from samtycke_plugin.models import ConsentRequest, OutboxMessage
from samtycke_plugin.web import make_wsgi_app

pytestmark = pytest.mark.timeout(600)


#: Single-line payloads (names must fit in an e-mail header); each executes alert() or
#: sets window.__xss if it ever runs.
PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "\"><script>window.__xss=1</script>",
    "'><img src=x onerror=window.__xss=1>",
    "<a href=\"javascript:alert(1)\">klick</a>",
    "<a href=\"&#106;avascript:alert(1)\">klick</a>",
    "<a href=\"jav&#x09;ascript:alert(1)\">klick</a>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;img src=x onerror=alert(1)&#62;",
    "<iframe srcdoc=\"<script>parent.__xss=1</script>\"></iframe>",
    "<details open ontoggle=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    "<body onload=alert(1)>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style>",
    "</textarea><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    "<style>@import 'javascript:alert(1)';</style>",
    "<meta http-equiv=refresh content=\"0;url=javascript:alert(1)\">",
    "[klick](javascript:alert(1))",
    "![bild](x\" onerror=\"alert(1))",
    "[klick](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "{{7*7}}{% raw %}<script>alert(1)</script>",
    "`<script>alert(1)</script>`",
]

MARKDOWN_BODY = """# Rubrik {p}

Vi sparar dina uppgifter. {p}

* punkt {p}
* [länk]({p})

> citat {p}

<div onclick="alert(1)">{p}</div>

<script>alert(1)</script>
"""


class World:
    """One practice per payload, with the payload in every string it can go in."""

    def __init__(self, engine: Engine) -> None:
        self.host = TestHost(engine)
        self.hooks = self.host.hooks()
        self.urls: list[str] = []  # page paths (below the server root)
        self.mails: list[str] = []  # rendered e-mail HTML

    def build(self, i: int, p: str) -> None:
        host, hooks = self.host, self.hooks
        tenant = host.new_tenant(f"Klinik {p}")
        host.activate(hooks, tenant, require_consent_for_online_booking=True,
                      validity_days=365)
        [version] = practice_texts.publish_text(
            host, tenant, bodies={"sv": MARKDOWN_BODY.format(p=p)}, kind="correction",
            reason=f"Skäl {p}", actor="staff:s1", expected_major=1)
        host.session().commit()
        text_id = version.id
        manual = host.new_client(tenant, name=f"Eva {p}", email=f"eva{i}@example.org")
        consent.record_manual(host, tenant, manual, staff(), method="paper",
                              given_at=host.now(), note=f"Anteckning {p}")
        host.session().commit()
        mailed = host.new_client(tenant, name=f"Mia {p}", email=f"mia{i}@example.org")
        req = mail_requests.send_request(host, tenant, mailed, actor="staff:s1")
        host.session().commit()
        consent_token = tokens.token_for(tokens.link_key(host), req)
        booker = host.new_client(tenant, name=f"Bo {p}", email=f"bo{i}@example.org")
        shown = form_text_id(host, hooks, tenant, booker)
        sub = submission(tenant, booker, ticked=True, text_id=shown)
        assert hooks.submit_check(sub) == []
        hooks.submitted(sub, BookingRef(f"b{i}"), ClientRef(booker))  # queues a receipt
        host.session().commit()
        complete_receipts(host, tenant, booker)  # as the relay does when it claims it
        withdraw_req = host.session().scalars(
            select(ConsentRequest).where(
                ConsentRequest.tenant_ref == tenant,
                ConsentRequest.client_ref == booker,
                ConsentRequest.purpose == tokens.PURPOSE_WITHDRAW)).one()
        withdraw_token = tokens.token_for(tokens.link_key(host), withdraw_req)
        asked = host.new_client(tenant, name=f"Ann {p}", email=f"ann{i}@example.org")
        for row in host.session().scalars(
                select(OutboxMessage).where(OutboxMessage.tenant_ref == tenant)):
            self.mails.append(render_message(host, host.session(), row).html)
        host.session().rollback()
        base = f"/t/{tenant}"
        app = f"{base}/apps/samtycke"
        self.urls += [
            f"{app}/", f"{app}/setup", f"{app}/setup?step=2", f"{app}/text",
            f"{app}/texts/{text_id}", f"{app}/batch",
            f"{app}/clients/{manual}/obtain", f"{app}/clients/{manual}/history",
            f"{app}/clients/{manual}/withdraw", f"{app}/clients/{asked}/obtain",
            f"{app}/clients/{booker}/history",
            f"{app}/c/{consent_token}", f"{app}/w/{withdraw_token}",
            f"{base}/host/client?client={manual}", f"{base}/host/client?client={asked}",
            f"{base}/host/new-client",
        ]


def _host_page(world: World, tenant: str, client: str | None) -> str:
    """A host's own page (no CSP) embedding the app's fragments as a platform does."""
    hooks, host = world.hooks, world.host
    parts = [f.html for f in hooks.form_fragments(BookingFormContext(
        tenant=TenantRef(tenant), client=ClientRef(client) if client else None, locale="sv"))]
    if client:
        parts += [p.html for p in hooks.profile_panels(TenantRef(tenant), ClientRef(client),
                                                         staff(), "sv")]
        parts += [b.html for b in hooks.list_badges(TenantRef(tenant), [ClientRef(client)],
                                                      "sv")[ClientRef(client)]]
    host.session().rollback()
    return ("<!doctype html><html><head><title>Värd</title></head><body><form>"
            + "".join(parts) + "</form></body></html>")


def _wsgi(world: World) -> Callable[..., Any]:
    app = make_wsgi_app()
    route = re.compile(r"^/t/([A-Za-z0-9]+)(/.*)$")

    def host_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        found = route.match(environ.get("PATH_INFO", ""))
        if not found:
            return Response("not found", status=404)(environ, start_response)
        tenant, rest = found.groups()
        environ.update({"booking.host": world.host, "booking.tenant": tenant,
                        "booking.staff": staff(), "booking.session": "sign-in-1",
                        "booking.locale": "sv"})
        if rest.startswith("/apps/samtycke"):
            environ["SCRIPT_NAME"] = f"/t/{tenant}/apps/samtycke"
            environ["PATH_INFO"] = rest[len("/apps/samtycke"):] or "/"
            return app(environ, start_response)
        query = parse_qs(Request(environ).query_string.decode())
        client = query.get("client", [None])[0] if rest == "/host/client" else None
        body = _host_page(world, tenant, client)
        return Response(body, content_type="text/html; charset=utf-8")(environ, start_response)

    return host_app


@pytest.fixture
def served(sqlite_engine: Engine) -> Iterator[tuple[str, World]]:
    world = World(sqlite_engine)
    for i, payload in enumerate(PAYLOADS):
        world.build(i, payload)
    server = make_server("127.0.0.1", 0, _wsgi(world), threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}", world
    finally:
        server.shutdown()
        thread.join(timeout=10)
        world.host.close()


_INJECTED = """() => {
  const all = [...document.querySelectorAll('*')];
  return {
    scripts: document.querySelectorAll('script').length,
    handlers: all.filter(e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on'))).length,
    jsurls: all.filter(e => ['href', 'src', 'action', 'formaction', 'data'].some(n => {
        const v = (e.getAttribute(n) || '').replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
        return v.startsWith('javascript:') || v.startsWith('data:text/html');
    })).length,
    frames: document.querySelectorAll('iframe, object, embed, frame').length,
    refresh: document.querySelectorAll('meta[http-equiv]').length,
    xss: window.__xss || 0,
  };
}"""


@pytest.mark.e2e
def test_no_payload_executes_on_any_page_fragment_or_mail(served: tuple[str, World]) -> None:
    base, world = served
    sync_api = playwright_sync_api()
    executed: list[str] = []
    loads = 0
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            context = browser.new_context(bypass_csp=True, locale="sv-SE")
            page = context.new_page()
            page.on("dialog", lambda d: (executed.append(f"dialog {d.message} on {page.url}"),
                                         d.dismiss()))
            # positive control: the sentinel does see an unescaped payload run
            page.set_content("<img src=x onerror=alert(1)><p onclick=x>", wait_until="load")
            page.wait_for_timeout(50)
            assert page.evaluate(_INJECTED)["handlers"] == 2 and len(executed) == 1
            executed.clear()
            for url in world.urls:
                resp = page.goto(base + url, wait_until="load")
                assert resp is not None and resp.status < 500, (url, resp and resp.status)
                page.wait_for_timeout(20)
                found = page.evaluate(_INJECTED)
                assert found == {"scripts": 0, "handlers": 0, "jsurls": 0, "frames": 0,
                                 "refresh": 0, "xss": 0}, (url, found)
                loads += 1
            for html in world.mails:
                page.set_content(html, wait_until="load")
                page.wait_for_timeout(20)
                found = page.evaluate(_INJECTED)
                assert found == {"scripts": 0, "handlers": 0, "jsurls": 0, "frames": 0,
                                 "refresh": 0, "xss": 0}, ("mail", found)
                loads += 1
            # the payloads are visible as text (escaped), not silently dropped
            page.goto(base + world.urls[6], wait_until="load")  # an obtain page
            assert "<" in page.inner_text("body")
        finally:
            browser.close()
    FIGURES["XSS payloads tried"] += len(PAYLOADS)
    FIGURES["XSS page/fragment/mail renders in Chromium"] += loads
    FIGURES["XSS executions"] += len(executed)
    assert executed == []
    assert loads >= len(PAYLOADS) * 15


class _Elements(HTMLParser):
    """Every element and attribute as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))


def test_sanitizer_output_has_nothing_executable() -> None:
    """The stored consent-text HTML itself (what pages mark safe) for every payload."""
    from samtycke_plugin.text import render_html

    for p in PAYLOADS:
        parser = _Elements()
        parser.feed(render_html(MARKDOWN_BODY.format(p=p)))
        for tag, attrs in parser.found:
            assert tag not in ("script", "iframe", "svg", "math", "style", "object", "embed",
                               "meta", "img", "details", "input", "body"), (p, tag)
            assert not any(name.startswith("on") for name in attrs), (p, tag, attrs)
            for name in ("href", "src"):
                value = re.sub(r"[\s\x00-\x1f]", "", attrs.get(name, "")).lower()
                assert not value.startswith(("javascript:", "data:", "vbscript:")), (p, attrs)

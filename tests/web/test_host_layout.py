"""Practitioner pages inside the host's layout (``hookspecs.host.PageLayout``), the back
link to the client, and the host's sign-in for signed-out visitors.  Every practitioner
route is enumerated from the WSGI app's URL map, so a new page is covered at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hostkit import TestHost, staff
from markupsafe import escape
from sqlalchemy import Engine
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client, EnvironBuilder, TestResponse
from werkzeug.wrappers import Request, Response

from hookspecs.host import PageLayout
from hookspecs.types import AppPage, ClientRef, TenantRef
from samtycke_plugin import common
from samtycke_plugin.email import jobs
from samtycke_plugin.web import make_wsgi_app
from samtycke_plugin.web.base import CSP
from samtycke_plugin.web.layout import LAYOUT_CSP, sign_in_redirect

P = common.MOUNT_PREFIX
CLIENT_PAGES = {"practice.obtain", "practice.withdraw", "practice.history", "practice.page_links"}


class LayoutHost(TestHost):
    """A test host with its own page layout: records every page it is given."""

    __test__ = False

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.pages: list[AppPage] = []

    def page_layout(self, page: AppPage) -> str:
        self.pages.append(page)
        back = (
            f'<a id="host-back" href="{escape(page.back[0])}">{escape(page.back[1])}</a>'
            if page.back else ""
        )
        return (
            f'<!doctype html><html lang="{page.locale}"><head><title>{escape(page.title)}'
            f"</title>{page.head_html}</head><body><nav id=\"host-menu\">Meny · Logga ut</nav>"
            f"{back}<main>{page.body_html}</main></body></html>"
        )

    def client_path(self, tenant: TenantRef, client: ClientRef) -> str | None:
        return f"/clients/{client}"


@pytest.fixture
def layout_host(engine: Engine) -> Iterator[LayoutHost]:
    h = LayoutHost(engine)
    yield h
    h.close()


def _client(host: TestHost, tenant: str | None, **environ: object) -> Client:
    app = make_wsgi_app()

    def hosted(env: dict[str, Any], start_response: Any) -> Any:
        env["booking.host"] = host
        if tenant is not None:
            env["booking.tenant"] = tenant
            env["booking.staff"] = staff()
            env["booking.session"] = "sign-in-1"
        env.update(environ)
        return app(env, start_response)

    return Client(DispatcherMiddleware(Response("host page", status=404), {P: hosted}))


def _set_up(host: TestHost) -> tuple[str, ClientRef, int, int]:
    """A practice with a client, its text's id, and a batch job (its progress page)."""
    hooks = host.hooks()
    tenant = host.new_tenant("Kliniken <Lugn> & Ro")
    host.activate(hooks, tenant, ask_new_clients=True)
    client = host.new_client(tenant, name="Anna <b>Svensson</b>")
    page = _client(host, tenant).get(f"{P}/text").get_data(as_text=True)
    text_id = int(re.findall(r'/texts/(\d+)"', page)[0])
    job_id = jobs.start_batch(host, tenant, actor="staff:1").job_id
    return tenant, client, text_id, job_id


def _practice_paths(client: str, text_id: int, job_id: int) -> list[tuple[str, str]]:
    """(endpoint, path) of every practitioner GET route, from the URL map."""
    adapter = make_wsgi_app().url_map.bind("x.test")
    found = []
    for rule in sorted(make_wsgi_app().url_map.iter_rules(), key=lambda r: r.rule):
        if "token" in rule.arguments or str(rule.endpoint).startswith("public."):
            continue  # the clients' e-mailed links and the practice's public form
        ids = {"client": client, "text_id": text_id, "job_id": job_id}
        missing = set(rule.arguments) - set(ids)
        assert not missing, f"add a value for route argument(s) {missing} of {rule.rule}"
        args = {a: ids[a] for a in rule.arguments}
        found.append((str(rule.endpoint), P + adapter.build(rule.endpoint, args)))
    return found


def test_every_practitioner_page_is_the_hosts_layout_around_the_apps_body(
    layout_host: LayoutHost,
) -> None:
    tenant, client, text_id, job_id = _set_up(layout_host)
    browser = _client(layout_host, tenant)
    paths = _practice_paths(client, text_id, job_id)
    assert len(paths) >= 8
    for endpoint, path in paths:
        layout_host.pages.clear()
        response = browser.get(path)
        body = response.get_data(as_text=True)
        assert response.status_code == 200, (path, body[-300:])
        assert len(layout_host.pages) == 1, path
        page = layout_host.pages[0]
        # The host's document, once: the app sent a body, not a document of its own.
        assert body.count("<html") == 1 and body.count("<body") == 1, path
        assert '<nav id="host-menu">' in body, path
        assert page.body_html.lstrip().startswith('<div class="sp-page"'), path
        assert "<html" not in page.body_html and "<head" not in page.body_html
        assert page.head_html.startswith("<style>") and ".sp-page" in page.head_html
        # Plain text (the host escapes it): never escaped twice.
        assert page.title and "&lt;" not in page.title and "&amp;" not in page.title, page.title
        assert f"<title>{escape(page.title)}</title>" in body
        assert page.tenant == tenant and page.staff == staff() and page.locale == "sv"
        assert response.headers["Content-Security-Policy"] == LAYOUT_CSP
        assert "script-src 'self'" in LAYOUT_CSP and "unsafe-inline" not in LAYOUT_CSP.split(
            "script-src", 1)[1].split(";")[0]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"
        if endpoint == "practice.batch_job":  # reloads itself without a <head> of its own
            assert 'data-job-state="queued"' in body and response.headers["Refresh"] == "3"
        if endpoint in CLIENT_PAGES:
            assert page.client == client, path
            assert page.back == (f"/clients/{client}", "Tillbaka till Anna <b>Svensson</b>")
            assert page.title.endswith("Anna <b>Svensson</b>"), page.title
            assert f'<a id="host-back" href="/clients/{client}">' in body
            assert "Tillbaka till Anna &lt;b&gt;Svensson&lt;/b&gt;" in body
        else:
            assert page.client is None and page.back is None, path


def test_without_a_host_layout_every_page_stands_alone(host: TestHost) -> None:
    tenant, client, text_id, job_id = _set_up(host)
    assert not isinstance(host, PageLayout)
    browser = _client(host, tenant, **{"booking.home": ("/start", "Praktika")})
    for _endpoint, path in _practice_paths(client, text_id, job_id):
        response = browser.get(path, headers={"Accept-Language": "en"})
        body = response.get_data(as_text=True)
        assert response.status_code == 200, path
        assert body.startswith("<!doctype html>") and '<body class="sp-page">' in body
        assert '<a href="/start">← Back to Praktika</a>' in body, path
        assert response.headers["Content-Security-Policy"] == CSP


def test_the_home_link_is_the_back_link_of_pages_not_about_one_client(
    layout_host: LayoutHost,
) -> None:
    tenant, client, _text_id, _job_id = _set_up(layout_host)
    browser = _client(layout_host, tenant, **{"booking.home": ("/start", "Praktika")})
    layout_host.pages.clear()
    browser.get(f"{P}/")
    browser.get(f"{P}/clients/{client}/history")
    overview, history = layout_host.pages
    assert overview.back == ("/start", "Tillbaka till Praktika")
    assert history.back == (f"/clients/{client}", "Tillbaka till Anna <b>Svensson</b>")


def test_a_client_path_that_is_not_local_gives_no_back_link(layout_host: LayoutHost) -> None:
    tenant, client, _text_id, _job_id = _set_up(layout_host)
    for bad in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/a\nb"):
        layout_host.client_path = lambda tenant, client, bad=bad: bad  # type: ignore[method-assign]
        layout_host.pages.clear()
        _client(layout_host, tenant).get(f"{P}/clients/{client}/obtain")
        assert layout_host.pages[0].back is None, bad


def test_public_pages_keep_the_apps_own_page(layout_host: LayoutHost) -> None:
    _set_up(layout_host)
    layout_host.pages.clear()
    response = _client(layout_host, None).get(f"{P}/c/not-a-token")
    assert layout_host.pages == []
    assert response.get_data(as_text=True).startswith("<!doctype html>")
    assert response.headers["Content-Security-Policy"] == CSP


def _next(response: TestResponse | Response) -> str:
    location = urlsplit(response.headers["Location"])
    assert location.path == "/sign-in" and not location.netloc
    [value] = parse_qs(location.query)["next"]
    return value


def test_signed_out_visitors_are_sent_to_the_hosts_sign_in(layout_host: LayoutHost) -> None:
    _tenant, client, text_id, job_id = _set_up(layout_host)
    layout_host.pages.clear()
    signed_out = _client(layout_host, None, **{"booking.sign_in": "/sign-in"})
    for _endpoint, path in _practice_paths(client, text_id, job_id):
        response = signed_out.get(path)
        assert response.status_code == 303, path
        assert _next(response) == path
        assert response.headers["Cache-Control"] == "no-store"
    assert _next(signed_out.get(f"{P}/setup?step=2")) == f"{P}/setup?step=2"
    posted = signed_out.post(f"{P}/batch", data={"csrf_token": "x"})
    assert posted.status_code == 303 and _next(posted) == f"{P}/batch"
    # The page's path can never make "next" point to another site (a host mounting the
    # app at the root, a path starting with "//" or "/\\").
    for path in ("//evil.example/x", "/\\evil.example/x", "///evil.example"):
        request = Request(EnvironBuilder(path="/", environ_overrides={
            "SCRIPT_NAME": "", "PATH_INFO": path, "booking.sign_in": "/sign-in"}).get_environ())
        redirect = sign_in_redirect(request)
        assert redirect is not None
        value = _next(redirect.get_response())
        assert value.startswith("/") and not value.startswith(("//", "/\\")), value
    # Without a (root-relative) sign-in path: "not found", as before.
    for sign_in in (None, "https://evil.example/login", "//evil.example/login", 7):
        extra = {} if sign_in is None else {"booking.sign_in": sign_in}
        response = _client(layout_host, None, **extra).get(f"{P}/")
        assert response.status_code == 404, sign_in
    assert layout_host.pages == []

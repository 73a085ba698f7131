"""End-to-end: the example Django clinic with Samtycke, driven in Chromium.

The clinic is served on a free loopback port in a thread (Django's WSGI application
behind wsgiref) against a fresh SQLite file with the demo data.  Chromium is the
distribution's (``/usr/bin/chromium``); under CI=true a missing browser fails the run.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from browser_support import launch, playwright_sync_api
from django_support import ROOT, clinic_database

pytestmark = pytest.mark.e2e
ARTIFACTS = ROOT / "test-artifacts" / "e2e"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with clinic_database("sqlite", Path(tmp_path_factory.mktemp("clinic-e2e")), None):
        from django.core.wsgi import get_wsgi_application

        from examples.django_host.clinic import demo_seed

        assert demo_seed.seed()
        httpd = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=_Server,
                            handler_class=_Quiet)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_port}"
        finally:
            httpd.shutdown()
            httpd.server_close()


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Any]:
    """Started after the server: Django refuses database work in a thread that runs an
    event loop, as Playwright's sync API does until it stops."""
    sync_api = playwright_sync_api()
    with sync_api.sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Any, server: str) -> Iterator[Any]:
    contexts = []

    def make() -> Any:
        context = browser.new_context(base_url=server, locale="sv-SE")
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: pytest.fail(f"JavaScript error: {exc}"))
        return page

    yield make
    for context in contexts:
        context.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"django-{name}.png"), full_page=True)


def test_booking_with_consent_then_the_apps_pages_inside_the_clinic(new_page: Any) -> None:
    client = new_page()
    client.goto("/book/lugn-och-ro/")
    client.fill("#name", "Webb Klient")
    client.fill("#email", "webb.klient@example.com")
    client.check("#samtycke-consent-box")
    _shot(client, "booking-form")
    client.click("main form button[type=submit]")
    client.wait_for_url(re.compile(r"/booked/$"))
    assert "Din tid är bokad" in client.inner_text("main")

    staff = new_page()
    staff.goto("/clients/")
    staff.wait_for_url(re.compile(r"/accounts/login/\?next="))
    staff.fill("#id_username", "anna")
    staff.fill("#id_password", "lugn-demo")
    staff.click("main form button[type=submit]")
    staff.wait_for_url(re.compile(r"/clients/$"))
    staff.goto("/clients/?filter=samtycke.valid")
    row = staff.locator("tr", has_text="Webb Klient")
    assert row.locator('[data-status="valid"]').count() == 1
    row.locator("a").first.click()
    staff.wait_for_url(re.compile(r"/clients/\d+/$"))
    profile = staff.url
    assert staff.locator(".samtycke-panel").count() == 1

    staff.click("text=Samtyckeshistorik")
    staff.wait_for_url(re.compile(r"/apps/samtycke/clients/\d+/history"))
    _shot(staff, "app-page-in-layout")
    header = staff.locator("header.top")
    assert header.locator("a", has_text="Klienter").is_visible()
    assert header.locator("button", has_text="Logga ut").is_visible()
    assert header.locator("button", has_text="English").is_visible()
    staff.locator("a.back").click()
    staff.wait_for_url(profile)

    staff.locator("header.top button", has_text="Logga ut").click()
    staff.wait_for_url(re.compile(r"/$"))
    staff.goto("/apps/samtycke/setup")
    staff.wait_for_url(re.compile(r"/accounts/login/\?next="))

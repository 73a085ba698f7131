"""End-to-end, in Chromium: a client books online with consent, opens "Mina samtycken"
from the receipt mail (delivered over SMTP to aiosmtpd, as the example platform's
worker sends it), withdraws with one click, gets the confirmation mail, and the
practitioner's client profile shows the withdrawal."""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser_support import launch, playwright_sync_api
from smtp_support import Received, SmtpServer, running_server

sys.path.append(str(Path(__file__).resolve().parents[2]))

from examples.host_app.testing import LiveServer, activate, add_practice

pytestmark = pytest.mark.e2e

PREFIX = "/apps/samtycke"
PAGE_RE = re.compile(r"https?://\S+/apps/samtycke/mina/[A-Za-z0-9_-]{43}")


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


@pytest.fixture
def server(tmp_path: Path, smtp_server: SmtpServer,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """The platform, its own mail and the app's mail both going to the test SMTP server."""
    for name, value in smtp_server.env().items():
        monkeypatch.setenv(name, value)
    with LiveServer({"DATABASE_URL": f"sqlite:///{tmp_path / 'booking.sqlite'}",
                     "SECRET_KEY": "e2e-secret-" + uuid.uuid4().hex, "DEV_MAILBOX": False,
                     "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp_server.port,
                     "SMTP_STARTTLS": False}) as live:
        yield live


def wait_for_mail(server: SmtpServer, to: str, matches: Callable[[Received], bool],
                  timeout: float = 30.0) -> Received:
    """The first mail to ``to`` that ``matches`` (the platform's worker sends it)."""
    deadline = time.monotonic() + timeout
    while True:
        for mail in server.messages:
            if to in mail.rcpt_tos and matches(mail):
                return mail
        assert time.monotonic() < deadline, f"no such mail to {to} in time"
        time.sleep(0.2)


def test_the_client_withdraws_on_my_consents_from_the_receipt(
    server: LiveServer, smtp_server: SmtpServer
) -> None:
    practice = add_practice(server.platform, name="Mottagningen Mina")
    activate(server.platform, practice["id"], ask_new_clients=True,
             require_consent_for_online_booking=True)
    email = f"mina-{uuid.uuid4().hex[:6]}@example.org"
    sync_api = playwright_sync_api()
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            client = browser.new_context(base_url=server.url, locale="sv-SE").new_page()
            client.set_default_timeout(15_000)
            client.goto(f"/book/{practice['slug']}")
            client.fill("#f-name", "Mina Klient")
            client.fill("#f-email", email)
            client.check("#samtycke-consent-box")
            client.click("main form button[type=submit]")
            client.wait_for_url(re.compile(r"/booked$"))

            # The platform's booking confirmation carries the link the app gave it.
            confirmation = wait_for_mail(smtp_server, email,
                                         lambda m: "bokning" in m.message["Subject"].lower())
            assert PAGE_RE.search(confirmation.text)
            receipt = wait_for_mail(smtp_server, email,
                                    lambda m: "Kvitto" in m.message["Subject"])
            link = PAGE_RE.search(receipt.text)
            assert link is not None and link.group(0) in receipt.html

            client.goto(link.group(0))
            assert client.locator("h1").inner_text() == "Mina samtycken"
            section = client.locator("section[data-purpose=care]")
            assert section.locator("[data-status]").get_attribute("data-status") == "valid"
            section.locator("button", has_text="Återkalla samtycke").click()
            client.wait_for_load_state()
            assert "Ditt samtycke är återkallat" in client.locator("[role=status]").inner_text()
            assert section.locator("[data-status]").get_attribute("data-status") == "withdrawn"

            withdrawn = wait_for_mail(smtp_server, email,
                                      lambda m: "återkallade" in m.message["Subject"])
            assert PAGE_RE.search(withdrawn.text)

            staff = browser.new_context(base_url=server.url, locale="sv-SE").new_page()
            staff.set_default_timeout(15_000)
            staff.goto("/login")
            staff.fill("#f-email", practice["emails"][0])
            staff.fill("#f-password", practice["password"])
            staff.click("main form button[type=submit]")
            staff.wait_for_url(re.compile(r"/dashboard$"))
            staff.goto("/clients?q=Mina+Klient")
            staff.locator("table.clients tbody tr", has_text="Mina Klient").locator("a").first.click()
            staff.wait_for_load_state()
            panel = staff.locator(".samtycke-panel [data-status]").first
            assert panel.get_attribute("data-status") == "withdrawn"
            assert staff.locator(f".samtycke-panel a[href*='{PREFIX}/clients/']"
                                 "[href$='/page-links']").count() == 1
        finally:
            browser.close()

"""End-to-end: consent per purpose in the example platform, driven in Chromium.

One story, as a practitioner and a client live it: the practitioner adds the catalogue's
newsletter and reminders purposes in the activation wizard; a client books online and
ticks only the required box; the profile shows a status per purpose; a batch asks for
the newsletter only (preview first, nothing sent before the confirmation); the client
accepts it from the e-mail; the platform's booking reminder goes out only once the
client has consented to reminders.

All mail, the app's and the platform's, goes by SMTP to a real server (aiosmtpd) on
loopback, and the test reads it there.  The platform's clock stands at a Wednesday
morning (moving on in real time) so that "tomorrow" always has free booking times.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from time import monotonic, sleep
from typing import Any

import pytest
from browser_support import launch, playwright_sync_api
from smtp_support import FROM_ADDR, LINK_RE, Received, SmtpServer, running_server

# The example host is not an installed package: reach it from the repository root,
# appended last so the installed samtycke_plugin still wins over the source tree.
sys.path.append(str(Path(__file__).resolve().parents[2]))

from examples.host_app.__main__ import remind
from examples.host_app.scheduling import ZONE, local, slot_value
from examples.host_app.testing import LiveServer, add_practice

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
PREFIX = "/apps/samtycke"
REMINDER_SUBJECT = "Påminnelse: din bokning hos"


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


def _a_wednesday_morning() -> timedelta:
    """How far the platform's clock is set ahead: to the next Wednesday, 09:00 in the
    practice's time zone (its tomorrow is a weekday with free times)."""
    now = datetime.now(UTC)
    day = local(now).date() + timedelta(days=1)
    while day.weekday() != 2:
        day += timedelta(days=1)
    return datetime.combine(day, time(9), tzinfo=ZONE).astimezone(UTC) - now


@pytest.fixture
def server(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[LiveServer]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in smtp_server.env().items():
            patch.setenv(name, value)  # the app's relay sends by SMTP (read when it runs)
        overrides = {"DATABASE_URL": f"sqlite:///{tmp_path / 'booking.sqlite'}",
                     "SECRET_KEY": "e2e-purposes-" + uuid.uuid4().hex,
                     # the platform's own mail (confirmations, reminders) by SMTP too
                     "DEV_MAILBOX": False, "SMTP_HOST": "127.0.0.1",
                     "SMTP_PORT": smtp_server.port, "SMTP_STARTTLS": False,
                     "SMTP_FROM": "bokning@example.org"}
        with LiveServer(overrides) as live:
            ahead = _a_wednesday_morning()
            live.platform.host.clock = lambda: datetime.now(UTC) + ahead
            yield live


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = playwright_sync_api()
    with sync_api.sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


def new_page(browser: Any, server: LiveServer) -> Any:
    """A page in a fresh browser context (its own cookies), in Swedish."""
    context = browser.new_context(base_url=server.url, locale="sv-SE",
                                  viewport={"width": 1200, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: pytest.fail(f"JavaScript error: {exc}"))
    return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# -- what the test reads --------------------------------------------------------------------


def mails_to(smtp: SmtpServer, address: str) -> list[Received]:
    return [m for m in smtp.messages if address in m.rcpt_tos]


def consent_mails(smtp: SmtpServer, address: str) -> list[Received]:
    """The app's requests to ``address`` (mails with a consent link)."""
    return [m for m in mails_to(smtp, address) if any(p == "c" for p, _t in m.links())]


def receipts_to(smtp: SmtpServer, address: str) -> list[Received]:
    """The app's receipts to ``address`` (mails with a withdrawal link)."""
    return [m for m in mails_to(smtp, address) if any(p == "w" for p, _t in m.links())]


def reminders_to(smtp: SmtpServer, address: str) -> list[Received]:
    return [m for m in mails_to(smtp, address)
            if str(m.message["Subject"]).startswith(REMINDER_SUBJECT)]


def relay(server: LiveServer) -> None:
    """Run the app's relay once: due batch jobs, then the queued mail."""
    server.platform.apps.run_work()


def delivered(server: LiveServer, found: Callable[[], list[Received]],
              count: int) -> list[Received]:
    """Run the relay, then the mails ``found()`` once ``count`` have arrived (the
    platform's worker thread may be delivering the same mail, claimed before this run);
    exactly ``count``."""
    relay(server)
    deadline = monotonic() + 15.0
    while len(found()) < count:
        assert monotonic() < deadline, f"{len(found())} of {count} mails arrived"
        sleep(0.1)
    mails = found()
    assert len(mails) == count, [m.message["Subject"] for m in mails]
    return mails


def may_use(server: LiveServer, practice_id: int, client: int, purpose: str) -> bool:
    """The app's answer to the platform: may this client's data be used for ``purpose``?"""
    try:
        found = server.platform.apps.may_use(practice_id, [client], purpose)
    finally:
        server.platform.sessions.remove()
    assert found is not None, "the consent app should be active"
    return found[str(client)]


def statuses(page: Any, client: int) -> dict[str, str]:
    """The profile panel's status per purpose (``data-purpose`` → ``data-status``)."""
    page.goto(f"/clients/{client}")
    items = page.locator(".samtycke-panel li[data-purpose]")
    return {items.nth(i).get_attribute("data-purpose"):
            items.nth(i).locator("[data-status]").get_attribute("data-status")
            for i in range(items.count())}


def send_reminders(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> str:
    """The platform's daily reminder run (``python -m examples.host_app remind``)."""
    assert server.app is not None
    remind(server.app)
    return capsys.readouterr().out


def sign_in(page: Any, email: str, password: str) -> None:
    page.goto("/login")
    page.fill("#f-email", email)
    page.fill("#f-password", password)
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard$"))


def open_link(page: Any, mail: Received) -> None:
    """Follow the consent link of ``mail`` (its plain-text part) in the browser."""
    found = LINK_RE.search(mail.text)
    assert found is not None and found.group(1) == "c", mail.text
    page.goto(found.group(0))


# -- the practitioner's steps -------------------------------------------------------------------


def add_from_the_catalogue(staff: Any, name: str) -> None:
    """Wizard step 2: add a ready-written purpose as it is offered."""
    staff.click(f"#purposes a:text-is('Lägg till ”{name}”')")
    staff.wait_for_url(re.compile(rf"{PREFIX}/purposes/add\?"))
    assert staff.locator("#name_sv").input_value() == name
    assert staff.locator("#required-no").is_checked()  # offered, never required
    assert staff.locator("#text_sv").input_value().strip()
    staff.click(f"form[action='{PREFIX}/purposes/add'] button[type=submit]")
    staff.wait_for_url(re.compile(rf"{PREFIX}/setup\?step=2"))


def activate_with_purposes(staff: Any) -> None:
    staff.click("nav >> text=Appar")
    staff.locator(".app-card[data-app=samtycke] button[value=activate]").click()
    staff.wait_for_url(re.compile(rf"{PREFIX}/setup"))
    staff.click(f"a[href='{PREFIX}/setup?step=2']")
    offered = staff.locator("#purposes").inner_text()
    assert "Lägg till ”Nyhetsbrev”" in offered and "Lägg till ”Påminnelser om bokningar”" in offered
    add_from_the_catalogue(staff, "Nyhetsbrev")
    add_from_the_catalogue(staff, "Påminnelser om bokningar")
    added = staff.locator("#purposes").inner_text()
    assert "Nyhetsbrev" in added and "Påminnelser om bokningar" in added
    assert "Lägg till ”Nyhetsbrev”" not in added  # not offered twice
    shot(staff, "p01-wizard-purposes-added")
    staff.click("button[name=action][value=keep]")
    staff.check("#ask_new_clients")
    staff.check("#require-yes")
    staff.click("form#settings button[type=submit]")
    staff.wait_for_url(re.compile(rf"{PREFIX}/setup\?step=4"))


def batch_preview(staff: Any, purpose_label: str) -> Any:
    staff.goto(f"{PREFIX}/batch")
    staff.select_option("#purpose", label=purpose_label)
    with staff.expect_navigation(url=re.compile(r"[?&]purpose=")):
        staff.click("#batch-purpose button[type=submit]")
    return staff.locator("#batch-preview")


# -- the scenario -------------------------------------------------------------------------------


def test_newsletter_by_batch_and_reminders_only_after_consent(
        server: LiveServer, smtp_server: SmtpServer, browser: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    practice = add_practice(server.platform, name="Klinik Linnea")
    staff = new_page(browser, server)
    sign_in(staff, practice["emails"][0], practice["password"])

    # 1. The wizard: the newsletter and reminders purposes from the catalogue.
    activate_with_purposes(staff)
    staff.goto(f"{PREFIX}/purposes")
    listed = staff.locator("main").inner_text()
    assert "Nyhetsbrev" in listed and "Påminnelser om bokningar" in listed

    # 2. A client books tomorrow and ticks only the required box.
    client = new_page(browser, server)
    email = f"nora-{uuid.uuid4().hex[:6]}@example.org"
    client.goto(f"/book/{practice['slug']}")
    for key in ("", "-newsletter", "-reminders"):
        box = client.locator(f"#samtycke-consent-box{key}")
        assert box.is_visible() and not box.is_checked(), key
        assert (box.get_attribute("aria-required") == "true") == (key == ""), key
    assert "Nyhetsbrev" in client.locator("#samtycke-consent-block-newsletter").inner_text()
    tomorrow = local(server.platform.now()).date() + timedelta(days=1)
    slot = datetime.combine(tomorrow, time(10), tzinfo=ZONE)
    client.select_option("#f-slot", slot_value(slot))
    client.fill("#f-name", "Nora Nilsson")
    client.fill("#f-email", email)
    client.check("#samtycke-consent-box")
    shot(client, "p02-booking-three-boxes")
    client.click("main form button[type=submit]")
    client.wait_for_url(re.compile(r"/booked$"))
    assert "bokad" in client.locator("h1").inner_text()

    # 3. The profile: a status per purpose.
    staff.goto("/clients?q=Nora+Nilsson")
    staff.locator("table.clients tbody tr", has_text="Nora Nilsson").locator("a").first.click()
    staff.wait_for_url(re.compile(r"/clients/\d+$"))
    cid = int(staff.url.rsplit("/", 1)[1])
    assert statuses(staff, cid) == {"care": "valid", "newsletter": "refused",
                                    "reminders": "refused"}
    panel = staff.locator(".samtycke-panel").inner_text()
    assert "Nyhetsbrev" in panel and "krävs" in panel  # the required one is marked
    shot(staff, "p03-profile-per-purpose")
    assert may_use(server, practice["id"], cid, "care")
    assert not may_use(server, practice["id"], cid, "newsletter")

    # 4. The batch for the newsletter.  The client said no at booking a minute ago, so
    # the practice's pause (twelve months by default) leaves them out ...
    preview = batch_preview(staff, "Nyhetsbrev")
    assert preview.locator("[data-preview-purpose]").get_attribute(
        "data-preview-purpose") == "newsletter"
    assert preview.locator("[data-preview-asked]").get_attribute("data-preview-asked") == "0"
    # the page's counts are the newsletter's: the client has care consent, not this one
    without = staff.locator("dl.sp-stats div", has_text="Klienter utan giltigt samtycke")
    assert without.locator("dd").inner_text() == "1"
    left_out = preview.locator("#left-out-refused")
    left_out.locator("summary").click()
    assert "Nora Nilsson" in left_out.inner_text()
    shot(staff, "p04-batch-left-out-in-pause")
    # ... until the practitioner sets no pause in the settings.
    staff.goto(f"{PREFIX}/setup?step=3")
    staff.fill("#pause_days", "0")
    staff.click("form#settings button[type=submit]")
    staff.wait_for_load_state()
    preview = batch_preview(staff, "Nyhetsbrev")
    assert preview.locator("[data-preview-asked]").get_attribute("data-preview-asked") == "1"
    assert preview.locator("[data-reason=refused]").count() == 1  # the count line only
    assert preview.locator("#left-out-refused").count() == 0
    mail_preview = preview.locator("#mail-preview").inner_text()
    assert "Nora Nilsson" in mail_preview and "Nyhetsbrev" in mail_preview
    assert "Påminnelser" not in mail_preview
    shot(staff, "p05-batch-preview-newsletter")
    relay(server)
    assert consent_mails(smtp_server, email) == []  # nothing before the confirmation
    staff.click(f"form[action='{PREFIX}/batch'][method=post] button[type=submit]")
    staff.wait_for_selector("[data-job-state=done]", timeout=30_000)
    assert "Skickade förfrågningar: 1." in staff.locator("[data-job-state]").inner_text()
    [request] = delivered(server, lambda: consent_mails(smtp_server, email), 1)
    assert request.message["From"].addresses[0].addr_spec == FROM_ADDR
    assert "Nyhetsbrev" in request.text and "Påminnelser" not in request.text

    # 5. The client accepts the newsletter from the e-mail.
    open_link(client, request)
    assert client.locator(".samtycke-text").count() == 1  # one purpose asked
    assert "Nyhetsbrev" in client.locator("main").inner_text()
    shot(client, "p06-consent-page-newsletter")
    client.click("button[name=decision][value=accept]")
    client.wait_for_load_state()
    assert "Tack" in client.locator("[role=status]").inner_text()
    assert statuses(staff, cid) == {"care": "valid", "newsletter": "valid",
                                    "reminders": "refused"}
    # receipts: the booking's (care), then the newsletter's, which names its purpose
    receipts = delivered(server, lambda: receipts_to(smtp_server, email), 2)
    assert "Ändamål: Nyhetsbrev" in receipts[-1].text
    assert "Nyhetsbrev" not in receipts[0].text
    assert may_use(server, practice["id"], cid, "newsletter")

    # 6. Reminders: none before the client consents to them ...
    staff.goto("/clients")
    row = staff.locator("table.clients tbody tr", has_text="Nora Nilsson")
    assert row.locator("[data-no-contact]").is_visible()
    out = send_reminders(server, capsys)
    assert "0 reminder(s) sent, 1 client(s) may not be contacted" in out, out
    assert reminders_to(smtp_server, email) == []
    staff.goto("/dashboard")
    assert staff.locator("#reminders [data-reminder=not_allowed]").count() == 1
    # ... then the practitioner asks for reminders from the profile, and the client agrees.
    staff.goto(f"{PREFIX}/clients/{cid}/obtain")
    # Ticked for the practitioner: the purposes without valid consent, reminders only.
    assert staff.locator("#purpose-reminders").is_checked()
    assert not staff.locator("#purpose-newsletter").is_checked()
    assert not staff.locator("#purpose-care").is_checked()
    staff.click("form:has(input[name=action][value=send]) button[type=submit]")
    staff.wait_for_load_state()
    asked = delivered(server, lambda: consent_mails(smtp_server, email), 2)
    assert "Påminnelser om bokningar" in asked[-1].text and "Nyhetsbrev" not in asked[-1].text
    open_link(client, asked[-1])
    shot(client, "p07-consent-page-reminders")
    client.click("button[name=decision][value=accept]")
    client.wait_for_load_state()
    assert statuses(staff, cid)["reminders"] == "valid"
    staff.goto("/clients")
    row = staff.locator("table.clients tbody tr", has_text="Nora Nilsson")
    assert row.locator("[data-no-contact]").count() == 0
    staff.goto("/dashboard")
    assert staff.locator("#reminders [data-reminder=due]").count() == 1
    out = send_reminders(server, capsys)
    assert "1 reminder(s) sent" in out, out
    [reminder] = reminders_to(smtp_server, email)
    assert "Nora Nilsson" in reminder.text and "Behandling" in reminder.text
    # A second run reminds nobody twice.
    send_reminders(server, capsys)
    assert len(reminders_to(smtp_server, email)) == 1

"""End-to-end: the example booking platform with Samtycke, driven in Chromium.

The platform runs on a free loopback port in a thread against a fresh SQLite file
with the demo data; each test makes its own practice so the tests do not depend on
each other.  Chromium is the distribution's (``/usr/bin/chromium``); under CI=true a
missing browser fails the run.  Screenshots go to ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from browser_support import launch, playwright_sync_api
from sqlalchemy import select

# The example host is not an installed package: reach it from the repository root,
# appended last so the installed samtycke_plugin still wins over the source tree.
sys.path.append(str(Path(__file__).resolve().parents[2]))

from examples.host_app import demo_seed
from examples.host_app.models import Booking, Client, DevMail
from examples.host_app.testing import LiveServer, activate, add_practice

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
#: ``SAMTYCKE_DOC_SCREENSHOTS=1`` refreshes the README's small screenshots in docs/screenshots.
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DOC_SHOTS = os.environ.get("SAMTYCKE_DOC_SCREENSHOTS", "") == "1"
PREFIX = "/apps/samtycke"


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    path = tmp_path_factory.mktemp("e2e") / "booking.sqlite"
    with LiveServer({"DATABASE_URL": f"sqlite:///{path}",
                     "SECRET_KEY": "e2e-secret-" + uuid.uuid4().hex}) as live:
        assert demo_seed.seed(live.platform)
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = playwright_sync_api()
    with sync_api.sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Any, server: LiveServer) -> Iterator[Any]:
    """Pages in fresh browser contexts (each its own cookies: practitioner, client …)."""
    contexts = []

    def make(width: int = 1200) -> Any:
        context = browser.new_context(base_url=server.url, locale="sv-SE",
                                      viewport={"width": width, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: pytest.fail(f"JavaScript error: {exc}"))
        return page

    yield make
    for context in contexts:
        context.close()


def shot(page: Any, name: str, doc: str | None = None, locator: Any = None) -> None:
    """A full-page artefact; with ``doc``, also a small PNG for the README (< 150 KB)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if doc and DOC_SHOTS:
        DOCS.mkdir(parents=True, exist_ok=True)
        target = DOCS / f"{doc}.png"
        if locator is not None:
            locator.screenshot(path=str(target), animations="disabled")
        else:
            size = page.viewport_size
            page.screenshot(path=str(target), animations="disabled",
                            clip={"x": 0, "y": 0, "width": size["width"],
                                  "height": min(size["height"], 720)})
        assert target.stat().st_size < 150_000, f"{target.name} is too large for the README"


# -- steps a person takes ----------------------------------------------------------------------


def sign_in(page: Any, email: str, password: str) -> None:
    page.goto("/login")
    page.fill("#f-email", email)
    page.fill("#f-password", password)
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard$"))


def book_online(page: Any, slug: str, *, name: str | None, email: str | None,
                tick: bool, link: str | None = None) -> None:
    page.goto(link or f"/book/{slug}")
    if name is not None:
        page.fill("#f-name", name)
        page.fill("#f-email", email or "")
    if tick:
        page.check("#samtycke-consent-box")
    page.click("main form button[type=submit]")


def status_in_list(page: Any, name: str) -> str:
    page.goto("/clients?q=" + name.replace(" ", "+"))
    row = page.locator("table.clients tbody tr", has_text=name)
    assert row.count() == 1, f"{name} should be listed once"
    status: str = row.locator("[data-status]").get_attribute("data-status")
    return status


def status_on_profile(page: Any, client_id: int) -> str:
    page.goto(f"/clients/{client_id}")
    status: str = page.locator(".samtycke-panel [data-status]").get_attribute("data-status")
    return status


def rows(server: LiveServer, statement: Any) -> list[Any]:
    """Read plain rows in a short transaction of the test's own (SQLite locks on write)."""
    try:
        return list(server.platform.db().execute(statement).all())
    finally:
        server.platform.sessions.remove()


def client_id(server: LiveServer, practice_id: int, email: str) -> int:
    found = rows(server, select(Client.id).where(Client.practice_id == practice_id,
                                                 Client.email == email))
    assert len(found) == 1, f"no client {email}"
    return int(found[0][0])


def open_mail_link(page: Any, to: str, subject_part: str, link_part: str) -> str:
    """Open the newest mail to ``to`` in the development mailbox and follow its link."""
    page.goto("/dev/mailbox?to=" + to)
    page.locator("table.mails a", has_text=subject_part).first.click()
    link = page.locator(".mail-body a", has_text=link_part).first
    href: str = link.get_attribute("href")
    link.click()
    return href


def new_practice(server: LiveServer, name: str | None = None,
                 **settings: object) -> dict[str, Any]:
    practice = add_practice(server.platform, staff=2, name=name)
    if settings:
        activate(server.platform, practice["id"], **settings)
    return practice


def mails_to(server: LiveServer, to: str) -> list[Any]:
    return rows(server, select(DevMail.source, DevMail.subject, DevMail.text)
                .where(DevMail.to == to).order_by(DevMail.id))


def _wait_for(condition: Any, timeout: float = 30.0) -> None:
    """Until ``condition()`` holds (the platform's worker runs in its own thread)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the worker did not get there in time"
        time.sleep(0.2)


# -- scenarios -----------------------------------------------------------------------------------


def test_practitioner_activates_the_app_through_the_wizard(server: LiveServer,
                                                           new_page: Any) -> None:
    practice = new_practice(server, "Mottagningen Solsidan")
    page = new_page()
    sign_in(page, practice["emails"][0], practice["password"])
    page.click("nav >> text=Appar")
    card = page.locator(".app-card[data-app=samtycke]")
    assert "Inte aktiv" in card.inner_text()
    shot(page, "01-app-menu", doc="app-menu")
    card.locator("button[value=activate]").click()

    page.wait_for_url(re.compile(rf"{PREFIX}/setup"))
    assert page.locator("h1").inner_text() == "Installera Samtycke"
    shot(page, "02-wizard-step1-about")
    page.click(f"a[href='{PREFIX}/setup?step=2']")
    assert page.locator("#text_sv").input_value().strip() != ""
    shot(page, "03-wizard-step2-text")
    page.click("button[name=action][value=keep]")
    page.check("#require-yes")
    shot(page, "04-wizard-step3-when", doc="wizard-step3")
    page.click("form#settings button[type=submit]")
    page.wait_for_load_state()
    shot(page, "05-wizard-done")

    # Nothing is asked before the wizard is done; now the booking form asks.
    page.goto("/app-menu")
    assert "Aktiv" in page.locator(".app-card[data-app=samtycke] .state").inner_text()
    page.goto(f"/book/{practice['slug']}")
    box = page.locator("#samtycke-consent-box")
    assert box.is_visible() and not box.is_checked()


def test_new_client_is_blocked_without_the_tick_and_accepted_with_it(server: LiveServer,
                                                                      new_page: Any) -> None:
    practice = new_practice(server, "Fysio Väst", ask_new_clients=True,
                            require_consent_for_online_booking=True)
    client = new_page(width=390)  # a client on a phone
    email = f"klara-{uuid.uuid4().hex[:6]}@example.org"
    book_online(client, practice["slug"], name="Klara Ström", email=email, tick=False)

    error = client.locator("#app-samtycke-consent .field-error")
    assert "kryssa i rutan" in error.inner_text()
    assert client.locator(".error-summary a[href='#app-samtycke-consent']").count() == 1
    assert client.locator("#f-name").input_value() == "Klara Ström"  # kept for the next try
    shot(client, "10-booking-blocked-without-tick-phone")
    client.set_viewport_size({"width": 760, "height": 900})
    shot(client, "10-booking-blocked-without-tick", doc="booking-consent",
         locator=client.locator("#app-samtycke-consent"))
    client.set_viewport_size({"width": 390, "height": 900})
    assert rows(server, select(Client.id).where(Client.email == email)) == []

    client.check("#samtycke-consent-box")
    client.click("main form button[type=submit]")
    client.wait_for_url(re.compile(r"/booked$"))
    assert "bokad" in client.locator("h1").inner_text()
    shot(client, "11-booking-accepted-phone")

    staff = new_page()
    sign_in(staff, practice["emails"][0], practice["password"])
    assert status_in_list(staff, "Klara Ström") == "valid"
    cid = client_id(server, practice["id"], email)
    assert status_on_profile(staff, cid) == "valid"
    shot(staff, "12-profile-valid")
    assert rows(server, select(Booking.channel).where(Booking.client_id == cid)) == [("online",)]


def test_the_two_list_filters_show_exactly_the_right_clients(server: LiveServer,
                                                              new_page: Any) -> None:
    practice = new_practice(server, ask_new_clients=True, ask_clients_without_consent=True,
                            require_consent_for_online_booking=False)
    tag = uuid.uuid4().hex[:5]
    consented = {f"Ja {tag} {i}" for i in range(3)}
    declined = {f"Nej {tag} {i}" for i in range(2)}
    client = new_page()
    for name in sorted(consented | declined):
        book_online(client, practice["slug"], name=name,
                    email=name.replace(" ", ".").lower() + "@example.org",
                    tick=name in consented)
        client.wait_for_url(re.compile(r"/booked$"))
    staff = new_page()
    sign_in(staff, practice["emails"][0], practice["password"])
    staff.goto("/clients/new")
    staff.fill("#f-name", f"Aldrig {tag}")
    staff.click("main form button[type=submit]")
    never = {f"Aldrig {tag}"}

    def names_with(filter_label: str) -> set[str]:
        staff.goto("/clients")
        staff.select_option("#filter", label=filter_label)
        # click() only waits for the navigation to start: wait for the filtered page
        # itself before reading it (all_inner_texts() does not wait).
        with staff.expect_navigation(url=re.compile(r"[?&]filter=")):
            staff.click("form.filters button[type=submit]")
        staff.wait_for_load_state("load")
        return set(staff.locator("table.clients tbody th").all_inner_texts())

    assert names_with("Klienter med giltigt samtycke") == consented
    shot(staff, "20-filter-valid")
    assert names_with("Klienter utan giltigt samtycke") == declined | never
    staff.goto("/clients?filter=samtycke.not_valid")
    assert "av 3 klienter" in staff.locator("#client-count").inner_text()
    assert names_with("Alla klienter") == consented | declined | never
    statuses = {name: status_in_list(staff, name) for name in declined}
    assert set(statuses.values()) == {"refused"}


def _edit_text(staff: Any, kind: str, extra: str) -> None:
    staff.goto(f"{PREFIX}/text")
    body = staff.locator("#text_sv")
    body.fill(body.input_value() + extra)
    staff.click("button[name=action][value=preview]")
    staff.check(f"#kind-{kind}")
    shot(staff, f"30-text-preview-{kind}", doc="text-preview-content" if kind == "content" else None)
    staff.click("button[name=action][value=save]")
    staff.wait_for_load_state()


def test_content_change_asks_again_and_a_correction_does_not(server: LiveServer,
                                                             new_page: Any) -> None:
    practice = new_practice(server, "Massage Ek", ask_new_clients=True,
                            ask_clients_without_consent=True,
                            require_consent_for_online_booking=True)
    email = f"olle-{uuid.uuid4().hex[:6]}@example.org"
    client = new_page()
    book_online(client, practice["slug"], name="Olle Ek", email=email, tick=True)
    client.wait_for_url(re.compile(r"/booked$"))
    # The confirmation mail carries the client's "book again" link.
    [confirmation] = [m for m in mails_to(server, email) if m.source == "platform"]
    again = re.search(r"https?://\S+/book/\S+", confirmation.text)
    assert again is not None
    again_link = again.group(0)

    staff = new_page()
    sign_in(staff, practice["emails"][0], practice["password"])
    _edit_text(staff, "correction", " Rättat stavfel.")
    client.goto(again_link)
    assert "Olle Ek" in client.locator(".notice").inner_text()
    assert client.locator("#samtycke-consent-box").count() == 0  # still valid: not asked
    book_online(client, practice["slug"], name=None, email=None, tick=False, link=again_link)
    client.wait_for_url(re.compile(r"/booked$"))

    _edit_text(staff, "content", "\n\nVi delar också uppgifter med vår journalleverantör.")
    cid = client_id(server, practice["id"], email)
    assert status_on_profile(staff, cid) == "outdated"
    client.goto(again_link)
    assert client.locator("#samtycke-consent-box").is_visible()
    assert "journalleverantör" in client.locator("#samtycke-text").inner_text()
    shot(client, "31-asked-again-after-content-change")
    book_online(client, practice["slug"], name=None, email=None, tick=True, link=again_link)
    client.wait_for_url(re.compile(r"/booked$"))
    assert status_on_profile(staff, cid) == "valid"


def test_email_request_accept_then_withdraw_through_the_receipt(server: LiveServer,
                                                               new_page: Any) -> None:
    practice = new_practice(server, "Samtalsterapi Maja", ask_new_clients=True)
    email = f"maja-{uuid.uuid4().hex[:6]}@example.org"
    staff = new_page()
    sign_in(staff, practice["emails"][0], practice["password"])
    staff.goto("/clients/new")
    staff.fill("#f-name", "Maja Holm")
    staff.fill("#f-email", email)
    staff.click("main form button[type=submit]")
    cid = int(staff.url.rstrip("/").rsplit("/", 1)[1])
    assert status_on_profile(staff, cid) == "unknown"
    staff.click(f"a[href='{PREFIX}/clients/{cid}/obtain']")
    shot(staff, "40-obtain-consent", doc="obtain-consent")
    staff.click("form:has(input[name=action][value=send]) button[type=submit]")
    staff.wait_for_load_state()
    assert status_on_profile(staff, cid) == "requested"

    client = new_page(width=390)
    href = open_mail_link(client, email, "", f"{PREFIX}/c/")
    assert href.startswith(server.url + f"{PREFIX}/c/")
    shot(client, "41-public-consent-page", doc="public-consent-phone")
    client.click("button[name=decision][value=accept]")
    client.wait_for_load_state()
    shot(client, "42-consent-given")
    assert status_on_profile(staff, cid) == "valid"

    # The receipt arrives with a one-click way to withdraw.
    open_mail_link(client, email, "", f"{PREFIX}/w/")
    shot(client, "43-withdraw-page")
    client.click("button[name=decision][value=withdraw]")
    client.wait_for_load_state()
    assert status_on_profile(staff, cid) == "withdrawn"
    shot(staff, "44-profile-withdrawn")


def test_practitioner_records_consent_given_on_paper(server: LiveServer, new_page: Any) -> None:
    practice = new_practice(server, ask_new_clients=True)
    staff = new_page()
    sign_in(staff, practice["emails"][0], practice["password"])
    staff.goto("/clients/new")
    staff.fill("#f-name", "Pappers Petra")
    staff.click("main form button[type=submit]")
    cid = int(staff.url.rstrip("/").rsplit("/", 1)[1])
    staff.click(f"a[href='{PREFIX}/clients/{cid}/obtain']")
    staff.check("#method-paper")
    staff.fill("#given_on", datetime.now(UTC).strftime("%Y-%m-%d"))
    staff.fill("#note", "Underskrivet formulär i pärmen.")
    staff.click("form:has(input[name=action][value=record]) button[type=submit]")
    staff.wait_for_load_state()
    assert status_on_profile(staff, cid) == "valid"
    staff.click(f"a[href='{PREFIX}/clients/{cid}/history']")
    history = staff.locator("main").inner_text()
    assert "Underskrivet formulär i pärmen." in history
    shot(staff, "50-history-after-manual-record")


def test_a_second_practice_never_sees_the_first_practices_clients(server: LiveServer,
                                                                  new_page: Any) -> None:
    first = new_practice(server, ask_new_clients=True)
    second = new_practice(server, ask_new_clients=True)
    email = f"hemlig-{uuid.uuid4().hex[:6]}@example.org"
    book_online(new_page(), first["slug"], name="Hemlig Hedda", email=email, tick=True)
    cid = client_id(server, first["id"], email)

    other = new_page()
    sign_in(other, second["emails"][0], second["password"])
    other.goto("/clients?q=Hemlig")
    assert other.locator("table.clients tbody tr").count() == 0
    for path in (f"/clients/{cid}", f"/clients/{cid}/erase", f"{PREFIX}/clients/{cid}/obtain",
                 f"{PREFIX}/clients/{cid}/history"):
        response = other.goto(path)
        assert response.status == 404, path
        assert "Hemlig" not in other.content()
    other.goto("/clients?filter=samtycke.valid")
    assert "Hemlig Hedda" not in other.locator("main").inner_text()


def test_pages_are_labelled_and_switch_to_english(server: LiveServer, new_page: Any) -> None:
    practice = new_practice(server, ask_new_clients=True)
    page = new_page(width=390)
    page.goto(f"/book/{practice['slug']}")
    unlabelled = page.evaluate("""() => [...document.querySelectorAll(
        'main input:not([type=hidden]), main select, main textarea')]
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
        .map(el => el.name)""")
    assert unlabelled == []
    described = page.get_attribute("#samtycke-consent-box", "aria-describedby")
    assert described and page.locator(f"#{described}").inner_text().strip()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.click("header button[name=lang][value=en]")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text().startswith("Book a time at")
    assert "I have read the text" in page.locator("#samtycke-consent-block").inner_text()
    shot(page, "60-booking-english-phone")


def test_demo_practice_shows_every_kind_of_status(server: LiveServer, new_page: Any) -> None:
    """What a newcomer sees first: the demo practice's client list and a profile."""
    page = new_page()
    sign_in(page, "anna@lugnochro.example", "lugn-demo")
    page.goto("/clients")
    statuses = set(page.locator("table.clients [data-status]").evaluate_all(
        "els => els.map(e => e.dataset.status)"))
    assert {"valid", "outdated", "withdrawn", "refused", "requested", "unknown"} <= statuses
    shot(page, "70-demo-client-list", doc="client-list")
    page.select_option("#filter", label="Klienter utan giltigt samtycke")
    page.click("form.filters button[type=submit]")
    assert "valid" not in set(page.locator("table.clients [data-status]").evaluate_all(
        "els => els.map(e => e.dataset.status)"))
    page.locator("table.clients tbody tr", has=page.locator("[data-status=outdated]")).first \
        .locator("a").click()
    # the panel's headline badge, then one status per purpose (the demo practice also
    # asks consent for booking reminders)
    badges = page.locator(".samtycke-panel [data-status]")
    assert badges.first.get_attribute("data-status") == "outdated"
    assert badges.count() == 3
    shot(page, "71-demo-profile-outdated", doc="client-profile")


def test_batch_request_asks_everyone_without_valid_consent_once(server: LiveServer,
                                                                new_page: Any) -> None:
    practice = new_practice(server, "Yoga Mitt", ask_new_clients=True)
    tag = uuid.uuid4().hex[:6]
    consented = f"ja-{tag}@example.org"
    book_online(new_page(), practice["slug"], name="Ja Redan", email=consented, tick=True)
    staff = new_page()
    sign_in(staff, practice["emails"][0], practice["password"])
    asked = []
    for name, email in [("Ask Ett", f"ett-{tag}@example.org"),
                        ("Ask Två", f"tva-{tag}@example.org"), ("Utan Adress", "")]:
        staff.goto("/clients/new")
        staff.fill("#f-name", name)
        staff.fill("#f-email", email)
        staff.click("main form button[type=submit]")
        if email:
            asked.append((name, email))
    staff.goto(f"{PREFIX}/batch")
    shot(staff, "80-batch")
    staff.click("main form button[type=submit]")
    staff.wait_for_load_state()
    # The request returns at once with the job's progress page, which reloads itself
    # until the platform's worker has run the job.
    assert re.search(r"/batch/jobs/\d+$", staff.url)
    staff.wait_for_selector("[data-job-state=done]", timeout=60_000)
    shot(staff, "81-batch-done")
    _wait_for(lambda: all(mails_to(server, email) for _name, email in asked))
    for name, email in asked:
        requests = [m for m in mails_to(server, email) if m.source == "samtycke"]
        assert len(requests) == 1, email
        assert status_in_list(staff, name) == "requested"
    assert [m for m in mails_to(server, consented) if "/c/" in m.text] == []
    assert status_in_list(staff, "Ja Redan") == "valid"
    assert status_in_list(staff, "Utan Adress") == "unknown"
    # Asking again does not send duplicates.
    staff.goto(f"{PREFIX}/batch")
    staff.click("main form button[type=submit]")
    staff.wait_for_load_state()
    staff.wait_for_selector("[data-job-state=done]", timeout=60_000)
    assert "Requests sent: 0." in staff.content() or "Skickade förfrågningar: 0." in staff.content()
    for _name, email in asked:
        assert len([m for m in mails_to(server, email) if m.source == "samtycke"]) == 1


def test_the_apps_pages_sit_inside_the_platforms_layout(server: LiveServer,
                                                        new_page: Any) -> None:
    practice = new_practice(server, ask_new_clients=True)
    staff = new_page()
    # Signed out, the app's page sends the practitioner to the platform's sign-in, and
    # the sign-in back to the page.
    staff.goto(f"{PREFIX}/setup?step=3")
    assert staff.url.endswith("/login?next=%2Fapps%2Fsamtycke%2Fsetup%3Fstep%3D3")
    staff.fill("#f-email", practice["emails"][0])
    staff.fill("#f-password", practice["password"])
    staff.click("main form button[type=submit]")
    staff.wait_for_url(re.compile(rf"{PREFIX}/setup\?step=3$"))
    for path in (f"{PREFIX}/setup", f"{PREFIX}/"):
        staff.goto(path)
        # The platform's own header: its menu, the language switch and sign-out.
        header = staff.locator("header.top")
        assert header.locator("nav a[href='/clients']").is_visible()
        assert header.locator("button[name=lang][value=en]").is_visible()
        assert header.get_by_role("button", name="Logga ut").is_visible()
        # The app's page inside it, once: one document, the app's menu in the main part.
        assert staff.locator("html").count() == 1
        assert staff.locator("main .sp-page nav.sp-nav").is_visible()
        assert staff.title().endswith(" · Praktika")
    shot(staff, "70-app-overview-in-platform-layout")

    staff.goto("/clients/new")
    staff.fill("#f-name", "Layout Lisa")
    staff.click("main form button[type=submit]")
    cid = int(staff.url.rstrip("/").rsplit("/", 1)[1])
    staff.click(f"a[href='{PREFIX}/clients/{cid}/obtain']")
    assert staff.locator("header.top nav a[href='/clients']").is_visible()
    back = staff.locator("main p.back a")
    assert back.inner_text() == "← Tillbaka till Layout Lisa"
    shot(staff, "71-obtain-consent-in-platform-layout")
    back.click()
    staff.wait_for_url(re.compile(rf"/clients/{cid}$"))
    # The language switch of the platform works on the app's pages too.
    staff.goto(f"{PREFIX}/clients/{cid}/history")
    staff.click("header button[name=lang][value=en]")
    staff.wait_for_url(re.compile(rf"{PREFIX}/clients/{cid}/history$"))
    assert staff.locator("main h1").inner_text().startswith("Consent history")
    assert staff.locator("main p.back a").inner_text() == "← Back to Layout Lisa"
    staff.get_by_role("button", name="Sign out").click()
    staff.goto(f"{PREFIX}/")
    assert "/login?next=" in staff.url


def test_reminders_go_only_to_clients_who_may_be_contacted(server: LiveServer,
                                                           new_page: Any) -> None:
    from test_reminders import mail_to, setup_practice

    practice, ids = setup_practice(server.app, samtycke=True, reminders_purpose=True)
    page = new_page()
    sign_in(page, practice["emails"][0], practice["password"])
    reminders = page.locator("#reminders")
    assert reminders.locator('[data-reminder="not_allowed"]').count() == 2
    assert reminders.locator('[data-reminder="due"]').count() == 1
    shot(page, "reminders-before")
    page.get_by_role("button", name="Skicka påminnelser nu").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    assert page.locator("#reminders [data-reminder='sent']").count() == 1
    assert page.get_by_role("button", name="Skicka påminnelser nu").count() == 0
    assert [m.to.split("-")[0] for m in mail_to(server.app, practice["id"])] == ["valid"]
    page.goto("/clients")
    for name in ("withdrawn", "never"):
        assert page.locator(f"tr[data-client='{ids[name]}'] [data-no-contact]").is_visible()
    assert page.locator(f"tr[data-client='{ids['valid']}'] [data-no-contact]").count() == 0
    shot(page, "reminders-client-list")

"""Practitioner pages (F2, F5, F7, F8, F10, F11, F15) through the real WSGI app, mounted
at MOUNT_PREFIX the way a host mounts it, with the host putting the signed-in practice
and practitioner into the environ.  Runs on SQLite and PostgreSQL (the ``host`` fixture)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from browser_support import launch, playwright_sync_api
from hostkit import TestHost, complete_waiting_requests, count_statements, staff, submission
from markupsafe import escape
from sqlalchemy import func, select
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client, TestResponse
from werkzeug.wrappers import Response

from hookspecs.types import BookingRef, ClientInfo, ClientRef, StaffContext, StaffRef
from samtycke_plugin import common, consent, practice_texts, practices
from samtycke_plugin.email import jobs
from samtycke_plugin.i18n import t
from samtycke_plugin.models import (
    ConsentEvent,
    ConsentRequest,
    OutboxMessage,
    Practice,
    TextVersion,
)
from samtycke_plugin.settings import PracticeSettings
from samtycke_plugin.web import make_wsgi_app
from samtycke_plugin.web.base import session_csrf_token

P = common.MOUNT_PREFIX
XSS = "<script>alert(1)</script>"
WHEN = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Pages:
    """A browser-less practitioner session: the host authenticates ``who`` in ``tenant``
    in its sign-in session ``session``."""

    def __init__(
        self, host: TestHost, tenant: str, who: StaffContext | None = None, home: object = None,
        session: str = "sign-in-1",
    ) -> None:
        self.host, self.tenant, self.staff = host, tenant, who or staff()
        self.session = session
        app = make_wsgi_app()

        def hosted(environ: dict[str, Any], start_response: Any) -> Any:
            environ["booking.host"] = host
            if home is not None:
                environ["booking.home"] = home
            if self.staff is not None:
                environ["booking.tenant"] = tenant
                environ["booking.staff"] = self.staff
                environ["booking.session"] = self.session
            return app(environ, start_response)

        outer = DispatcherMiddleware(Response("host page", status=404), {P: hosted})
        self.client = Client(outer)

    @property
    def token(self) -> str:
        return session_csrf_token(self.host.app_secret("samtycke"), self.session,
                                  ("staff", self.tenant, self.staff.ref))

    def get(self, path: str, lang: str = "sv") -> TestResponse:
        return self.client.get(P + path, headers={"Accept-Language": lang})

    def post(
        self, path: str, data: dict[str, str], lang: str = "sv", token: str | None = "auto"
    ) -> TestResponse:
        form = dict(data)
        if token == "auto":
            form["csrf_token"] = self.token
        elif token is not None:
            form["csrf_token"] = token
        return self.client.post(P + path, data=form, headers={"Accept-Language": lang})


_CONFIRM_KEY = re.compile(r'name="confirm_key" value="([^"]*)"')


def confirm_key(pages: Pages, page: str | None = None) -> dict[str, str]:
    """The batch page's confirm field, from ``page`` or a fresh GET of the preview."""
    found = _CONFIRM_KEY.search(page if page is not None else html(pages.get("/batch")))
    assert found, "the batch page has no confirm form"
    return {"confirm_key": found.group(1)}


def html(response: TestResponse) -> str:
    body = response.get_data(as_text=True)
    assert "<script" not in body.lower(), "unescaped script tag in a page"
    return body


def set_up(host: TestHost, name: str = "Kliniken Lugn & Ro", **settings: object) -> str:
    hooks = host.hooks()
    tenant = host.new_tenant(name)
    host.activate(hooks, tenant, **(settings or {"ask_new_clients": True}))
    return tenant


def events(host: TestHost, tenant: str) -> list[ConsentEvent]:
    host.session().rollback()
    return list(
        host.session().scalars(
            select(ConsentEvent).where(ConsentEvent.tenant_ref == tenant).order_by(ConsentEvent.seq)
        )
    )


def versions(host: TestHost, tenant: str) -> list[tuple[str, int, int, str]]:
    host.session().rollback()
    return [
        (v.language, v.major, v.minor, v.change_kind)
        for v in host.session().scalars(
            select(TextVersion)
            .where(TextVersion.tenant_ref == tenant)
            .order_by(TextVersion.major, TextVersion.minor, TextVersion.language)
        )
    ]


def practice_row(host: TestHost, tenant: str) -> Practice:
    host.session().rollback()
    row = host.session().get(Practice, tenant, populate_existing=True)
    assert row is not None
    return row


def give(host: TestHost, tenant: str, client: str, note: str | None = None) -> None:
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=WHEN, note=note)
    host.session().commit()


def text_ids(host: TestHost, tenant: str) -> list[int]:
    host.session().rollback()
    return list(
        host.session().scalars(
            select(TextVersion.id).where(TextVersion.tenant_ref == tenant).order_by(TextVersion.id)
        )
    )


def current_body(host: TestHost, tenant: str, language: str) -> str:
    host.session().rollback()
    practice = practices.require_practice(host.session(), tenant)
    return practice_texts.current_texts(host.session(), practice)[language].body


def valid_count(host: TestHost, tenant: str) -> int:
    host.session().rollback()
    practice = practices.require_practice(host.session(), tenant)
    return practice_texts.count_valid(host.session(), practice, host.now())


def snapshot(host: TestHost, tenant: str) -> tuple[Any, ...]:
    """Everything a practitioner POST could change, to show that nothing did."""
    host.session().rollback()
    practice = practice_row(host, tenant)
    requests = host.session().scalar(
        select(func.count()).select_from(ConsentRequest).where(ConsentRequest.tenant_ref == tenant)
    )
    return (
        len(events(host, tenant)),
        versions(host, tenant),
        practice.settings,
        practice.setup_complete,
        practice.current_major,
        requests,
    )


# -- rendering ------------------------------------------------------------------------------------

MARKERS = {
    "/": ("Samtyckesöversikt", "Consent overview"),
    "/setup?step=1": ("Om appen", "About the app"),
    "/setup?step=2": ("Samtyckestext", "Consent text"),
    "/setup?step=3": (
        "Måste klienter samtycka för att boka online?",
        "Must clients consent to book online?",
    ),
    "/setup?step=4": ("Klart", "Done"),
    "/text": ("Versioner", "Versions"),
    "/batch": ("Fråga alla utan giltigt samtycke", "Ask everyone without valid consent"),
    "/clients/{c}/obtain": ("Inhämta samtycke", "Obtain consent"),
    "/clients/{c}/withdraw": (
        "Klienten återkallar sitt samtycke",
        "The client withdraws their consent",
    ),
    "/clients/{c}/history": ("Samtyckeshistorik", "Consent history"),
    "/access-log": ("Åtkomstlogg", "Access log"),
    "/texts/{t}": (
        "Texten exakt som den visas för klienter",
        "The text exactly as shown to clients",
    ),
}


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_every_page_renders_in_swedish_and_english(host: TestHost, lang: str) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    give(host, tenant, client)
    pages = Pages(host, tenant)
    [text_id, *_] = text_ids(host, tenant)
    for path, (sv, en) in MARKERS.items():
        response = pages.get(path.format(c=client, t=text_id), lang=lang)
        body = html(response)
        assert response.status_code == 200, (path, body[-400:])
        assert response.headers["Content-Language"] == lang
        assert f'<html lang="{lang}">' in body
        assert (sv if lang == "sv" else en) in body, path
        if lang == "en":
            assert sv not in body or sv == en, f"Swedish left on the English page {path}"
        assert response.headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        # Every form that posts carries the token; a GET form (the access log's filter)
        # posts nothing and never puts the token into a URL.
        if body.count("<form") > body.count('<form method="get"'):
            assert pages.token in body, f"form without CSRF token on {path}"
        elif "<form" in body:
            assert pages.token not in body, path
    preview = pages.post(
        "/text",
        {
            "action": "preview",
            "expected_major": "1",
            "text_sv": current_body(host, tenant, "sv") + "\nNy rad.\n",
            "text_en": current_body(host, tenant, "en"),
        },
        lang=lang,
    )
    assert preview.status_code == 200
    assert ("Kontrollera dina ändringar" if lang == "sv" else "Check your changes") in html(preview)


def test_pages_need_a_signed_in_practitioner_of_an_active_practice(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    anonymous = Pages(host, tenant)
    anonymous.staff = None  # type: ignore[assignment]
    for path in ("/", "/setup", "/text", "/batch", f"/clients/{client}/obtain"):
        assert anonymous.get(path).status_code == 404
    other = host.new_tenant()  # never activated
    response = Pages(host, other).get("/setup", lang="en")
    assert response.status_code == 404
    assert "Activate it in the app menu first" in html(response)


def test_get_and_head_never_write(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    give(host, tenant, client)
    pages = Pages(host, tenant)
    [text_id, *_] = text_ids(host, tenant)
    with count_statements(host.engine) as statements:
        for path in MARKERS:
            url = path.format(c=client, t=text_id)
            assert pages.get(url).status_code == 200
            assert pages.client.head(P + url).status_code == 200
    writes = [
        s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    # The one accepted write: the access-log row of each GET (never HEAD) of a page that
    # shows a client's consent history.
    audited = [p for p in MARKERS if p.endswith("/history")]
    logged = [s for s in writes if s.lstrip().startswith("INSERT INTO samtycke_access_log")]
    assert len(audited) == 1 and len(logged) == len(audited)
    assert [s for s in writes if s not in logged] == []


# -- CSRF and tenant scoping ----------------------------------------------------------------------


def _posts(client: str) -> list[tuple[str, dict[str, str]]]:
    return [
        (
            "/setup",
            {
                "step": "2",
                "action": "save",
                "expected_major": "1",
                "text_sv": "Helt ny text om hur vi hanterar dina uppgifter, tack.",
            },
        ),
        (
            "/setup",
            {
                "step": "3",
                "require_consent_for_online_booking": "yes",
                "request_link_days": "10",
                "validity_days": "30",
            },
        ),
        (
            f"/clients/{client}/obtain",
            {"action": "record", "method": "paper", "given_on": "2026-11-20"},
        ),
        (f"/clients/{client}/obtain", {"action": "send"}),
        (f"/clients/{client}/withdraw", {"action": "withdraw"}),
        (f"/clients/{client}/withdraw", {"action": "revoke"}),
        (
            "/text",
            {
                "action": "save",
                "kind": "content",
                "expected_major": "1",
                "text_sv": "Helt ny text om hur vi hanterar dina uppgifter, tack.",
            },
        ),
        ("/batch", {}),
    ]


def test_every_post_without_a_valid_csrf_token_is_refused_and_changes_nothing(
    host: TestHost,
) -> None:
    tenant = set_up(host)
    other = set_up(host)
    client = host.new_client(tenant)
    give(host, tenant, client)
    pages = Pages(host, tenant)
    foreign_token = Pages(host, other).token
    other_staff = session_csrf_token(host.app_secret("samtycke"), pages.session,
                                     ("staff", tenant, "s2"))
    before = snapshot(host, tenant)
    for path, data in _posts(client):
        for token in (None, "", "forged-token", foreign_token, other_staff, pages.token + "x"):
            response = pages.post(path, data, token=token)
            assert response.status_code == 403, (path, token)
            assert t("sv", "You are not allowed to do this.") in html(response)
    assert snapshot(host, tenant) == before
    # The same posts with the right token do work (so the refusals above were about CSRF).
    assert pages.post(*_posts(client)[2]).status_code == 303


def test_another_practices_clients_and_texts_are_not_found_and_untouched(host: TestHost) -> None:
    mine = set_up(host)
    theirs = set_up(host, name="Annan praktik")
    their_client = host.new_client(theirs, name="Bertil Berg")
    give(host, theirs, their_client, note="deras anteckning")
    their_text = text_ids(host, theirs)[0]
    pages = Pages(host, mine)
    before_theirs, before_mine = snapshot(host, theirs), snapshot(host, mine)
    for path in ("obtain", "withdraw", "history"):
        response = pages.get(f"/clients/{their_client}/{path}")
        assert response.status_code == 404
        assert "Bertil" not in html(response)
    for path, data in _posts(their_client):
        if path.startswith("/clients/"):
            assert pages.post(path, data).status_code == 404, path
    response = pages.get(f"/texts/{their_text}")
    assert response.status_code == 404
    assert "deras" not in html(response)
    for bad in (
        "/texts/0",
        "/texts/99999999999999999999",
        "/clients/..%2Fx/obtain",
        "/clients/%3Cscript%3E/history",
        "/clients/nobody/history",
    ):
        assert pages.get(bad).status_code == 404, bad
    assert snapshot(host, theirs) == before_theirs
    assert snapshot(host, mine) == before_mine


# -- activation wizard (F2) -----------------------------------------------------------------------


def test_wizard_from_activation_to_done_changes_the_settings(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant)  # from the app menu: no settings yet
    assert practice_row(host, tenant).setup_complete is False
    pages = Pages(host, tenant)
    client = host.new_client(tenant)

    first = html(pages.get("/setup"))
    assert 'aria-current="step">Om appen' in first
    assert "standardtext" in first
    # Pages that ask clients send the practitioner to the wizard first.
    assert pages.get(f"/clients/{client}/obtain").headers["Location"] == f"{P}/setup"

    step2 = html(pages.get("/setup?step=2"))
    assert "Ansvaret" in step2 or "ansvarig" in step2
    assert "Standardtexten ber bara om det som kräver samtycke" in step2
    assert 'name="text_sv"' in step2 and 'name="text_en"' in step2
    # Keeping the default text publishes nothing.
    kept = pages.post(
        "/setup",
        {"step": "2", "action": "keep", "expected_major": "1", "text_sv": "ändrat men inte sparat"},
    )
    assert kept.status_code == 303 and kept.headers["Location"].endswith("step=3&done=text_kept")
    assert versions(host, tenant) == [("en", 1, 0, "initial"), ("sv", 1, 0, "initial")]
    # A too short text is refused with a sentence, and nothing is saved.
    short = pages.post(
        "/setup", {"step": "2", "action": "save", "expected_major": "1", "text_sv": "Kort."}
    )
    assert short.status_code == 400
    assert "mellan 20 och" in html(short)
    assert len(versions(host, tenant)) == 2
    # Saving an edit publishes a correction of version 1 (only the edited language).
    edited = current_body(host, tenant, "sv").replace("Frågor?", "Har du frågor?")
    saved = pages.post(
        "/setup",
        {
            "step": "2",
            "action": "save",
            "expected_major": "1",
            "text_sv": edited,
            "text_en": current_body(host, tenant, "en"),
        },
    )
    assert saved.status_code == 303
    assert saved.headers["Location"] == f"{P}/setup?step=3&done=text_saved"
    assert versions(host, tenant)[-1] == ("sv", 1, 1, "correction")
    assert "Har du frågor?" in current_body(host, tenant, "sv")

    step3 = html(pages.get("/setup?step=3&done=text_saved"))
    assert "sparades som en rättelse" in step3  # the confirmation
    assert "7.4" in step3
    assert "standardtexten ber inte om samtycke till dem" in step3  # same line as the text
    assert not re.search(
        r'name="require_consent_for_online_booking" value="(yes|no)"[^>]* checked', step3
    )
    # The gating choice is a decision: without it nothing is stored.
    undecided = pages.post(
        "/setup", {"step": "3", "ask_new_clients": "yes", "request_link_days": "14"}
    )
    assert undecided.status_code == 400
    assert "Välj om klienter måste samtycka" in html(undecided)
    bad_days = pages.post(
        "/setup",
        {
            "step": "3",
            "require_consent_for_online_booking": "no",
            "request_link_days": "14",
            "validity_days": "-3",
        },
    )
    assert bad_days.status_code == 400 and "3650" in html(bad_days)
    assert practice_row(host, tenant).setup_complete is False

    done = pages.post(
        "/setup",
        {
            "step": "3",
            "ask_new_clients": "yes",
            "require_consent_for_online_booking": "yes",
            "email_request_to_new_clients": "yes",
            "request_link_days": "21",
            "validity_days": "365",
            "pause_days": "90",
        },
    )
    assert done.status_code == 303
    assert done.headers["Location"] == f"{P}/setup?step=4&done=setup_done"
    row = practice_row(host, tenant)
    assert row.setup_complete is True
    assert practices.settings_of(row) == PracticeSettings(
        ask_new_clients=True,
        ask_clients_without_consent=False,
        require_consent_for_online_booking=True,
        email_request_to_new_clients=True,
        email_request_after_staff_booking=False,
        validity_days=365,
        request_link_days=21,
        pause_days=90,
    )
    final = html(pages.get("/setup?step=4&done=setup_done"))
    assert f'href="{P}/text"' in final and f'href="{P}/"' in final

    # Reached again after set-up: the current settings, changeable.
    again = html(pages.get("/setup"))
    assert "Inställningar för Samtycke" in again
    assert re.search(r'value="yes"[^>]* checked', again)
    assert 'value="365"' in again and 'value="21"' in again
    changed = pages.post(
        "/setup",
        {
            "step": "3",
            "require_consent_for_online_booking": "no",
            "ask_clients_without_consent": "yes",
            "request_link_days": "14",
        },
    )
    assert changed.headers["Location"] == f"{P}/setup?done=settings_saved"
    settings = practices.settings_of(practice_row(host, tenant))
    assert settings.require_consent_for_online_booking is False
    assert settings.ask_clients_without_consent is True and settings.validity_days is None
    # After set-up the wizard's text step only shows the text and points to the editor.
    assert 'name="text_sv"' not in html(pages.get("/setup?step=2"))
    assert (
        pages.post(
            "/setup", {"step": "2", "action": "save", "expected_major": "1", "text_sv": "x" * 40}
        ).headers["Location"]
        == f"{P}/text"
    )
    assert versions(host, tenant)[-1] == ("sv", 1, 1, "correction")


# -- obtain consent (F5) --------------------------------------------------------------------------


def test_manual_record_creates_exactly_one_given_event(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    pages = Pages(host, tenant)
    page = html(pages.get(f"/clients/{client}/obtain"))
    assert "Ingen samtycke" in page or "Inget samtycke" in page
    assert 'for="given_on"' in page and 'id="given_on"' in page and 'max="2026-11-30"' in page
    assert "Samtycke till hälsouppgifter för din behandling" in page  # the text that will be shown

    response = pages.post(
        f"/clients/{client}/obtain",
        {
            "action": "record",
            "method": "verbal",
            "given_on": "2026-11-20",
            "note": "Sa ja i telefon.",
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"{P}/clients/{client}/obtain?done=recorded"
    [event] = events(host, tenant)
    assert (event.state, event.channel, event.method, event.actor) == (
        "given",
        "manual",
        "verbal",
        "staff:s1",
    )
    assert event.given_at == WHEN
    assert event.occurred_at == host.now()
    assert event.text_major == 1 and event.language == "sv"
    [entry] = consent.history(host, tenant, client)
    assert entry.note == "Sa ja i telefon."
    after = html(pages.get(f"/clients/{client}/obtain?done=recorded"))
    assert "Samtycket registrerades." in after
    assert 'data-status="valid"' in after


def _seen_seq(page: str) -> str:
    found = re.search(r'name="seen_seq" value="(\d+)"', page)
    assert found is not None
    return found.group(1)


def test_a_record_form_posted_twice_records_once(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    pages = Pages(host, tenant)
    form = {
        "action": "record",
        "method": "paper",
        "given_on": "2026-11-20",
        "seen_seq": _seen_seq(html(pages.get(f"/clients/{client}/obtain"))),
    }
    first = pages.post(f"/clients/{client}/obtain", form)
    second = pages.post(f"/clients/{client}/obtain", form)
    assert first.headers["Location"].endswith("done=recorded")
    assert second.headers["Location"].endswith("done=unchanged")
    assert [e.state for e in events(host, tenant)] == ["given"]
    assert "Inget mer registrerades" in html(pages.get(f"/clients/{client}/obtain?done=unchanged"))
    # A fresh form (new seen_seq) records again, as a renewal.
    form["seen_seq"] = _seen_seq(html(pages.get(f"/clients/{client}/obtain")))
    assert pages.post(f"/clients/{client}/obtain", form).headers["Location"].endswith("recorded")
    assert [e.state for e in events(host, tenant)] == ["given", "renewed"]


def test_a_double_click_at_the_same_moment_records_once(host: TestHost) -> None:
    import threading

    tenant = set_up(host)
    client = host.new_client(tenant)
    form = {
        "action": "record",
        "method": "verbal",
        "given_on": "2026-11-20",
        "seen_seq": _seen_seq(html(Pages(host, tenant).get(f"/clients/{client}/obtain"))),
    }
    host.session().rollback()
    barrier = threading.Barrier(2)
    locations: list[str] = []

    def click(other: TestHost, pages: Pages) -> None:
        try:
            barrier.wait(timeout=30)
            locations.append(pages.post(f"/clients/{client}/obtain", form).headers["Location"])
        finally:
            other.close()

    # Each click has its own session and connection, like a second request.  The pages
    # (their URL map, which werkzeug compiles with ``ast``) are built before the threads
    # start: CPython 3.11.7's parser can fail when two threads parse at once ("AST
    # constructor recursion depth mismatch"), and that is not what this test is about.
    clickers = []
    for _ in range(2):
        other = TestHost(host.engine)
        other.clients, other.practices, other.clock = host.clients, host.practices, host.clock
        clickers.append((other, Pages(other, tenant)))
    threads = [threading.Thread(target=click, args=pair) for pair in clickers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(loc.rsplit("=", 1)[1] for loc in locations) == ["recorded", "unchanged"]
    assert [e.state for e in events(host, tenant)] == ["given"]


def test_manual_record_today_is_not_in_the_future(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    host.clock = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    response = Pages(host, tenant).post(
        f"/clients/{client}/obtain",
        {"action": "record", "method": "paper", "given_on": "2026-11-29"},
    )
    assert response.status_code == 303
    [event] = events(host, tenant)
    assert event.given_at == host.now()  # never after the moment it was recorded


@pytest.mark.parametrize(
    ("data", "sentence"),
    [
        ({"method": "paper", "given_on": "2026-12-24"}, "kan inte ligga i framtiden"),
        ({"method": "paper", "given_on": "2010-01-01"}, "mer än tio år sedan"),
        ({"method": "paper", "given_on": "24/12/2026"}, "år-månad-dag"),
        ({"method": "paper", "given_on": ""}, "Ange datumet"),
        ({"method": "telepathy", "given_on": "2026-11-20"}, "Välj hur klienten"),
        (
            {"method": "paper", "given_on": "2026-11-20", "note": "x" * 2001},
            "Anteckningen är för lång",
        ),
    ],
)
def test_manual_record_with_bad_input_says_what_to_do_and_writes_nothing(
    host: TestHost, data: dict[str, str], sentence: str
) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    response = Pages(host, tenant).post(f"/clients/{client}/obtain", {"action": "record", **data})
    assert response.status_code == 400
    body = html(response)
    assert sentence in body
    assert 'class="sp-error-text"' in body and 'role="alert"' in body
    assert 'aria-invalid="true"' in body or 'aria-describedby="method-error"' in body
    assert events(host, tenant) == []


def test_staff_without_permission_cannot_record_and_nothing_is_written(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    give(host, tenant, client)
    assistant = StaffContext(ref=StaffRef("s9"), name="Assistent", can_record_consent=False)
    pages = Pages(host, tenant, assistant)
    other = host.new_client(tenant)
    page = html(pages.get(f"/clients/{other}/obtain"))
    assert 'value="record"' not in page
    assert "behörighet" in page
    before = snapshot(host, tenant)
    refused = pages.post(
        f"/clients/{other}/obtain",
        {"action": "record", "method": "paper", "given_on": "2026-11-20"},
    )
    assert refused.status_code == 403
    assert "behörighet" in html(refused)
    revoked = pages.post(f"/clients/{client}/withdraw", {"action": "revoke"})
    assert revoked.status_code == 403
    assert snapshot(host, tenant) == before
    # Recording the client's own withdrawal is not blocked by that permission.
    assert pages.post(f"/clients/{client}/withdraw", {"action": "withdraw"}).status_code == 303
    assert events(host, tenant)[-1].state == "withdrawn"


# -- withdrawal (F15) -----------------------------------------------------------------------------


def test_withdrawal_and_ending_by_the_practice(host: TestHost) -> None:
    tenant = set_up(host)
    anna, bo = host.new_client(tenant), host.new_client(tenant, name="Bo")
    give(host, tenant, anna)
    give(host, tenant, bo)
    pages = Pages(host, tenant)
    page = html(pages.get(f"/clients/{anna}/withdraw"))
    assert "Klienten återkallar" in page and "Mottagningen avslutar" in page
    form = {"action": "withdraw", "note": "Ringde och sa nej.", "seen_seq": _seen_seq(page)}
    response = pages.post(f"/clients/{anna}/withdraw", form)
    assert response.status_code == 303
    assert response.headers["Location"] == f"{P}/clients/{anna}/history?done=withdrawn"
    withdrawn = events(host, tenant)[-1]
    assert (withdrawn.state, withdrawn.channel, withdrawn.method, withdrawn.actor) == (
        "withdrawn",
        "practitioner",
        "reported_by_staff",
        "staff:s1",
    )
    assert "Återkallelsen registrerades" in html(
        pages.get(f"/clients/{anna}/history?done=withdrawn")
    )
    # The same form again (double click): nothing more written, the history as it is.
    twice = pages.post(f"/clients/{anna}/withdraw", form)
    assert twice.headers["Location"] == f"{P}/clients/{anna}/history?done=unchanged"
    # Without the form's marker the service itself refuses: a calm 409, nothing written.
    again = pages.post(f"/clients/{anna}/withdraw", {"action": "withdraw"})
    assert again.status_code == 409
    assert "inget givet samtycke" in html(again).lower()
    assert "det finns inget att återkalla" in html(pages.get(f"/clients/{anna}/withdraw"))
    ended = pages.post(
        f"/clients/{bo}/withdraw", {"action": "revoke", "note": "Registrerat av misstag"}
    )
    assert ended.status_code == 303
    assert [e.state for e in events(host, tenant)] == ["given", "given", "withdrawn", "revoked"]
    assert consent.client_status(host, tenant, bo).status.value == "revoked"


# -- history (F10) --------------------------------------------------------------------------------


def test_history_lists_every_event_with_evidence_and_the_text_shown(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    hooks = host.hooks()
    pages = Pages(host, tenant)
    pages.post(
        f"/clients/{client}/obtain",
        {
            "action": "record",
            "method": "other_system",
            "given_on": "2026-11-01",
            "note": "Från gamla journalen",
        },
    )
    host.advance(hours=1)
    pages.post(f"/clients/{client}/withdraw", {"action": "withdraw"})
    host.advance(hours=1)
    text_id = practice_texts.current_text(
        host.session(), practices.require_practice(host.session(), tenant), "sv"
    ).id
    host.session().rollback()
    sub = submission(tenant, client, ticked=True, text_id=text_id)
    assert hooks.submit_check(sub) == []
    hooks.submitted(sub, BookingRef("b-77"), ClientRef(client))
    host.session().commit()
    assert len(events(host, tenant)) == 3

    body = html(pages.get(f"/clients/{client}/history"))
    for sv in (
        "Samtycke givet",
        "Samtycket återkallat av klienten",
        "Onlinebokning",
        "Registrerat av personal",
        "I ett annat system",
        "Från gamla journalen",
        "203.0.113.0/24",
        "Mozilla/5.0 (test)",
        "b-77",
        "2026-11-01",
        "2026-11-29 12:00 UTC",
        "Du (Dr. Berg)",
        "Klienten",
        "#1",
        "#2",
        "#3",
    ):
        assert sv in body, sv
    assert "203.0.113.77" not in body
    assert body.count(f'href="{P}/texts/{text_id}"') == 3
    full = pages.get(f"/texts/{text_id}")
    assert full.status_code == 200
    text = host.session().get(TextVersion, text_id)
    assert text is not None and text.sha256 in html(full)
    # The host no longer knows the client (erased there): the proof stays readable,
    # the pages that act on a client are gone.
    del host.clients[(tenant, client)]
    kept = pages.get(f"/clients/{client}/history")
    assert kept.status_code == 200
    assert "finns inte längre i mottagningens klientregister" in html(kept)
    assert "#3" in html(kept)
    assert pages.get(f"/clients/{client}/obtain").status_code == 404


# -- the text editor (F11) ------------------------------------------------------------------------


def _clients_with_consent(host: TestHost, tenant: str, n: int) -> list[str]:
    clients = [host.new_client(tenant, name=f"Klient {i}") for i in range(n)]
    for c in clients:
        give(host, tenant, c)
    return clients


def test_preview_shows_the_diff_and_how_many_must_consent_again(host: TestHost) -> None:
    tenant = set_up(host)
    _clients_with_consent(host, tenant, 3)
    host.new_client(tenant, name="Utan samtycke")
    pages = Pages(host, tenant)
    old = current_body(host, tenant, "sv")
    new = old.replace(
        "Vi säljer aldrig dina uppgifter.", "Vi delar uppgifter med vår försäkringspartner."
    )
    before = snapshot(host, tenant)
    for lang, sentence in (
        ("sv", "3 klienter som har samtyckt nu behöver samtycka igen."),
        ("en", "3 clients who have consented now will need to consent again."),
    ):
        response = pages.post(
            "/text",
            {
                "action": "preview",
                "expected_major": "1",
                "text_sv": new,
                "text_en": current_body(host, tenant, "en"),
            },
            lang=lang,
        )
        assert response.status_code == 200
        body = html(response)
        assert sentence in body
        assert re.search(r"<del>.*Vi säljer aldrig dina uppgifter\.</del>", body)
        assert re.search(r"<ins>.*Vi delar uppgifter med vår försäkringspartner\.</ins>", body)
        assert 'name="kind" value="correction"' in body and 'name="kind" value="content"' in body
        assert "1.1" in body and "2.0" in body
    assert snapshot(host, tenant) == before  # a preview saves nothing
    unchanged = pages.post("/text", {"action": "preview", "expected_major": "1", "text_sv": old})
    assert unchanged.status_code == 400
    assert "Du har inte ändrat texten" in html(unchanged)
    back = pages.post("/text", {"action": "edit", "expected_major": "1", "text_sv": new})
    assert back.status_code == 200 and "försäkringspartner" in html(back)


def test_correction_keeps_consents_valid(host: TestHost) -> None:
    tenant = set_up(host)
    _clients_with_consent(host, tenant, 2)
    pages = Pages(host, tenant)
    fixed = current_body(host, tenant, "en").replace("Questions?", "Any questions?")
    response = pages.post(
        "/text",
        {
            "action": "save",
            "kind": "correction",
            "expected_major": "1",
            "reason": "Stavfel",
            "text_en": fixed,
            "text_sv": current_body(host, tenant, "sv"),
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"{P}/text?done=correction"
    assert versions(host, tenant)[-1] == ("en", 1, 1, "correction")
    assert len(versions(host, tenant)) == 3  # Swedish, unchanged, got no new version
    assert practice_row(host, tenant).current_major == 1
    assert valid_count(host, tenant) == 2
    page = html(pages.get("/text?done=correction"))
    assert "Rättelsen sparades" in page and "Stavfel" in page and "Rättelse" in page


def test_content_change_outdates_every_consent_at_once(host: TestHost) -> None:
    tenant = set_up(host)
    [anna, *_] = _clients_with_consent(host, tenant, 2)
    pages = Pages(host, tenant)
    new_sv = (
        current_body(host, tenant, "sv") + "\nVi använder nu också ett journalsystem i molnet.\n"
    )
    form = {
        "action": "save",
        "kind": "content",
        "expected_major": "1",
        "reason": "Nytt journalsystem",
        "text_sv": new_sv,
        "text_en": current_body(host, tenant, "en"),
    }
    response = pages.post("/text", form)
    assert response.status_code == 303
    assert response.headers["Location"] == f"{P}/text?done=content&affected=2"
    assert practice_row(host, tenant).current_major == 2
    assert valid_count(host, tenant) == 0
    # Both languages belong to the new content version, so English readers see a text too.
    assert [v for v in versions(host, tenant) if v[1] == 2] == [
        ("en", 2, 0, "content"),
        ("sv", 2, 0, "content"),
    ]
    assert 'data-status="outdated"' in html(pages.get(f"/clients/{anna}/obtain"))
    listing = html(pages.get("/text"))
    assert "Nytt journalsystem" in listing and "Innehållsändring" in listing
    # The same save posted again (double click): already saved, no version 3.0.
    before = snapshot(host, tenant)
    again = pages.post("/text", form)
    assert again.headers["Location"] == f"{P}/text?done=already"
    assert snapshot(host, tenant) == before
    assert "redan den aktuella texten" in html(pages.get("/text?done=already"))


def test_save_needs_the_kind_and_refuses_a_stale_editor(host: TestHost) -> None:
    tenant = set_up(host)
    pages = Pages(host, tenant)
    new_sv = current_body(host, tenant, "sv") + "\nTillägg.\n"
    before = snapshot(host, tenant)
    undecided = pages.post("/text", {"action": "save", "expected_major": "1", "text_sv": new_sv})
    assert undecided.status_code == 400
    assert "Välj om detta är en rättelse eller en innehållsändring" in html(undecided)
    assert snapshot(host, tenant) == before
    # Someone else publishes a content change meanwhile.
    practice_texts.publish_text(
        host,
        tenant,
        bodies={"sv": new_sv},
        kind="content",
        reason=None,
        actor="staff:s2",
        expected_major=1,
    )
    host.session().commit()
    before = snapshot(host, tenant)
    stale = pages.post(
        "/text",
        {
            "action": "save",
            "kind": "correction",
            "expected_major": "1",
            "text_sv": new_sv + "Mer.\n",
        },
    )
    assert stale.status_code == 409
    assert "ändrades av någon annan" in html(stale)
    assert snapshot(host, tenant) == before


# -- script and markup in every practitioner- or client-supplied string ---------------------------


def test_script_payloads_are_escaped_everywhere(host: TestHost) -> None:
    tenant = set_up(host, name=f"Klinik {XSS}")
    client = host.new_client(tenant, name=f"Eva {XSS}", email="eva@example.org")
    pages = Pages(host, tenant)
    assert (
        pages.post(
            f"/clients/{client}/obtain",
            {"action": "record", "method": "other", "given_on": "2026-11-20", "note": f"not {XSS}"},
        ).status_code
        == 303
    )
    evil = (
        current_body(host, tenant, "sv")
        + f"\n{XSS}\n<img src=x onerror=alert(2)>\n[klick](javascript:alert(3))\n"
    )
    preview = pages.post(
        "/text", {"action": "preview", "expected_major": "1", "text_sv": evil, "reason": XSS}
    )
    body = html(preview)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    saved = pages.post(
        "/text",
        {
            "action": "save",
            "kind": "correction",
            "expected_major": "1",
            "text_sv": evil,
            "reason": f"varför {XSS}",
        },
    )
    assert saved.status_code == 303
    new_id = text_ids(host, tenant)[-1]
    for path in (
        "/",
        "/setup?step=2",
        "/setup?step=3",
        "/text",
        "/batch",
        f"/texts/{new_id}",
        f"/clients/{client}/obtain",
        f"/clients/{client}/withdraw",
        f"/clients/{client}/history",
    ):
        page = html(pages.get(path))  # asserts no unescaped <script
        assert "onerror=alert" not in page.replace("&lt;img src=x onerror=alert(2)&gt;", "")
        assert 'href="javascript:' not in page
    assert "Eva &lt;script&gt;" in html(pages.get(f"/clients/{client}/history"))
    assert "Klinik &lt;script&gt;" in html(pages.get("/"))


# -- e-mail requests: samtycke_plugin.email -------------------------------------------------------------


def test_send_a_request_by_email(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    pages = Pages(host, tenant)
    response = pages.post(f"/clients/{client}/obtain", {"action": "send"})
    assert response.status_code == 303
    assert response.headers["Location"] == f"{P}/clients/{client}/obtain?done=sent"
    host.session().rollback()
    [request] = (
        host.session()
        .scalars(select(ConsentRequest).where(ConsentRequest.tenant_ref == tenant))
        .all()
    )
    assert (request.client_ref, request.created_by) == (client, "staff:s1")
    assert "på väg till klientens e-postadress" in html(
        pages.get(f"/clients/{client}/obtain?done=sent")
    )


def test_send_without_a_usable_address_says_what_to_do(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant, email=None)
    pages = Pages(host, tenant)
    before = snapshot(host, tenant)
    response = pages.post(f"/clients/{client}/obtain", {"action": "send"})
    assert response.status_code == 400
    body = html(response)
    assert "Förfrågan skickades inte." in body
    from samtycke_plugin.email.addresses import NO_ADDRESS

    assert str(escape(t("sv", NO_ADDRESS))) in body
    english = pages.post(f"/clients/{client}/obtain", {"action": "send"}, lang="en")
    assert "The request was not sent. The client has no e-mail address." in html(english)
    assert 'id="email-error"' in html(english)
    host.clients[(tenant, client)] = ClientInfo(
        ref=client, name="Anna", email="inte en adress", locale="sv"
    )
    invalid = pages.post(f"/clients/{client}/obtain", {"action": "send"}, lang="en")
    assert invalid.status_code == 400
    assert "e-mail address is not valid" in html(invalid)
    assert snapshot(host, tenant) == before


def test_batch_request_counts_and_a_double_click_asks_nobody_twice(batch_host: TestHost) -> None:
    """The POST records a job and redirects to its progress page without queueing any
    mail; a second press while it is unfinished finds the same job; the relay's job
    runner asks each client once, and the page then shows the counts."""
    host = batch_host
    tenant = set_up(host)
    _clients_with_consent(host, tenant, 2)
    for i in range(3):
        host.new_client(tenant, name=f"Ny {i}", email=f"ny{i}@example.org")
    host.new_client(tenant, name="Utan adress", email=None)
    pages = Pages(host, tenant)
    page = html(pages.get("/batch"))
    assert re.search(r"Klienter utan giltigt samtycke</dt><dd>4</dd>", page)
    first = pages.post("/batch", confirm_key(pages, page))
    assert first.status_code == 303
    assert re.fullmatch(rf"{P}/batch/jobs/\d+", first.headers["Location"])
    location = first.headers["Location"].removeprefix(P)
    host.session().rollback()
    assert host.session().scalar(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.tenant_ref == tenant, OutboxMessage.kind != "receipt"
    )) == 0  # the request did not queue any mail (the paper consents' receipts are older)
    queued_page = pages.get(location)
    queued = html(queued_page)
    # Reloaded by a header: in a host's layout the app has no <head> of its own.
    assert 'data-job-state="queued"' in queued and queued_page.headers["Refresh"] == "3"
    assert "Tillbaka till Fråga klienter" in queued
    busy = html(pages.get("/batch"))
    assert f'{P}{location}"' in busy and "type=\"submit\"" not in busy  # no second button
    second = pages.post("/batch", confirm_key(pages, page))  # a double click
    assert second.headers["Location"] == P + location  # the same job
    host.session().rollback()
    assert jobs.run_pending(host, tenant=tenant, chunk_size=2) == 1
    assert jobs.run_pending(host, tenant=tenant) == 0
    done_page = pages.get(location)
    done = html(done_page)
    assert 'data-job-state="done"' in done and "Refresh" not in done_page.headers
    assert "Skickade förfrågningar: 3." in done
    assert "Hade redan giltigt samtycke (tillfrågades inte): 2" in done
    assert "Ingen användbar e-postadress (tillfrågades inte): 1" in done
    en = pages.get(location, lang="en").get_data(as_text=True)
    assert "Requests sent: 3." in en and "Back to Ask clients" in en
    host.session().rollback()
    assert complete_waiting_requests(host, tenant) == 3  # what the relay does as it sends
    assert (
        host.session().scalar(
            select(func.count())
            .select_from(ConsentRequest)
            .where(ConsentRequest.tenant_ref == tenant, ConsentRequest.purpose == "consent")
        )
        == 3  # consent links (the paper consents' receipts have withdrawal links)
    )
    # Pressed again after the job is done: a new job, which asks nobody twice.
    third = pages.post("/batch", confirm_key(pages))
    assert third.headers["Location"] != P + location
    host.session().rollback()
    assert jobs.run_pending(host, tenant=tenant) == 1
    again = html(pages.get(third.headers["Location"].removeprefix(P)))
    assert "Skickade förfrågningar: 0." in again
    assert "Hade redan en obesvarad förfrågan (tillfrågades inte igen): 3" in again


def test_the_progress_page_is_scoped_to_the_practice_and_changes_nothing(
    batch_host: TestHost,
) -> None:
    host = batch_host
    tenant, other = set_up(host), set_up(host, "Annan klinik")
    host.new_client(tenant, email="a@example.org")
    pages = Pages(host, tenant)
    mine = pages.post("/batch", confirm_key(pages)).headers["Location"].removeprefix(P)
    theirs = Pages(host, other, session="sign-in-2")
    assert theirs.get(mine).status_code == 404
    assert theirs.get("/batch/jobs/99999999999").status_code == 404
    assert theirs.get("/batch/jobs/99999999999999999999999").status_code == 404
    assert theirs.post(mine, {}).status_code == 405  # GET only
    for _ in range(2):
        assert Pages(host, tenant).get(mine).status_code == 200
    host.session().rollback()
    job_id = int(mine.rsplit("/", 1)[1])
    assert jobs.job_progress(host, tenant, job_id).state == "queued"  # type: ignore[union-attr]
    assert jobs.job_progress(host, other, job_id) is None


# -- in a real browser: no JavaScript needed, nothing injected runs, fits a phone ------------------


@pytest.fixture
def served(sqlite_engine: Any) -> Any:
    """The pages served over HTTP on a loopback port, as a host would mount them."""
    import threading

    from werkzeug.serving import make_server

    host = TestHost(sqlite_engine)
    hooks = host.hooks()
    tenant = host.new_tenant(f"Klinik {XSS}")
    host.activate(hooks, tenant)  # from the app menu: the wizard is still to do
    pages = Pages(host, tenant)
    server = make_server("127.0.0.1", 0, pages.client.application, threaded=False)
    host.base_url = f"http://127.0.0.1:{server.port}"  # the browser posts from this origin
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}{P}", host, tenant
    finally:
        server.shutdown()
        thread.join(timeout=10)
        host.close()


@pytest.mark.e2e
def test_in_chromium_without_javascript_and_with_script_payloads(served: Any) -> None:
    base, host, tenant = served
    client = host.new_client(tenant, name=f"Eva {XSS}")
    sync_api = playwright_sync_api()
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            # 1. The whole wizard and a manual record with JavaScript switched off.
            nojs = browser.new_context(java_script_enabled=False, locale="sv-SE")
            page = nojs.new_page()
            page.goto(f"{base}/setup")
            page.get_by_role("link", name="Nästa: samtyckestexten").click()
            box = page.get_by_label("Text på svenska")
            box.fill(box.input_value().replace("Frågor?", f"Har du frågor? {XSS}"))
            page.get_by_role("button", name="Spara mina ändringar och fortsätt").click()
            assert "sparades som en rättelse" in page.inner_text("main")
            page.get_by_label("Kräv samtycke för att slutföra en onlinebokning").check()
            page.get_by_label("Samtycket upphör efter (dagar, frivilligt)").fill("365")
            page.get_by_role("button", name="Spara och slutför").click()
            assert "Klart" in page.inner_text("main")
            settings = practices.settings_of(practice_row(host, tenant))
            assert settings.require_consent_for_online_booking is True
            assert settings.validity_days == 365

            page.goto(f"{base}/clients/{client}/obtain")
            page.get_by_label("På papper").check()
            page.get_by_label("Datum då klienten gav sitt samtycke").fill("2026-11-20")
            page.get_by_label("Anteckning (frivillig)").fill(f"Papper {XSS}")
            page.get_by_role("button", name="Lägg in samtycket").click()
            assert "Samtycket registrerades." in page.inner_text("main")
            [event] = events(host, tenant)
            assert (event.state, event.method, event.given_at) == ("given", "paper", WHEN)
            nojs.close()

            # 2. With JavaScript on: nothing injected exists in the DOM or runs; a phone fits.
            js = browser.new_context(locale="sv-SE", viewport={"width": 360, "height": 740})
            page = js.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            [*_, text_id] = text_ids(host, tenant)
            for path in (
                "/",
                "/setup?step=2",
                "/setup",
                "/text",
                "/batch",
                f"/texts/{text_id}",
                f"/clients/{client}/obtain",
                f"/clients/{client}/history",
                f"/clients/{client}/withdraw",
            ):
                page.goto(base + path)
                assert page.locator("script, [onerror], a[href^='javascript:']").count() == 0
                fits = page.evaluate(
                    "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
                )
                assert fits, f"{path} scrolls sideways on a phone"
            assert "<script>alert(1)</script>" in page.inner_text("main")  # shown as text
            page.keyboard.press("Tab")
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineWidth")
            assert outline == "3px"
            assert dialogs == []
            js.close()
        finally:
            browser.close()


def test_back_link_to_the_platform_only_for_local_paths(host: TestHost) -> None:
    tenant = set_up(host)
    page = html(Pages(host, tenant, home=("/clients", "Praktika")).get("/"))
    assert '<a href="/clients">← Tillbaka till Praktika</a>' in page
    assert "Tillbaka till" not in html(Pages(host, tenant).get("/"))
    for bad in (("//evil.example/x", "Evil"), ("https://evil.example", "Evil"), "/clients"):
        assert "Tillbaka till" not in html(Pages(host, tenant, home=bad).get("/"))
    english = html(Pages(host, tenant, home=("/", "Praktika <b>")).get("/", lang="en"))
    assert "← Back to Praktika &lt;b&gt;" in english

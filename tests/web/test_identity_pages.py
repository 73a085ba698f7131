"""The practitioner's pages and verified identity for online consent: the settings
page's choice of when online consent is confirmed by e-mail, and the client's history
showing an unconfirmed consent with what the booker typed."""

from __future__ import annotations

import re

import attrs
from hostkit import TestHost, submission
from sqlalchemy import select
from test_practice_pages import Pages, html, set_up

from hookspecs.types import BookingRef, ClientRef
from samtycke_plugin import practices
from samtycke_plugin.models import Practice, TextVersion

_SETTINGS = {"step": "3", "ask_new_clients": "yes", "require_consent_for_online_booking": "no",
             "request_link_days": "14", "validity_days": "", "pause_days": "365"}


def _mode(host: TestHost, tenant: str) -> str:
    host.session().rollback()
    row = host.session().get(Practice, tenant, populate_existing=True)
    assert row is not None
    return practices.settings_of(row).confirm_online_consent


def test_the_choice_is_shown_saved_and_checked(host: TestHost) -> None:
    tenant = set_up(host)
    pages = Pages(host, tenant)
    shown = html(pages.get("/setup?step=3"))
    assert "När måste klienter bekräfta samtycke" in shown
    assert re.search(r'value="on_mismatch"[^>]* checked', shown)
    assert "Only when the booker may be someone else" in html(pages.get("/setup?step=3",
                                                                         lang="en"))

    saved = pages.post("/setup", {**_SETTINGS, "confirm_online_consent": "always"})
    assert saved.status_code == 303
    assert _mode(host, tenant) == "always"
    assert re.search(r'value="always"[^>]* checked', html(pages.get("/setup?step=3")))

    kept = pages.post("/setup", _SETTINGS)  # an older page without the field keeps it
    assert kept.status_code == 303 and _mode(host, tenant) == "always"

    bad = pages.post("/setup", {**_SETTINGS, "confirm_online_consent": "sometimes"})
    assert bad.status_code == 400 and "Välj när klienter måste bekräfta" in html(bad)
    assert _mode(host, tenant) == "always"
    refused = pages.post("/setup", {**_SETTINGS, "confirm_online_consent": "on_mismatch"},
                         token=None)
    assert refused.status_code in (400, 403) and _mode(host, tenant) == "always"


def test_the_history_shows_an_unconfirmed_consent_and_what_the_booker_typed(
    host: TestHost,
) -> None:
    tenant = set_up(host, ask_clients_without_consent=True)
    client = host.new_client(tenant, name="Anna Svensson", email="anna@example.org")
    text_id = host.session().scalar(select(TextVersion.id).where(
        TextVersion.tenant_ref == tenant, TextVersion.language == "sv"))
    sub = attrs.evolve(submission(tenant, client, ticked=True, text_id=text_id),
                       booker_signed_in=False,
                       booker_name="Eva <b>Annan</b>")
    host.hooks().submitted(sub, BookingRef("b-1"), ClientRef(client))
    host.session().commit()
    pages = Pages(host, tenant)
    page = html(pages.get(f"/clients/{client}/history"))
    assert "väntar på klientens bekräftelse" in page
    assert "Eva &lt;b&gt;Annan&lt;/b&gt;" in page and "<b>Annan" not in page
    english = html(pages.get(f"/clients/{client}/history", lang="en"))
    assert "awaiting the client&#39;s confirmation" in english

"""The settings page's choice of when online consent is confirmed by e-mail."""

from __future__ import annotations

import re

from hostkit import TestHost
from test_practice_pages import Pages, html, set_up

from samtycke_plugin import practices
from samtycke_plugin.models import Practice

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

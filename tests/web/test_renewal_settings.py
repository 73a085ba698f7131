"""The settings page's renewal and reminder days: shown, saved, refused with a message
that says what to write, kept when an older form does not send them."""

from __future__ import annotations

from hostkit import TestHost
from test_practice_pages import P, Pages, html, practice_row, set_up

from samtycke_plugin import practices

BASE = {"step": "3", "require_consent_for_online_booking": "no", "request_link_days": "14",
        "validity_days": "365"}


def test_the_renewal_and_reminder_days_are_saved_and_checked(host: TestHost) -> None:
    tenant = set_up(host)
    pages = Pages(host, tenant)
    page = html(pages.get("/setup"))
    assert 'name="renew_days_before"' in page and 'value="30"' in page
    assert 'name="remind_after_days"' in page and 'value="7"' in page
    assert "Be klienter förnya sitt samtycke" in page
    english = html(pages.get("/setup", lang="en"))
    assert "Remind a client who has not answered" in english

    saved = pages.post("/setup", {**BASE, "renew_days_before": "14", "remind_after_days": "0"})
    assert saved.status_code == 303 and saved.headers["Location"] == f"{P}/setup?done=settings_saved"
    settings = practices.settings_of(practice_row(host, tenant))
    assert (settings.renew_days_before, settings.remind_after_days) == (14, 0)

    for field, value, message in (
        ("renew_days_before", "366", "ett heltal från 0 till 365"),
        ("renew_days_before", "-1", "ett heltal från 0 till 365"),
        ("remind_after_days", "91", "ett heltal från 0 till 90"),
        ("remind_after_days", "sju", "ett heltal från 0 till 90"),
    ):
        refused = pages.post("/setup", {**BASE, "renew_days_before": "14",
                                         "remind_after_days": "0", field: value})
        assert refused.status_code == 400, (field, value)
        body = html(refused)
        assert message in body and f'value="{value}"' in body
        settings = practices.settings_of(practice_row(host, tenant))
        assert (settings.renew_days_before, settings.remind_after_days) == (14, 0)

    # A form from before these fields keeps the practice's choice.
    older = pages.post("/setup", BASE)
    assert older.status_code == 303
    settings = practices.settings_of(practice_row(host, tenant))
    assert (settings.renew_days_before, settings.remind_after_days) == (14, 0)

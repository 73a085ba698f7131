"""The profile panel, rendered through its template: translated in both languages, the
actions that fit the client's status, links to the client's pages and the date consent
was given."""

from __future__ import annotations

import pytest
from hostkit import TestHost, staff

from samtycke_plugin import common, consent, roles
from samtycke_plugin.render import render

PREFIX = common.MOUNT_PREFIX


@pytest.mark.parametrize(
    ("locale", "title", "obtain", "withdraw", "history", "given"),
    [
        ("sv", "Samtycke", "Inhämta samtycke", "Registrera återkallelse",
         "Samtyckeshistorik", "Givet"),
        ("en", "Consent", "Obtain consent", "Record withdrawal", "Consent history", "Given"),
    ],
)
def test_the_panel_shows_the_actions_that_fit_the_status(
    host: TestHost, locale: str, title: str, obtain: str, withdraw: str, history: str,
    given: str,
) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    client = host.new_client(tenant)

    [panel] = hooks.profile_panels(tenant, client, staff(), locale)
    assert f">{title}</h2>" in panel.html
    assert f'href="{PREFIX}/clients/{client}/obtain">{obtain}</a>' in panel.html
    assert f'href="{PREFIX}/clients/{client}/history">{history}</a>' in panel.html
    assert withdraw not in panel.html and f"{given} " not in panel.html

    at = host.now()
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=at, note=None)
    host.session().commit()
    [panel] = hooks.profile_panels(tenant, client, staff(), locale)
    assert panel.tone == "ok" and 'data-status="valid"' in panel.html
    assert f'href="{PREFIX}/clients/{client}/withdraw">{withdraw}</a>' in panel.html
    assert f"{given} {at:%Y-%m-%d}." in panel.html
    assert obtain not in panel.html and "\ufffc" not in panel.html


def test_a_practice_not_set_up_is_sent_to_the_setup(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant)  # no settings: the activation wizard is not finished
    client = host.new_client(tenant)
    [panel] = hooks.profile_panels(tenant, client, staff(), "sv")
    assert "Slutför inställningen av appen Samtycke" in panel.html
    assert f'href="{PREFIX}/setup">Ställ in</a>' in panel.html
    assert "/obtain" not in panel.html


def test_a_client_ref_goes_into_the_links_escaped(host: TestHost) -> None:
    """Client refs allow ``@`` and ``:``, and the template escapes whatever it is given."""
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    [panel] = hooks.profile_panels(tenant, "a.b:c@d-e_f", staff(), "en")
    assert f'href="{PREFIX}/clients/a.b:c@d-e_f/history"' in panel.html
    html = render(
        "profile_panel.html", "en", status="unknown", tone="missing", icon="?", label="x",
        reason="<b>", given=None, client='"><script>', prefix=PREFIX, setup_complete=True,
        withdrawable=True, refused=roles.allowed(staff(), "en"),
    )
    assert "<script>" not in html and "&lt;b&gt;" in html and "&#34;&gt;&lt;script&gt;" in html

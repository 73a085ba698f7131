"""The profile panel is rendered once per shape (language, status, switches) and the
client's ref and the date are filled in: the result is exactly what rendering the
template for that client gives, for every status, language and switch."""

from __future__ import annotations

import itertools

import pytest

from samtycke_plugin import service, status_text
from samtycke_plugin.render import render_translated
from samtycke_plugin.rules import Status

CLIENTS = ["c1", "a.b:c@d-e_f", "x" * 64]
GIVEN = [None, "Given 2026-01-02.", 'Lämnat <b>&"2026"</b>.']


@pytest.mark.parametrize(
    ("language", "current"), list(itertools.product(["sv", "en"], list(Status)))
)
def test_filled_shape_equals_a_direct_render(language: str, current: Status) -> None:
    for setup_complete, withdrawable, given, client in itertools.product(
        [True, False], [True, False], GIVEN, CLIENTS
    ):
        direct = render_translated(
            "profile_panel.html",
            status=current.value, tone=status_text.tone(current),
            icon=status_text.icon(current), label=status_text.label(current, language),
            reason=status_text.reason(current, language), given=given,
            text=service._panel_text(language), client=client, prefix=service.MOUNT_PREFIX,
            setup_complete=setup_complete, withdrawable=withdrawable,
        )
        filled = service._panel_html(
            language, current, setup_complete=setup_complete, withdrawable=withdrawable,
            given=given, client=client,
        )
        assert filled == direct
        assert "\ufffc" not in filled

"""The look of a practice's mails: its brand colour (a practice setting) for the header
and the main button, with a text colour on it that stays readable (WCAG 2 contrast), and
the logo the host may give (:attr:`hookspecs.types.PracticeInfo.logo_url`).
"""

from __future__ import annotations

import re

from attrs import frozen

from samtycke_plugin.settings import BRAND_COLOUR

#: The app's own colour, for practices without a brand colour.
DEFAULT_ACCENT = "#0b57d0"
DARK_TEXT = "#1a1a1a"
WHITE = "#ffffff"
#: WCAG 2 AA for normal text: links on the white page need this much contrast.
MIN_TEXT_CONTRAST = 4.5


@frozen(kw_only=True)
class Palette:
    """Colours a mail template uses (each a validated ``#rrggbb``)."""

    #: The header band and the main button.
    accent: str
    #: Text on ``accent``.
    on_accent: str
    #: Links on the white page.
    link: str


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(colour: str) -> float:
    """The relative luminance of ``#rrggbb`` (WCAG 2)."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(red) + 0.7152 * _channel(green) + 0.0722 * _channel(blue)


def contrast(first: str, second: str) -> float:
    """The WCAG 2 contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def palette(brand_colour: str | None) -> Palette:
    """The mail colours for a practice; a missing or malformed colour gives the app's."""
    accent = brand_colour if brand_colour and BRAND_COLOUR.fullmatch(brand_colour) else None
    accent = accent or DEFAULT_ACCENT
    on_accent = WHITE if contrast(accent, WHITE) >= contrast(accent, DARK_TEXT) else DARK_TEXT
    link = accent if contrast(accent, WHITE) >= MIN_TEXT_CONTRAST else DEFAULT_ACCENT
    return Palette(accent=accent, on_accent=on_accent, link=link)


#: A logo URL a mail may show: absolute https, no spaces or quotes, of a sane length.
_LOGO_URL = re.compile(r"https://[^\s\"'<>\\]{1,2000}")


def logo_url(value: object) -> str | None:
    """The host's logo URL when a mail can show it (over https), else ``None``."""
    return value if isinstance(value, str) and _LOGO_URL.fullmatch(value) else None

"""Every user-facing string has a Swedish translation; language selection works."""

from __future__ import annotations

from samtycke_plugin.i18n import extract_messages, lang, missing_translations, t, tn
from samtycke_plugin.text import default_text


def test_every_message_is_translated_to_swedish() -> None:
    assert len(extract_messages()) > 40
    assert missing_translations("sv") == []


def test_language_selection() -> None:
    assert lang("sv_SE") == "sv" and lang("sv-FI") == "sv" and lang("en_GB") == "en"
    assert lang(None) == "sv" and lang("de") == "en"
    assert t("sv", "Valid consent") == "Giltigt samtycke"
    assert t("en", "Valid consent") == "Valid consent"
    assert t("de", "Valid consent") == "Valid consent"
    assert tn("en", "%(n)s client", "%(n)s clients", 2) == "2 clients"


def test_default_texts_exist_in_both_languages_with_placeholders_filled() -> None:
    sv = default_text("sv", practice_name="Kliniken *Lugn*", practice_contact="info@x.se")
    en = default_text("en", practice_name="Kliniken *Lugn*", practice_contact="info@x.se")
    for body in (sv, en):
        assert "$practice" not in body
        assert "Kliniken \\*Lugn\\*" in body and "info@x.se" in body
    assert "återkalla" in sv and "withdraw" in en

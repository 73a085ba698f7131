"""The catalogue of ready-written purposes and the default text it starts from."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from samtycke_plugin.purpose_catalogue import (
    CATALOGUE,
    DEFAULT_PURPOSE,
    KEY_PATTERN,
    OPTIONAL,
    CataloguePurpose,
    Localised,
    by_key,
)
from samtycke_plugin.text import LANGUAGES, default_template, default_text, render_html

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "samtycke_plugin"
NAME = "Kliniken *Lugn* & <Ro>"
CONTACT = "info@lugn.example, 08-123 45 67"
SHARED_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,31}\Z")  # the key rule every purpose follows
IDS = [p.key for p in CATALOGUE]


def test_the_catalogue_offers_the_default_and_three_optional_purposes() -> None:
    assert [p.key for p in CATALOGUE] == ["care", "reminders", "newsletter", "photos"]
    assert CATALOGUE[0].key == DEFAULT_PURPOSE == "care"
    assert [p.key for p in OPTIONAL] == ["reminders", "newsletter", "photos"]
    assert by_key("newsletter") is OPTIONAL[1] and by_key("insurer") is None
    assert all(p.required is False for p in CATALOGUE)


@pytest.mark.parametrize("purpose", CATALOGUE, ids=IDS)
def test_keys_follow_the_key_rule(purpose: CataloguePurpose) -> None:
    assert SHARED_KEY.match(purpose.key)
    assert KEY_PATTERN.fullmatch(purpose.key)


def test_a_key_outside_the_rule_or_a_missing_language_is_refused() -> None:
    good = {
        "name": Localised(sv="Försäkring", en="Insurance"),
        "legal_basis": Localised(sv="Samtycke", en="Consent"),
    }
    for bad in ("Care", "1st", "a" * 33, "nyhets brev", "", "care\n"):
        with pytest.raises(ValueError):
            CataloguePurpose(key=bad, **good)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Localised(sv="Försäkring", en="")
    with pytest.raises(ValueError):
        CataloguePurpose(key="insurer", validity_days=0, **good)  # type: ignore[arg-type]


@pytest.mark.parametrize("purpose", CATALOGUE, ids=IDS)
def test_every_entry_speaks_both_languages(purpose: CataloguePurpose) -> None:
    assert purpose.name.get("sv") != purpose.name.get("en")
    assert purpose.legal_basis.get("sv").startswith(("Samtycke", "Uttryckligt samtycke"))
    assert purpose.legal_basis.get("en").startswith(("Consent", "Explicit consent"))
    assert "6.1 a" in purpose.legal_basis.get("sv") and "6.1 a" in purpose.legal_basis.get("en")
    assert purpose.name.get("de") == purpose.name.get("en")  # unsupported → English
    sv, en = purpose.template("sv"), purpose.template("en")
    assert sv != en
    for body in (sv, en):
        assert "$practice_name" in body and "$practice_contact" in body


@pytest.mark.parametrize("purpose", CATALOGUE, ids=IDS)
def test_every_text_renders_through_the_app_with_placeholders_filled(
    purpose: CataloguePurpose,
) -> None:
    for language in LANGUAGES:
        body = purpose.text(language, practice_name=NAME, practice_contact=CONTACT)
        assert "$" not in body
        page = render_html(body)
        assert "$" not in page
        assert "Kliniken *Lugn* &amp; &lt;Ro&gt;" in page  # literal, never markup
        assert "<em>" not in page and "<Ro>" not in page
        assert "info@lugn.example" in page
        assert page.startswith("<h2>") and "<li>" in page
        assert len(body) < 2_500  # short enough to read in a booking form


def _shape(body: str) -> list[str]:
    """The block structure of a text: headings, paragraphs, list items (not the words)."""
    return [t.type for t in MarkdownIt("js-default").parse(body) if t.level == 0 or t.tag == "li"]


@pytest.mark.parametrize("purpose", CATALOGUE, ids=IDS)
def test_both_languages_have_the_same_structure(purpose: CataloguePurpose) -> None:
    assert _shape(purpose.template("sv")) == _shape(purpose.template("en"))
    sv, en = purpose.template("sv"), purpose.template("en")
    assert sv.count("**") == en.count("**") > 0


@pytest.mark.parametrize("purpose", OPTIONAL, ids=[p.key for p in OPTIONAL])
def test_optional_texts_are_specific(purpose: CataloguePurpose) -> None:
    sv, en = purpose.template("sv"), purpose.template("en")
    for heading in ("**Vilka uppgifter:**", "**Hur länge:**", "Det är frivilligt."):
        assert heading in sv
    for heading in ("**What information:**", "**How long:**", "It is voluntary."):
        assert heading in en
    assert "Det ändrar ingenting för dina bokningar" in sv
    assert "It changes nothing about your bookings" in en
    assert "Du kan återkalla ditt samtycke när du vill" in sv
    assert "You can withdraw your consent at any time" in en


def test_suggested_validity_matches_what_the_text_promises() -> None:
    newsletter = by_key("newsletter")
    assert newsletter is not None and newsletter.validity_days == 730
    assert "gäller i två år" in newsletter.template("sv")
    assert "lasts for two years" in newsletter.template("en")
    for purpose in CATALOGUE:
        if purpose.key != "newsletter":
            assert purpose.validity_days is None, purpose.key


def test_health_data_purposes_name_article_9() -> None:
    for key in ("care", "photos"):
        purpose = by_key(key)
        assert purpose is not None
        assert "9.2 a" in purpose.legal_basis.get("sv") and "9.2 a" in purpose.legal_basis.get("en")
    reminders = by_key("reminders")
    assert reminders is not None and "9.2" not in reminders.legal_basis.get("sv")


def test_the_default_purpose_is_the_default_text() -> None:
    care = by_key(DEFAULT_PURPOSE)
    assert care is not None
    for language in LANGUAGES:
        assert care.template(language) == default_template(language)
        assert care.text(language, practice_name=NAME, practice_contact=CONTACT) == default_text(
            language, practice_name=NAME, practice_contact=CONTACT
        )


def test_the_default_text_asks_only_for_what_needs_consent() -> None:
    sv, en = default_template("sv"), default_template("en")
    # It no longer asks consent for the notes a treatment needs or for "the" personal data.
    assert "anteckningar som behövs för din behandling" not in sv
    assert "behandling av personuppgifter" not in sv
    assert "the notes your treatment requires" not in en
    # What it asks for: health information beyond what a law requires to be recorded.
    assert "utöver det som en lag kräver att vi antecknar" in sv
    assert "beyond what a law requires us to record" in en
    # What rests on another legal ground, named as such.
    assert "### Det här bygger inte på ditt samtycke" in sv
    assert "### This does not rest on your consent" in en
    assert "**Dina kontaktuppgifter och bokningar:** dem behandlar vi för att kunna genomföra" in sv
    assert "**Your contact details and bookings:** we handle them to carry out" in en
    assert (
        "patientjournal enligt patientdatalagen" in sv
        and "Dem sparar vi eftersom lagen kräver det" in sv
    )
    assert "patient records under the Patient Data Act" in en
    assert "We keep them because the law requires it" in en
    # What withdrawing stops and what it does not.
    assert "### Om du återkallar ditt samtycke" in sv
    assert "### If you withdraw your consent" in en
    assert "raderar det vi redan har antecknat, om inte en lag kräver att vi sparar det" in sv
    assert "delete what we have already recorded, unless a law requires us to keep it" in en
    assert (
        "Dina bokningar, dina kontaktuppgifter och de anteckningar som lagen kräver påverkas inte"
        in sv
    )
    assert (
        "Your bookings, your contact details and the records the law requires are not affected"
        in en
    )
    assert "Det som redan har skett görs inte ogjort" in sv
    assert "What has already happened is not undone" in en


def test_the_package_ships_every_text() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["samtycke_plugin"]
    shipped = sorted(p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / "texts").rglob("*.md"))
    expected = {f"texts/default_{lang}.md" for lang in LANGUAGES} | {
        f"texts/purposes/{p.key}_{lang}.md" for p in OPTIONAL for lang in LANGUAGES
    }
    assert expected <= set(shipped)
    for path in shipped:
        # fnmatch's "*" also crosses "/", so compare folder depth as setuptools does.
        assert any(
            fnmatch(path, pattern) and path.count("/") == pattern.count("/") for pattern in patterns
        ), path

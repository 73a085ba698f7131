"""Consent texts as plain text for the mail's text part: the same words as the HTML the
app renders, without Markdown's markers."""

from __future__ import annotations

import pytest
from mail_look_support import MARKDOWN_MARKERS, visible, words

from samtycke_plugin.plaintext import render_plain
from samtycke_plugin.text import LANGUAGES, default_text, render_html


def _without_bullets(text: str) -> str:
    return words(" ".join(line.strip().removeprefix("• ") for line in text.splitlines()))


@pytest.mark.parametrize("language", LANGUAGES)
def test_default_texts_read_as_their_html_does(language: str) -> None:
    body = default_text(
        language,
        practice_name="Kliniken *Lugn* & Ro_ [1]",
        practice_contact="info@lugnochro.example, 08-123 45 67",
    )
    plain = render_plain(body)
    assert not MARKDOWN_MARKERS.search(plain), plain
    assert "Kliniken *Lugn* & Ro_ [1]" in plain  # the escaped name comes back literally
    assert _without_bullets(plain) == visible(render_html(body))[0]
    first, blank, *_rest = plain.splitlines()
    assert first.startswith("Samtycke till" if language == "sv" else "Consent to") and not blank


def test_structure_becomes_lines_bullets_and_numbers() -> None:
    body = (
        "# Title\n\nSome **bold**, *em*, `code` and ~~gone~~ words\nwrapped here.\n\n"
        "- one\n- two\n  - nested\n\n"
        "3. third\n4. fourth\n\n"
        "> quoted\n\n---\n\nEnd  \nwith a hard break.\n"
    )
    assert render_plain(body) == (
        "Title\n\n"
        "Some bold, em, code and gone words wrapped here.\n\n"
        "• one\n• two\n  • nested\n\n"
        "3. third\n4. fourth\n\n"
        "| quoted\n\n" + "—" * 24 + "\n\n"
        "End\nwith a hard break.\n"
    )


def test_loose_list_items_keep_their_paragraphs_apart() -> None:
    assert render_plain("1. first\n\n   more of it\n\n2. second\n") == (
        "1. first\n\n   more of it\n\n2. second\n"
    )


@pytest.mark.parametrize(
    ("markdown", "plain"),
    [
        ("[our site](https://clinic.example/x)", "our site (https://clinic.example/x)\n"),
        ("<https://clinic.example>", "https://clinic.example\n"),
        ("[write to us](mailto:info@clinic.example)", "write to us (info@clinic.example)\n"),
        ("[info@clinic.example](mailto:info@clinic.example)", "info@clinic.example\n"),
        ("[call](tel:+46812345)", "call (+46812345)\n"),
        # Addresses the HTML part drops are not shown here either.
        ("[click](javascript:alert(1))", "[click](javascript:alert(1))\n"),
        ("[file](ftp://clinic.example/f)", "file\n"),
        ("![a scan](https://clinic.example/i.png)", "a scan\n"),
    ],
)
def test_links_show_label_and_address(markdown: str, plain: str) -> None:
    assert render_plain(markdown) == plain


def test_raw_html_and_entities_come_out_as_text() -> None:
    plain = render_plain("<b>not bold</b> &amp; &lt;tag&gt; \\*stars\\*\n")
    assert plain == "<b>not bold</b> & <tag> *stars*\n"


def test_code_blocks_are_indented_and_tables_are_rows() -> None:
    plain = render_plain("```\nline 1\nline 2\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert plain == "    line 1\n    line 2\n\na  b\n1  2\n"

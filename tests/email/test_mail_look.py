"""What a client receives: every mail as text + HTML with the same content, the consent
text as clean plain text (no Markdown markers) and as the sanitized HTML, the practice's
name (escaped) and colour in the HTML, no external resources, and the receipt's proof
details at its end.  Delivered by a real SMTP server (aiosmtpd) and by the host's own
mailbox; on SQLite and PostgreSQL (the ``host`` fixture)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hostkit import TestHost
from mail_look_support import (
    MARKDOWN_MARKERS,
    Visible,
    assert_equivalent,
    assert_no_external_resources,
    plain_lines,
    visible,
    words,
)
from smtp_support import Browser, Received, SmtpServer, form_fields, path_of, running_server
from sqlalchemy import select
from test_practice_pages import Pages, html, practice_row, set_up

from hookspecs.types import DeliveryResult
from samtycke_plugin import practices
from samtycke_plugin.email import branding
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.email.relay import send_due
from samtycke_plugin.errors import SettingsError
from samtycke_plugin.models import TextVersion
from samtycke_plugin.settings import PracticeSettings, structure_settings, unstructure_settings


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


def _setup(host: TestHost, name: str = "Kliniken Lugn & Ro", **settings: object) -> tuple[str, str]:
    hooks = host.hooks()
    tenant = host.new_tenant(name)
    host.activate(hooks, tenant, **settings)
    client = host.new_client(tenant, name="Anna Svensson", email="anna@example.org")
    return tenant, client


def _receipt(host: TestHost, smtp_server: SmtpServer, tenant: str, client: str) -> Received:
    """The request mail, accepted through the page; returns the receipt that follows."""
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    _, token = smtp_server.messages[-1].link()
    browser = Browser(host)
    page = browser.get(path_of("c", token))
    done = browser.post(path_of("c", token), data={**form_fields(page.text), "decision": "accept"})
    assert done.status_code == 200, done.text
    assert send_due(host, tenant=tenant, transport=smtp_server.transport()).sent == 1
    return smtp_server.messages[-1]


def _text_row(host: TestHost, tenant: str, language: str) -> TextVersion:
    host.session().rollback()
    return (
        host.session()
        .scalars(
            select(TextVersion).where(
                TextVersion.tenant_ref == tenant, TextVersion.language == language
            )
        )
        .one()
    )


def test_request_mail_has_both_parts_with_the_same_content(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant, client = _setup(host)
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    [mail] = smtp_server.messages
    assert mail.message.get_content_type() == "multipart/alternative"
    types = [part.get_content_type() for part in mail.message.iter_parts()]
    assert types == ["text/plain", "text/html"]
    text, seen = assert_equivalent(mail)
    assert text.splitlines()[0] == "Kliniken Lugn & Ro"  # the practice heads both parts
    assert seen.startswith("Kliniken Lugn & Ro Hej Anna Svensson")
    assert not MARKDOWN_MARKERS.search(text)
    assert_no_external_resources(mail.html, host.base_url)
    # The practice's header in the app's colour when it chose none.
    assert f"background:{branding.DEFAULT_ACCENT};color:#ffffff" in mail.html


def test_receipt_renders_the_text_and_keeps_the_proof_at_the_end(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant, client = _setup(host)
    receipt = _receipt(host, smtp_server, tenant, client)
    text_row = _text_row(host, tenant, "sv")
    assert "##" in text_row.body and "**" in text_row.body  # the stored text is Markdown

    text, seen = assert_equivalent(receipt)
    assert not MARKDOWN_MARKERS.search(text), text
    # The consent text: its heading a plain line, its bold labels plain words.
    assert "\nSamtycke till hälsouppgifter för din behandling\n" in text
    assert "• Vilka uppgifter: det du berättar om din hälsa" in text
    # The consent text of the HTML part is the sanitized HTML the app stored ...
    assert text_row.html in receipt.html.replace("\r\n", "\n")
    assert "<strong>Vilka uppgifter:</strong>" in receipt.html
    # ... and reads as the plain text's copy does, word for word.
    copied = text.split("-----\n\n", 1)[1].split("\n-----")[0]
    assert copied.startswith("Samtycke till") and copied.rstrip().endswith("08-123 45 67.")
    assert words(" ".join(plain_lines(copied))) == visible(text_row.html)[0]

    # The proof: small print after everything else, the checksum named in Swedish.
    proof_line = f"Kontrollsumma (SHA-256) för texten: {text_row.sha256}"
    for part in (text, seen):
        assert part.count(text_row.sha256) == 1
        assert proof_line in part
        proof = part.index("Uppgifter som bevis")
        assert part.index(text_row.sha256) > proof > part.index("Frågor? Kontakta")
        assert "Textversion: 1.0, på svenska" in part[proof:]
        assert "Samtycket registrerades: 2026-11-29" in part[proof:]
        assert re.search(r"Nummer i samtyckesloggen: \d+", part[proof:])
    assert "font-size:.8rem" in receipt.html.split("Uppgifter som bevis")[0][-400:]
    assert_no_external_resources(receipt.html, host.base_url)
    attachments = [part.get_filename() for part in receipt.message.iter_attachments()]
    assert attachments == ["samtyckeskvitto.json"]


def test_english_receipt_in_english(host: TestHost, smtp_server: SmtpServer) -> None:
    tenant, _ = _setup(host)
    client = host.new_client(tenant, name="John Smith", email="john@example.com", locale="en")
    receipt = _receipt(host, smtp_server, tenant, client)
    text_row = _text_row(host, tenant, "en")
    text, seen = assert_equivalent(receipt)
    assert not MARKDOWN_MARKERS.search(text)
    assert "\nConsent to health information for your treatment\n" in text
    for part in (text, seen):
        assert f"Checksum (SHA-256) of the text: {text_row.sha256}" in part
        assert "Proof details" in part and "Text version: 1.0, in English" in part


def test_practice_name_with_markup_is_escaped_in_the_html_part(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    name = '<b onmouseover="x()">Kliniken</b> & <a href="https://evil.example">Ro</a>'
    tenant, client = _setup(host, name=name)
    receipt = _receipt(host, smtp_server, tenant, client)
    parser = Visible()
    parser.feed(receipt.html)
    assert "b" not in {tag for tag, _attrs in parser.tags}
    assert not any(name.startswith("on") for _tag, attrs in parser.tags for name, _v in attrs)
    escaped = (
        "&lt;b onmouseover=&#34;x()&#34;&gt;Kliniken&lt;/b&gt; &amp; &lt;a "
        "href=&#34;https://evil.example&#34;&gt;Ro&lt;/a&gt;"
    )
    assert f">{escaped}</h1>" in receipt.html  # the header shows the name as written
    assert receipt.text.splitlines()[0] == name
    assert_equivalent(receipt)
    assert_no_external_resources(receipt.html, host.base_url)


@pytest.mark.parametrize(
    ("colour", "on_accent", "link"),
    [("#ffd700", branding.DARK_TEXT, branding.DEFAULT_ACCENT), ("#5a1e6e", "#ffffff", "#5a1e6e")],
)
def test_brand_colour_paints_header_and_button_readably(
    host: TestHost, smtp_server: SmtpServer, colour: str, on_accent: str, link: str
) -> None:
    tenant, client = _setup(host, brand_colour=colour.upper())
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    [mail] = smtp_server.messages
    assert f"background:{colour};color:{on_accent}" in mail.html  # header and button
    assert mail.html.count(f"background:{colour};color:{on_accent}") == 2
    assert f'style="color:{link}"' in mail.html
    assert branding.contrast(colour, on_accent) >= branding.MIN_TEXT_CONTRAST
    assert branding.contrast(link, "#ffffff") >= branding.MIN_TEXT_CONTRAST


def test_host_mailbox_gets_both_parts_of_every_mail(host: TestHost) -> None:
    """The host's own mailer (``deliver_email``) is handed the same two parts."""
    tenant, client = _setup(host)
    host.mailer = lambda message: DeliveryResult(status="sent")
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    send_due(host, tenant=tenant)
    [request] = host.mail
    assert request.html is not None and "Hej Anna Svensson" in request.text
    _, token = re.findall(r"/apps/samtycke/([cw])/([A-Za-z0-9_-]{43})", request.text)[0]
    browser = Browser(host)
    page = browser.get(path_of("c", token))
    browser.post(path_of("c", token), data={**form_fields(page.text), "decision": "accept"})
    send_due(host, tenant=tenant)
    receipt = host.mail[-1]
    text_row = _text_row(host, tenant, "sv")
    for mail in (request, receipt):
        text, _seen = assert_equivalent(mail)
        assert not MARKDOWN_MARKERS.search(text)
        assert mail.html is not None
        assert_no_external_resources(mail.html, host.base_url)
    assert f"Kontrollsumma (SHA-256) för texten: {text_row.sha256}" in receipt.text


@pytest.mark.parametrize(
    ("given", "stored"),
    [(" #1A5FB4 ", "#1a5fb4"), ("#AbC", "#aabbcc"), ("", None), (None, None)],
)
def test_brand_colour_setting_is_normalised(given: object, stored: str | None) -> None:
    assert structure_settings({"brand_colour": given}).brand_colour == stored
    assert structure_settings(unstructure_settings(PracticeSettings())).brand_colour is None


@pytest.mark.parametrize("bad", ["red", "#12345g", "#1234567", "1a5fb4", 5, "#1a5fb4;x"])
def test_brand_colour_setting_refuses_anything_but_hex(bad: object) -> None:
    with pytest.raises(SettingsError, match="brand_colour"):
        structure_settings({"brand_colour": bad})


def test_settings_page_saves_and_refuses_a_brand_colour(host: TestHost) -> None:
    tenant = set_up(host)
    pages = Pages(host, tenant)
    form = {"step": "3", "require_consent_for_online_booking": "no",
            "request_link_days": "14", "pause_days": "365"}
    page = html(pages.get("/setup?step=3"))
    assert '<label for="brand_colour">Profilfärg i mejlen (frivilligt)</label>' in page
    assert 'aria-describedby="brand_colour-hint"' in page
    english = html(pages.get("/setup?step=3", lang="en"))
    assert '<label for="brand_colour">Brand colour of the e-mails (optional)</label>' in english

    for bad, lang, message in [
        ("red", "sv", "Skriv färgen som # följt av sex siffror"),
        ('#1"><b>', "en", "Write the colour as # followed by six digits"),
    ]:
        refused = pages.post("/setup", {**form, "brand_colour": bad}, lang=lang)
        body = html(refused)
        assert refused.status_code == 400 and message in body
        assert 'aria-invalid="true" aria-describedby="brand_colour-error brand_colour-hint"' in body
        assert "<b>" not in body.split('id="brand_colour"')[1][:200]  # re-shown escaped
        assert practices.settings_of(practice_row(host, tenant)).brand_colour is None

    saved = pages.post("/setup", {**form, "brand_colour": " #5A1E6E "})
    assert saved.status_code == 303
    assert practices.settings_of(practice_row(host, tenant)).brand_colour == "#5a1e6e"
    assert 'value="#5a1e6e"' in html(pages.get("/setup?step=3"))
    older_form = pages.post("/setup", form)  # a page from before the field existed
    assert older_form.status_code == 303
    assert practices.settings_of(practice_row(host, tenant)).brand_colour == "#5a1e6e"
    cleared = pages.post("/setup", {**form, "brand_colour": ""})
    assert cleared.status_code == 303
    assert practices.settings_of(practice_row(host, tenant)).brand_colour is None


@pytest.mark.parametrize(("given", "shown"), [
    ("https://kliniken.example/logo.png", "https://kliniken.example/logo.png"),
    ("http://kliniken.example/logo.png", None),  # not over https: left out
    ('https://kliniken.example/x" onerror="alert(1)', None),
    ("javascript:alert(1)", None),
])
def test_the_practice_logo_heads_the_mail_when_the_host_gives_one_over_https(
    host: TestHost, smtp_server: SmtpServer, given: str, shown: str | None
) -> None:
    import attrs

    from hookspecs.types import TenantRef

    tenant, client = _setup(host)
    info = host.practices[TenantRef(tenant)]
    host.practices[TenantRef(tenant)] = attrs.evolve(info, logo_url=given)
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    send_due(host, tenant=tenant, transport=smtp_server.transport())
    [mail] = smtp_server.messages
    images = re.findall(r"<img [^>]*>", mail.html)
    if shown is None:
        assert images == []
        assert_no_external_resources(mail.html, host.base_url)
    else:
        # decorative: the practice's name follows as the heading, for every reader
        assert images == [f'<img src="{shown}" alt="" height="48" style="display:block;'
                          'height:48px;width:auto;max-width:100%;margin:0 0 .5rem;border:0">']
        assert ">Kliniken Lugn &amp; Ro</h1>" in mail.html
    assert "Kliniken Lugn & Ro" in mail.text.splitlines()[0]

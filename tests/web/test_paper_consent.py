"""Proof of paper consent: the practitioner records the text version the client signed
(by default the one in force on the day they signed) and attaches the scan, whose
SHA-256 goes into the chained event; the history links it (download logged), the proof
bundle holds it and its check catches a tampered scan, erasure empties it.  A file that
is not a PDF, JPEG or PNG by its first bytes, or too large, is refused with a sentence
in Swedish and English.  Runs on SQLite and PostgreSQL (the ``host`` fixture)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from browser_support import launch, playwright_sync_api
from click.testing import CliRunner
from hostkit import TestHost, staff
from markupsafe import escape
from sqlalchemy import select, update
from test_practice_pages import P, Pages, events, html, set_up

from samtycke_plugin import attachments, consent, erasure, practice_texts, practices
from samtycke_plugin.access_log import Viewer
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.cli import main
from samtycke_plugin.export.bundle import proof_bundle
from samtycke_plugin.export.bundle_check import check_bundle
from samtycke_plugin.i18n import t
from samtycke_plugin.models import AccessLogEntry, Attachment, TextVersion
from samtycke_plugin.rules import VersionFacts, text_in_force
from samtycke_plugin.web.base import MAX_UPLOAD_BODY, TOO_LARGE_UPLOAD

PDF = b"%PDF-1.4\n% a signed consent form\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
GIF = b"GIF89a" + b"\x00" * 32
READER = Viewer(actor="cli:tests", via="cli")


def _facts(id_: int, language: str, major: int, minor: int, day: str) -> VersionFacts:
    at = datetime.fromisoformat(day + "T15:00:00+00:00")
    return VersionFacts(id=id_, language=language, major=major, minor=minor, created_at=at)


def test_the_text_in_force_is_the_newest_published_by_that_day() -> None:
    versions = [
        _facts(1, "sv", 1, 0, "2024-01-10"), _facts(2, "en", 1, 0, "2024-01-10"),
        _facts(3, "sv", 1, 1, "2024-06-01"), _facts(4, "sv", 2, 0, "2025-03-01"),
        _facts(5, "en", 2, 0, "2025-04-01"),
    ]

    def on(day: str, *languages: str) -> int | None:
        return text_in_force(versions, datetime.fromisoformat(day + "T12:00:00+00:00"),
                             list(languages or ("sv",)))

    assert on("2024-05-31") == 1
    assert on("2024-06-01") == 3  # published later that day: in force on the day
    assert on("2025-02-28") == 3 and on("2026-01-01") == 4
    assert on("2019-05-05") == 1  # signed before the first version: the first
    assert on("2024-07-01", "en", "sv") == 2
    # the second content existed only in Swedish for a month: in force for everyone
    assert on("2025-03-15", "en", "sv") == 4 and on("2025-04-02", "en", "sv") == 5
    assert on("2025-06-01", "de", "sv") == 4  # none in the client's: the practice's
    assert on("2025-06-01", "de") in (4, 5)  # none in any language asked for: one of them
    assert text_in_force([], datetime(2025, 1, 1, tzinfo=UTC), ["sv"]) is None


def _content_change(host: TestHost, tenant: str, words: str) -> None:
    current = practice_texts.current_text(host.session(), practices.require_practice(
        host.session(), tenant), "sv")
    practice_texts.publish_text(host, tenant, bodies={"sv": current.body + f"\n{words}\n"},
                           kind="content", reason=None, actor="staff:s2",
                           expected_major=current.major + 0)
    host.session().commit()


def _sv_versions(host: TestHost, tenant: str) -> list[TextVersion]:
    host.session().rollback()
    return list(host.session().scalars(
        select(TextVersion).where(TextVersion.tenant_ref == tenant, TextVersion.language == "sv")
        .order_by(TextVersion.major, TextVersion.minor)))


def _record(pages: Pages, client: str, **fields: object) -> object:
    form: dict[str, object] = {"action": "record", "method": "paper", "given_on": "2026-11-20",
                               "note": ""}
    form.update(fields)
    return pages.post(f"/clients/{client}/obtain", form)


def test_a_paper_consent_points_at_the_version_chosen(host: TestHost) -> None:
    tenant = set_up(host)
    host.advance(days=2)
    _content_change(host, tenant, "Nu även om videosamtal.")
    first, second = _sv_versions(host, tenant)
    client = host.new_client(tenant)
    pages = Pages(host, tenant)
    page = html(pages.get(f"/clients/{client}/obtain"))
    assert 'enctype="multipart/form-data"' in page and 'name="scan"' in page
    assert f'<option value="{first.id}">' in page and f'<option value="{second.id}">' in page
    response = _record(pages, client, given_on="2026-12-01", text_version=str(first.id))
    assert response.status_code == 303  # type: ignore[attr-defined]
    [event] = events(host, tenant)
    assert (event.text_version_id, event.text_major, event.text_sha256) == (
        first.id, 1, first.sha256)
    assert event.attachment_sha256 is None
    # consent to the first content, recorded after the second: outdated, not valid
    assert not consent.client_status(host, tenant, client).valid
    # a version of another practice (or none) is not one the page offered
    forged = _record(pages, host.new_client(tenant), text_version="999999")
    assert forged.status_code == 400  # type: ignore[attr-defined]
    assert len(events(host, tenant)) == 1


def test_the_default_version_is_the_one_in_force_on_the_stated_date(host: TestHost) -> None:
    tenant = set_up(host)  # version 1 on 2026-11-29
    host.advance(days=10)
    _content_change(host, tenant, "Nu även om videosamtal.")  # version 2 on 2026-12-09
    host.advance(days=10)
    first, second = _sv_versions(host, tenant)
    assert (first.created_at.date().isoformat(), second.created_at.date().isoformat()) == (
        "2026-11-29", "2026-12-09")
    pages = Pages(host, tenant)
    expected = {"2026-12-01": first.id, "2026-12-09": second.id, "2026-12-15": second.id,
                "2025-03-01": first.id}
    for day, version in expected.items():
        client = host.new_client(tenant)
        assert _record(pages, client, given_on=day).status_code == 303  # type: ignore[attr-defined]
        assert events(host, tenant)[-1].text_version_id == version, day
    # the domain function decides the same without the page
    client = host.new_client(tenant)
    event = consent.record_manual(host, tenant, client, staff(), method="paper", note=None,
                                  given_at=datetime(2026, 12, 5, 12, tzinfo=UTC))
    assert event.text_version_id == first.id


def _bundle_files(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _rezip(files: dict[str, bytes], *, manifest: bool) -> bytes:
    if manifest:  # a forger who also rewrites the manifest
        files = dict(files)
        files["MANIFEST.sha256"] = "".join(
            f"{hashlib.sha256(v).hexdigest()}  {k}\n"
            for k, v in sorted(files.items()) if k != "MANIFEST.sha256").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, value in files.items():
            zf.writestr(name, value)
    return buf.getvalue()


def test_the_scan_is_chained_shown_downloaded_once_logged_and_checked_in_the_bundle(
    host: TestHost, tmp_path: Path
) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    pages = Pages(host, tenant)
    assert _record(pages, client, scan=(PDF, "blankett.pdf")).status_code == 303  # type: ignore[attr-defined]
    digest = hashlib.sha256(PDF).hexdigest()
    [event] = events(host, tenant)
    assert event.attachment_sha256 == digest
    assert verify_chain(host.session(), tenant).ok
    host.session().rollback()

    history = html(pages.get(f"/clients/{client}/history"))
    link = f"{P}/clients/{client}/attachments/{digest}"
    assert f'href="{link}"' in history and "Ladda ner skanningen (PDF, 1 kB)" in history
    downloaded = pages.get(f"/clients/{client}/attachments/{digest}")
    assert downloaded.status_code == 200 and downloaded.data == PDF
    assert downloaded.headers["Content-Type"] == "application/pdf"
    assert downloaded.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in downloaded.headers["Content-Security-Policy"]
    host.session().rollback()
    rows = host.session().scalars(select(AccessLogEntry).where(
        AccessLogEntry.tenant_ref == tenant, AccessLogEntry.action == "download_attachment"
    )).all()
    assert [(r.actor, r.client_ref, r.detail) for r in rows] == [
        ("staff:s1", client, f"sha256={digest}")]
    host.session().rollback()
    other = host.new_client(tenant)  # another client's page does not hand out the file
    assert pages.get(f"/clients/{other}/attachments/{digest}").status_code == 404
    assert pages.get(f"/clients/{client}/attachments/{'0' * 64}").status_code == 404

    bundle = proof_bundle(host, tenant, client, by=READER)
    host.session().commit()
    files = _bundle_files(bundle)
    [scan_name] = [n for n in files if n.startswith("attachments/")]
    assert files[scan_name] == PDF and scan_name.endswith(".pdf")
    [ev] = json.loads(files["history.json"])["events"]
    assert ev["attachment_sha256"] == digest and ev["attachment"]["file"] == scan_name
    assert f"SHA-256 {digest}" in files["history.html"].decode()
    assert check_bundle(bundle) == []
    path = tmp_path / "bundle.zip"
    path.write_bytes(bundle)
    ok = CliRunner().invoke(main, ["check-bundle", str(path)])
    assert ok.exit_code == 0 and "OK" in ok.output

    tampered = dict(files)
    tampered[scan_name] = PDF.replace(b"signed", b"forged")
    for manifest in (False, True):
        problems = check_bundle(_rezip(tampered, manifest=manifest))
        assert any("does not match the SHA-256 the event recorded" in p for p in problems)
    path.write_bytes(_rezip(tampered, manifest=True))
    broken = CliRunner().invoke(main, ["check-bundle", str(path)])
    assert broken.exit_code == 1 and "BROKEN" in broken.output
    # pointing the event at the forged scan breaks the event's own hash instead
    forged = hashlib.sha256(tampered[scan_name]).hexdigest()
    rewritten = dict(tampered)
    rewritten["history.json"] = files["history.json"].replace(digest.encode(), forged.encode())
    problems = check_bundle(_rezip(rewritten, manifest=True))
    assert problems == ["event #1: its fields in history.json do not match its hash"]


def test_samtycke_verify_finds_a_scan_altered_in_the_database(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    consent.record_manual(host, tenant, client, staff(), method="paper", note=None,
                          given_at=host.now(), attachment=PNG)
    host.session().commit()
    assert verify_chain(host.session(), tenant).ok
    host.session().execute(update(Attachment).where(Attachment.tenant_ref == tenant)
                           .values(data=PNG + b"x"))
    result = verify_chain(host.session(), tenant)
    assert result.broken is not None and result.broken.kind == "evidence"
    assert result.broken.seq == 1 and "altered" in result.broken.detail
    host.session().execute(update(Attachment).where(Attachment.tenant_ref == tenant)
                           .values(data=None))
    result = verify_chain(host.session(), tenant)
    assert result.broken is not None and "without an erasure" in result.broken.detail
    host.session().rollback()


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_a_file_that_is_no_scan_or_too_large_is_refused_and_nothing_is_written(
    host: TestHost, lang: str
) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    pages = Pages(host, tenant)
    too_large = b"%PDF-1.4\n" + b"0" * attachments.MAX_ATTACHMENT_BYTES
    cases = [
        ((GIF, "blankett.pdf"), attachments.WRONG_TYPE),  # the name does not decide
        ((b"<html>" + PDF, "blankett.pdf"), attachments.WRONG_TYPE),
        ((b"", "blankett.pdf"), attachments.EMPTY),
        ((too_large, "blankett.pdf"), attachments.TOO_LARGE),
    ]
    for scan, message in cases:
        form = {"action": "record", "method": "paper", "given_on": "2026-11-20", "note": "",
                "scan": scan}
        response = pages.post(f"/clients/{client}/obtain", form, lang=lang)
        assert response.status_code == 400, message
        page = html(response)
        assert str(escape(t(lang, message))) in page
        assert 'aria-invalid="true" aria-describedby="scan-error scan-hint"' in page
    if lang == "sv":
        assert "större än 10 MB" in t("sv", attachments.TOO_LARGE)
    # a body larger than any form with a scan is refused before it is read
    huge = b"%PDF-1.4\n" + b"0" * MAX_UPLOAD_BODY
    response = pages.post(f"/clients/{client}/obtain",
                          {"action": "record", "scan": (huge, "x.pdf")}, lang=lang)
    assert response.status_code == 413
    assert str(escape(t(lang, TOO_LARGE_UPLOAD))) in html(response)
    assert events(host, tenant) == []
    assert host.session().scalars(select(Attachment).where(
        Attachment.tenant_ref == tenant)).all() == []
    host.session().rollback()


def test_the_domain_function_checks_the_bytes_too(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    with pytest.raises(attachments.AttachmentRefused) as refused:
        consent.record_manual(host, tenant, client, staff(), method="paper", note=None,
                              given_at=host.now(), attachment=GIF)
    assert refused.value.reason == attachments.WRONG_TYPE
    host.rollback()
    assert events(host, tenant) == []


def test_erasure_removes_the_scan_and_the_proof_still_verifies(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    kept = host.new_client(tenant)
    for who in (client, kept):
        consent.record_manual(host, tenant, who, staff(), method="paper", note=None,
                              given_at=host.now(), attachment=PNG)
    host.session().commit()
    digest = hashlib.sha256(PNG).hexdigest()
    result = erasure.erase_client(host, tenant, client)
    host.session().commit()
    assert result.attachments_erased == 1 and result.erased_seq is not None
    host.session().rollback()
    rows = {r.client_ref: r for r in host.session().scalars(
        select(Attachment).where(Attachment.tenant_ref == tenant))}
    assert rows[client].data is None and rows[client].erased_at is not None
    assert rows[client].sha256 == digest  # the hash the event names stays
    assert rows[kept].data == PNG  # another client's scan is untouched
    host.session().rollback()
    assert verify_chain(host.session(), tenant).ok
    host.session().rollback()
    pages = Pages(host, tenant)
    assert pages.get(f"/clients/{client}/attachments/{digest}").status_code == 404
    history = html(pages.get(f"/clients/{client}/history"))
    assert "Skanningen togs bort när klientens uppgifter raderades." in history
    assert not re.search(r"/attachments/[0-9a-f]{64}\"", history)
    bundle = proof_bundle(host, tenant, client, by=READER)
    host.session().commit()
    files = _bundle_files(bundle)
    assert not any(n.startswith("attachments/") for n in files)
    assert "borttagen när klientens uppgifter raderades" in files["history.html"].decode()
    assert check_bundle(bundle) == []
    assert erasure.erase_client(host, tenant, client).attachments_erased == 0  # idempotent
    host.session().rollback()


def test_a_scan_attached_before_the_column_existed_changes_no_old_hash(host: TestHost) -> None:
    """Events without a scan hash exactly as before the column existed (their canonical
    form leaves it out), so a chain written earlier still verifies."""
    tenant = set_up(host)
    client = host.new_client(tenant)
    plain = consent.record_manual(host, tenant, client, staff(), method="verbal", note=None,
                                  given_at=host.now() - timedelta(days=1))
    host.session().commit()
    from samtycke_plugin.canonical import CHAINED_FIELDS, row_hash

    fields = {k: getattr(plain, k) for k in CHAINED_FIELDS if k != "attachment_sha256"}
    assert row_hash(plain.prev_hash, fields) == plain.row_hash
    host.session().rollback()


@pytest.fixture
def served(sqlite_engine: Any) -> Iterator[tuple[str, TestHost, str]]:
    """The pages over HTTP on a loopback port, with a set-up practice."""
    import threading

    from werkzeug.serving import make_server

    host = TestHost(sqlite_engine)
    tenant = set_up(host)
    pages = Pages(host, tenant)
    server = make_server("127.0.0.1", 0, pages.client.application, threaded=False)
    host.base_url = f"http://127.0.0.1:{server.port}"  # the browser posts from this origin
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}{P}", host, tenant
    finally:
        server.shutdown()
        thread.join(timeout=10)
        host.close()


@pytest.mark.e2e
def test_in_chromium_a_scan_is_attached_without_javascript_and_downloaded(
    served: tuple[str, TestHost, str], tmp_path: Path,
) -> None:
    base, host, tenant = served
    client = host.new_client(tenant, name="Petra Papper")
    scan = tmp_path / "blankett.png"
    scan.write_bytes(PNG)
    sync_api = playwright_sync_api()
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            context = browser.new_context(java_script_enabled=False, locale="sv-SE",
                                          accept_downloads=True)
            page = context.new_page()
            page.goto(f"{base}/clients/{client}/obtain")
            page.get_by_label("På papper").check()
            page.get_by_label("Datum då klienten gav sitt samtycke").fill("2026-11-20")
            page.get_by_label("Textversion som klienten samtyckte till").select_option(
                label=page.locator("#text_version option").nth(1).inner_text())
            page.get_by_label("Skanning eller foto av den undertecknade blanketten "
                              "(valfritt)").set_input_files(str(scan))
            page.get_by_role("button", name="Lägg in samtycket").click()
            assert "Samtycket registrerades." in page.inner_text("main")
            [event] = events(host, tenant)
            assert event.attachment_sha256 == hashlib.sha256(PNG).hexdigest()
            page.goto(f"{base}/clients/{client}/history")
            with page.expect_download() as download:
                page.get_by_role("link", name="Ladda ner skanningen (PNG, 1 kB)").click()
            assert Path(download.value.path()).read_bytes() == PNG
            context.close()
        finally:
            browser.close()


def test_a_form_with_a_scan_needs_the_csrf_token_like_every_other(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    pages = Pages(host, tenant)
    form = {"action": "record", "method": "paper", "given_on": "2026-11-20", "note": "",
            "scan": (PNG, "blankett.png")}
    for token in (None, "", "forged-token", pages.token + "x"):
        response = pages.post(f"/clients/{client}/obtain", form, token=token)
        assert response.status_code == 403, token
    assert events(host, tenant) == []
    assert host.session().scalars(select(Attachment).where(
        Attachment.tenant_ref == tenant)).all() == []
    host.session().rollback()
    assert pages.post(f"/clients/{client}/obtain", form).status_code == 303


def test_the_default_version_is_in_the_clients_language(host: TestHost) -> None:
    """As everywhere in the app, a language without its own texts reads English."""
    tenant = set_up(host)
    host.session().rollback()
    by_language = {v.language: v.id for v in host.session().scalars(
        select(TextVersion).where(TextVersion.tenant_ref == tenant))}
    host.session().rollback()
    assert {"sv", "en"} <= set(by_language)
    for locale, expected in (("en_GB", "en"), ("sv", "sv"), ("de", "en")):
        client = host.new_client(tenant, locale=locale)
        event = consent.record_manual(host, tenant, client, staff(), method="paper",
                                      note=None, given_at=host.now())
        assert event.text_version_id == by_language[expected], locale
    host.session().commit()

"""Exports (F10, F16): a client's history as JSON, CSV and printable HTML, the practice's
status list streamed as CSV, the one-step proof bundle, and the export commands.
Exports of one practice never contain another practice's rows."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hostkit import TestHost, staff, submission
from jsonschema import Draft202012Validator, FormatChecker
from sqlalchemy import insert, select

from hookspecs.types import BookingRef, ClientInfo, ClientRef, TenantRef
from samtycke_plugin import (
    checkpoint,
    checkpoint_keys,
    consent,
    export,
    practice_texts,
    practices,
    receipts,
)
from samtycke_plugin.access_log import Viewer
from samtycke_plugin.cli import main
from samtycke_plugin.errors import NotFound
from samtycke_plugin.models import ConsentEvent, ConsentStateRow, TextVersion

#: Who reads in these tests (each export records an access-log row).
READER = Viewer(actor="cli:tests", via="cli")


VALIDATOR = Draft202012Validator(receipts.receipt_schema(), format_checker=FormatChecker())
NASTY_NOTE = '=HYPERLINK("http://evil.example") <script>alert(1)</script> Zlatan signed'


def _book(host: TestHost, tenant: str, client: str, ticked: bool = True) -> None:
    hooks = host.hooks()
    text = practice_texts.current_text(
        host.session(), practices.require_practice(host.session(), tenant), "sv"
    )
    sub = submission(tenant, client, ticked=ticked, text_id=text.id)
    assert hooks.submit_check(sub) == []
    hooks.submitted(sub, BookingRef("b-" + client), ClientRef(client))
    host.session().commit()


def _practice_with_history(host: TestHost, *, client_ref: str | None = None,
                           note: str = NASTY_NOTE) -> tuple[str, str]:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=False)
    client = host.new_client(tenant, name="Zlatan Unikson", email="zlatan.unikson@example.org")
    if client_ref is not None:  # the same client ref in two practices (hosts may do that)
        info = host.clients.pop((tenant, client))
        client = ClientRef(client_ref)
        host.clients[(tenant, client)] = ClientInfo(
            ref=client, name=info.name, email=info.email, locale=info.locale
        )
    _book(host, tenant, client)
    host.advance(days=1)
    practice_texts.publish_text(
        host, tenant, bodies={"sv": "Ny text om hur vi behandlar dina uppgifter. " * 3},
        kind="content", reason="new processing", actor="staff:s1", expected_major=1,
    )
    host.session().commit()
    host.advance(days=1)
    consent.record_manual(host, tenant, client, staff(), method="paper",
                          given_at=host.now() - timedelta(hours=3), note=note)
    host.session().commit()
    host.advance(days=1)
    consent.withdraw(host, tenant, client, actor="client", channel="practitioner",
                     method="reported_by_staff", by_client=True)
    host.session().commit()
    return tenant, client


def test_client_history_json_has_every_event_text_and_evidence(host: TestHost) -> None:
    tenant, client = _practice_with_history(host)
    data = json.loads(export.client_history_json(host, tenant, client, by=READER))
    host.session().rollback()
    assert data["format"] == "samtycke-client-history/1"
    assert data["client"] == {"ref": client, "known_to_host": True, "name": "Zlatan Unikson",
                              "email": "zlatan.unikson@example.org"}
    assert [e["state"] for e in data["events"]] == ["given", "renewed", "withdrawn"]
    assert [e["seq"] for e in data["events"]] == sorted(e["seq"] for e in data["events"])
    booking, manual, withdrawal = data["events"]
    assert (booking["channel"], booking["method"], booking["actor"]) == (
        "online_booking", "checkbox", "client")
    assert booking["evidence"] == {"ip_prefix": "203.0.113.0/24",
                                   "user_agent": "Mozilla/5.0 (test)", "note": None}
    assert booking["text"]["version"] == "1.0" and booking["booking_ref"] == "b-" + client
    assert manual["actor"] == "staff:s1" and manual["evidence"]["note"] == NASTY_NOTE
    assert manual["text"]["version"] == "2.0"
    assert manual["given_at"] < manual["occurred_at"]
    assert withdrawal["dpv_status"] == "dpv:ConsentWithdrawn"
    # The full text of both versions shown, matching their hashes.
    assert {t["version"] for t in data["texts"]} == {"1.0", "2.0"}
    for text in data["texts"]:
        assert hashlib.sha256(text["body"].encode()).hexdigest() == text["sha256"]
    assert data["status"]["code"] == "withdrawn"
    assert data["chain"]["ok"] is True and data["chain"]["broken"] is None
    assert data["checkpoint"] is None
    # Receipt ids in the history are those of the receipts.
    for event in data["events"]:
        if event["receipt_id"]:
            session = host.session()
            ev = session.scalars(select(ConsentEvent).where(
                ConsentEvent.tenant_ref == tenant, ConsentEvent.seq == event["seq"])).one()
            assert receipts.build_receipt(host, tenant, ev.id)["consentReceiptID"] == (
                event["receipt_id"])
    host.session().rollback()


def test_client_history_csv_is_parseable_and_formula_safe(host: TestHost) -> None:
    tenant, client = _practice_with_history(host)
    text = export.client_history_csv(host, tenant, client, by=READER)
    host.session().rollback()
    assert text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(export.HISTORY_COLUMNS)
    assert [r["state"] for r in rows] == ["given", "renewed", "withdrawn"]
    assert rows[1]["note"] == "'" + NASTY_NOTE  # never a formula in a spreadsheet
    assert rows[0]["ip_prefix"] == "203.0.113.0/24" and rows[0]["evidence"] == "present"
    assert rows[2]["evidence"] == "none"
    assert all(r["row_hash"] and len(r["row_hash"]) == 64 for r in rows)


def test_client_history_html_is_printable_escaped_and_localized(host: TestHost) -> None:
    tenant, client = _practice_with_history(host)
    sv = export.client_history_html(host, tenant, client, by=READER)
    en = export.client_history_html(host, tenant, client, by=READER, locale="en")
    host.session().rollback()
    assert "<script>alert(1)</script>" not in sv
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in sv
    assert "Samtyckeshistorik" in sv and "Zlatan Unikson" in sv
    assert "Consent history" in en and "Is the record intact?" in en
    assert "Ny text om hur vi behandlar" in sv  # the content version shown
    assert "@media print" in sv and '<html lang="sv">' in sv
    assert "obruten" in sv


def test_export_of_one_practice_never_contains_another(host: TestHost) -> None:
    """Two practices, the same client ref in both, different notes and texts."""
    a, client = _practice_with_history(host, client_ref="shared-1", note="Note only in A")
    b, _ = _practice_with_history(host, client_ref="shared-1", note="Note only in B")
    b_only = host.new_client(b, name="Bertil Bara-i-B", email="bertil@b.example")
    _book(host, b, b_only)
    session = host.session()
    b_hashes = set(session.scalars(
        select(ConsentEvent.row_hash).where(ConsentEvent.tenant_ref == b)))
    b_texts = set(session.scalars(select(TextVersion.id).where(TextVersion.tenant_ref == b)))
    session.rollback()
    produced = [
        export.client_history_json(host, a, client, by=READER),
        export.client_history_csv(host, a, client, by=READER),
        export.client_history_html(host, a, client, by=READER),
        "".join(export.practice_status_csv(host, a, by=READER)),
        "".join(export.practice_status_csv(host, a, by=READER, from_host=False)),
    ]
    bundle = zipfile.ZipFile(io.BytesIO(export.proof_bundle(host, a, client, by=READER)))
    produced += [bundle.read(n).decode() for n in bundle.namelist()]
    host.session().rollback()
    for text in produced:
        assert "Note only in B" not in text
        assert b not in text and b_only not in text and "Bertil" not in text
        assert not any(h in text for h in b_hashes)
    assert "Note only in A" in produced[0]
    # The texts shown are A's own versions, even where B's wording is identical.
    data = json.loads(produced[0])
    assert len(data["texts"]) == 2 and not {t["id"] for t in data["texts"]} & b_texts
    # Another practice's client through the wrong practice: nothing of theirs.
    assert json.loads(export.client_history_json(host, a, b_only, by=READER))["events"] == []
    with pytest.raises(NotFound):
        export.client_history_json(host, "t-never-activated", client, by=READER)
    host.session().rollback()


def test_practice_status_csv_from_host_and_from_database(host: TestHost) -> None:
    tenant, client = _practice_with_history(host)
    fresh = host.new_client(tenant, name="Never Asked", email="never@example.org")
    valid = host.new_client(tenant, name="Valid Vera", email="vera@example.org")
    _book(host, tenant, valid)
    seen: list[int] = []
    rows = list(csv.DictReader(io.StringIO(
        "".join(export.practice_status_csv(host, tenant, by=READER, locale="en", progress=seen.append)))))
    by_ref = {r["client_ref"]: r for r in rows}
    assert set(by_ref) == {client, fresh, valid} and sum(seen) == 3
    assert by_ref[fresh]["status"] == "unknown" and by_ref[fresh]["name"] == "Never Asked"
    assert by_ref[valid]["status"] == "valid" and by_ref[valid]["text_version"] == "2"
    assert by_ref[valid]["status_label"] == "Valid consent"
    assert by_ref[client]["status"] == "withdrawn"
    assert by_ref[client]["dpv_status"] == "dpv:ConsentWithdrawn"
    db_rows = list(csv.DictReader(io.StringIO(
        "".join(export.practice_status_csv(host, tenant, by=READER, from_host=False)))))
    assert [r["client_ref"] for r in db_rows] == sorted([client, valid])
    assert all(r["name"] == "" and r["email"] == "" for r in db_rows)
    assert db_rows[0]["status_label"] in ("Giltigt samtycke", "Samtycke återkallat")
    assert export.practice_status_count(host, tenant) == 2
    host.session().rollback()


def test_proof_bundle_in_one_step(host: TestHost) -> None:
    tenant, client = _practice_with_history(host)
    key = checkpoint_keys.generate_key()
    checkpoint.create(host.session(), tenant, key, host.now())
    host.session().commit()
    data = export.proof_bundle(host, tenant, client, by=READER, locale="sv")
    host.session().rollback()
    zf = zipfile.ZipFile(io.BytesIO(data))
    names = zf.namelist()
    assert names[0] == "README.txt"
    assert {"history.json", "history.csv", "history.html", "verification.json",
            "MANIFEST.sha256", "texts/text-1.0-sv.md", "texts/text-2.0-sv.md"} <= set(names)
    receipt_names = [n for n in names if n.startswith("receipts/")]
    assert len(receipt_names) == 3  # given, renewed, withdrawn
    for name in receipt_names:
        VALIDATOR.validate(json.loads(zf.read(name)))
    manifest = zf.read("MANIFEST.sha256").decode().splitlines()
    assert len(manifest) == len(names) - 1
    for line in manifest:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256(zf.read(name)).hexdigest() == digest
    verification = json.loads(zf.read("verification.json"))
    assert verification["chain"]["ok"] is True
    assert verification["checkpoint"]["key_id"] == key.key_id
    assert checkpoint.check(host.session(), verification["checkpoint"],
                            {key.key_id: key.public}).ok
    host.session().rollback()
    readme = zf.read("README.txt").decode()
    assert "Bevis på samtycke" in readme and "obruten" in readme and key.key_id in readme
    history = json.loads(zf.read("history.json"))
    for text in history["texts"]:
        assert zf.read(f"texts/text-{text['version']}-{text['language']}.md").decode() == (
            text["body"])
    assert export.bundle_filename(tenant, client, host.now()).endswith(".zip")


def test_exports_after_deactivation(host: TestHost) -> None:
    tenant, client = _practice_with_history(host)
    host.hooks().deactivate(TenantRef(tenant), "samtycke")
    host.session().commit()
    data = json.loads(export.client_history_json(host, tenant, client, by=READER))
    assert len(data["events"]) == 3 and data["practice"]["active"] is False
    assert zipfile.ZipFile(io.BytesIO(export.proof_bundle(host, tenant, client, by=READER))).testzip() is None
    host.session().rollback()


def test_export_commands(host: TestHost, tmp_path: Path) -> None:
    tenant, client = _practice_with_history(host)
    host.session().rollback()
    url = host.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    # a host that lists no clients, with staff: the practice's owner exports
    base = ["--database-url", url, "--host", "cli_support:standalone", "export"]
    js = runner.invoke(main, [*base, "client", "--staff", "owner", "--tenant", tenant, "--client", client])
    assert js.exit_code == 0, js.output
    assert len(json.loads(js.stdout)["events"]) == 3
    # A host that knows no client names: pseudonymous export.
    assert json.loads(js.stdout)["client"]["name"] is None
    cs = runner.invoke(main, [*base, "client", "--staff", "owner", "--tenant", tenant, "--client", client,
                              "--format", "csv"])
    assert cs.exit_code == 0 and cs.stdout.startswith("seq,occurred_at")
    out = tmp_path / "history.html"
    ht = runner.invoke(main, [*base, "client", "--staff", "owner", "--tenant", tenant, "--client", client,
                              "--format", "html", "--locale", "en", "--out", str(out)])
    assert ht.exit_code == 0 and "Consent history" in out.read_text()
    zpath = tmp_path / "proof.zip"
    bu = runner.invoke(main, [*base, "client", "--staff", "owner", "--tenant", tenant, "--client", client,
                              "--format", "bundle", "--out", str(zpath)])
    assert bu.exit_code == 0, bu.output
    assert "history.json" in zipfile.ZipFile(zpath).namelist()
    nozip = runner.invoke(main, [*base, "client", "--staff", "owner", "--tenant", tenant, "--client", client,
                                 "--format", "bundle"])
    assert nozip.exit_code != 0 and "--out" in nozip.output
    pr = runner.invoke(main, [*base, "practice", "--staff", "owner", "--tenant", tenant])
    assert pr.exit_code == 0, pr.output
    assert pr.stdout.splitlines()[0] == ",".join(export.STATUS_COLUMNS)
    assert client in pr.stdout and "1 client(s) exported." in pr.stderr
    missing = runner.invoke(main, [*base, "practice", "--staff", "owner", "--tenant", "t-never"])
    assert missing.exit_code != 0 and "no data" in missing.output


class _StreamingHost(TestHost):
    """A host whose client directory is generated on the fly (like a database cursor)."""

    __test__ = False

    def __init__(self, engine: Any, tenant: str, count: int) -> None:
        super().__init__(engine)
        self._tenant = tenant
        self._count = count

    def iter_clients(self, tenant: TenantRef) -> Iterator[ClientInfo]:
        if tenant != self._tenant:
            return
        for i in range(self._count):
            ref = ClientRef(f"k{i:07d}")
            yield ClientInfo(ref=ref, name=f"Klient {i}", email=f"k{i}@example.org", locale="sv")


@pytest.mark.slow
def test_practice_export_of_100k_clients_in_bounded_memory(
    host: TestHost, record_property: Any
) -> None:
    count = 100_000
    tenant = host.new_tenant()
    host.activate(host.hooks(), tenant)
    now = host.now()
    session = host.session()
    states = ("given", "renewed", "refused", "withdrawn", "requested")
    for start in range(0, count, 20_000):  # every other client has a status row
        session.execute(insert(ConsentStateRow), [
            {"tenant_ref": tenant, "client_ref": f"k{i:07d}", "state": states[i % 5],
             "text_major": 1, "expires_at": None, "since": now, "last_seq": i + 1,
             "delivery": None}
            for i in range(start, min(count, start + 20_000)) if i % 2 == 0
        ])
    session.commit()
    streaming = _StreamingHost(host.engine, tenant, count)
    results = {}
    try:
        for from_host in (True, False):
            # One pass timed as it runs, one pass under tracemalloc for the peak.
            streaming.session().rollback()
            started = time.perf_counter()
            rows = size = 0
            for chunk in export.practice_status_csv(streaming, tenant, by=READER, from_host=from_host):
                rows += chunk.count("\r\n")
                size += len(chunk)
            elapsed = time.perf_counter() - started
            streaming.session().rollback()
            tracemalloc.start()
            for chunk in export.practice_status_csv(streaming, tenant, by=READER, from_host=from_host):
                del chunk
            _current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            results[from_host] = (rows, elapsed, peak, size)
    finally:
        streaming.close()
    host_rows, host_time, host_peak, host_size = results[True]
    db_rows, db_time, db_peak, _ = results[False]
    assert host_rows == count + 1 and db_rows == count // 2 + 1
    dialect = host.engine.dialect.name
    record_property("export_100k_from_host", f"{host_time:.2f}s peak {host_peak / 1e6:.1f} MB")
    record_property("export_50k_from_db", f"{db_time:.2f}s peak {db_peak / 1e6:.1f} MB")
    print(f"\n[{dialect}] practice export, 100k host clients: {host_time:.2f} s, "
          f"peak {host_peak / 1e6:.1f} MB traced, {host_size / 1e6:.1f} MB CSV; "
          f"50k status rows from the database: {db_time:.2f} s, peak {db_peak / 1e6:.1f} MB")
    # Bounded: well below the size of the output (a loaded export would exceed it), and
    # below a fixed ceiling.  Driver fetch buffers differ (psycopg peaked at 3.4 MB for a
    # 9.8 MB CSV in CI), so the ratio has margin; growth is what it guards against.
    assert host_peak < 16_000_000 and host_peak < host_size / 2
    assert db_peak < 16_000_000

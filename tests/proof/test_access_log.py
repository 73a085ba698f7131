"""The access log: each export path (the domain functions a host's download calls, and
the command line) leaves exactly one row naming who, what, which client and how; the
log is the practice's own, append-only, kept through erasure, and in the proof bundle.
SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from hostkit import TestHost, staff
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from hookspecs.types import ClientRef, TenantRef
from samtycke_plugin import access_log, consent, export, hostdb
from samtycke_plugin.access_log import Viewer
from samtycke_plugin.cli import main
from samtycke_plugin.db import run_in_transaction
from samtycke_plugin.models import AccessLogEntry

BY = Viewer(actor="staff:s9", via="download")


def _practice(host: TestHost) -> tuple[str, str]:
    tenant = host.new_tenant()
    host.activate(host.hooks(), tenant, ask_new_clients=True)
    client = host.new_client(tenant, name="Greta Loggad", email="greta@example.org")
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=host.now(),
                          note=None)
    host.session().commit()
    return tenant, client


def rows(host: TestHost, tenant: str) -> list[tuple[Any, ...]]:
    host.session().rollback()
    found = host.session().execute(
        select(AccessLogEntry.actor, AccessLogEntry.action, AccessLogEntry.client_ref,
               AccessLogEntry.via, AccessLogEntry.detail)
        .where(AccessLogEntry.tenant_ref == tenant).order_by(AccessLogEntry.id)
    ).all()
    host.session().rollback()
    return [tuple(r) for r in found]


EXPORTS: dict[str, Callable[[TestHost, str, str], object]] = {
    "download_json": lambda h, t, c: export.client_history_json(h, t, c, by=BY),
    "download_csv": lambda h, t, c: export.client_history_csv(h, t, c, by=BY),
    "view_proof_page": lambda h, t, c: export.client_history_html(h, t, c, by=BY, locale="en"),
    "download_bundle": lambda h, t, c: export.proof_bundle(h, t, c, by=BY),
    "export_status_list": lambda h, t, c: "".join(export.practice_status_csv(h, t, by=BY)),
}


@pytest.mark.parametrize("action", list(EXPORTS))
def test_each_export_writes_exactly_one_row(host: TestHost, action: str) -> None:
    tenant, client = _practice(host)
    assert rows(host, tenant) == []
    EXPORTS[action](host, tenant, client)
    [(actor, logged, ref, via, detail)] = rows(host, tenant)
    assert (actor, logged, via) == ("staff:s9", action, "download")
    if action == "export_status_list":
        assert ref is None and detail == "with_names"  # the whole practice
    else:
        assert ref == client and detail is not None and detail.startswith("locale=")
    # Committed: another connection sees it.
    with host.engine.connect() as conn:
        assert conn.scalar(text(
            "SELECT count(*) FROM samtycke_access_log WHERE tenant_ref = :t"), {"t": tenant}) == 1


def test_a_failed_export_logs_nothing_and_another_practice_is_untouched(host: TestHost) -> None:
    a, client = _practice(host)
    b, b_client = _practice(host)
    with pytest.raises(Exception, match="no data"):
        export.client_history_json(host, "t-never-activated", client, by=BY)
    export.client_history_json(host, a, client, by=BY)
    # A's export of a ref that is B's client shows an empty history, logged under A only.
    export.client_history_json(host, a, b_client, by=BY)
    assert [r[2] for r in rows(host, a)] == [client, b_client]
    assert rows(host, b) == []
    assert [e.client for e in access_log.entries(host, b).entries] == []
    assert [e.client for e in access_log.entries(host, a, client=client).entries] == [client]


def test_the_bundle_lists_who_looked_this_download_included(host: TestHost) -> None:
    tenant, client = _practice(host)
    other = host.new_client(tenant)
    export.client_history_csv(host, tenant, client, by=Viewer(actor="staff:s2", via="page"))
    export.client_history_csv(host, tenant, other, by=BY)
    data = export.proof_bundle(host, tenant, client, by=BY)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        logged = list(csv.DictReader(io.StringIO(archive.read("access-log.csv").decode())))
        manifest = archive.read("MANIFEST.sha256").decode()
    assert [(r["actor"], r["action"]) for r in logged] == [
        ("staff:s9", "download_bundle"), ("staff:s2", "download_csv")]
    assert {r["client_ref"] for r in logged} == {client}  # the other client's row is not here
    assert "  access-log.csv\n" in manifest


def test_pages_of_the_log_are_newest_first(host: TestHost) -> None:
    tenant, client = _practice(host)
    for _ in range(5):
        export.client_history_csv(host, tenant, client, by=BY)
    first = access_log.entries(host, tenant, limit=2)
    second = access_log.entries(host, tenant, limit=2, before=first.older)
    third = access_log.entries(host, tenant, limit=2, before=second.older)
    ids = [e.id for p in (first, second, third) for e in p.entries]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    assert third.older is None and first.older is not None
    assert [e.id for e in access_log.all_entries(host, tenant)] == ids


def test_the_log_is_append_only(host: TestHost) -> None:
    tenant, client = _practice(host)
    export.client_history_csv(host, tenant, client, by=BY)
    statements = ["UPDATE samtycke_access_log SET actor = 'staff:x'",
                  "DELETE FROM samtycke_access_log"]
    if host.engine.dialect.name == "postgresql":
        statements.append("TRUNCATE samtycke_access_log")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), host.engine.begin() as conn:
            conn.execute(text(statement))
    assert len(rows(host, tenant)) == 1


def test_erasure_keeps_the_rows_and_they_hold_nothing_personal(host: TestHost) -> None:
    tenant, client = _practice(host)
    export.proof_bundle(host, tenant, client, by=BY)
    before = rows(host, tenant)
    host.hooks().client_erased(TenantRef(tenant), ClientRef(client))
    host.session().commit()
    assert rows(host, tenant) == before
    flat = repr(before)
    assert "Greta" not in flat and "greta@example.org" not in flat


def test_a_detail_is_a_code_never_free_text(host: TestHost) -> None:
    tenant, client = _practice(host)
    for bad in ("Greta Loggad", "x" * 81, "a\nb"):
        with pytest.raises(ValueError), hostdb.unit_of_work(host) as session:
            access_log.record(session, host, tenant, BY, "download_csv", client=client,
                              detail=bad)
    with pytest.raises(ValueError), hostdb.unit_of_work(host) as session:
        access_log.record(session, host, tenant, BY, "looked_around", client=client)
    assert rows(host, tenant) == []


def test_a_read_only_unit_commits_its_row_but_never_a_consent_change(host: TestHost) -> None:
    tenant, client = _practice(host)

    def view(session: Any) -> None:
        access_log.record(session, host, tenant, BY, "view_history", client=client)

    run_in_transaction(host, view, commit=False)
    assert [r[1] for r in rows(host, tenant)] == ["view_history"]

    def view_and_change(session: Any) -> None:
        view(session)
        session.info[hostdb.CHANGED].add((tenant, client, "samtycke"))

    with pytest.raises(RuntimeError, match="read-only"):
        run_in_transaction(host, view_and_change, commit=False)
    assert len(rows(host, tenant)) == 1  # rolled back, row and all


# -- the command line -------------------------------------------------------------------------


def _cli(engine: Engine, *args: str) -> Any:
    url = engine.url.render_as_string(hide_password=False)
    # the database-only host, with staff (cli_support.ROSTER): the owner reads and exports
    return CliRunner().invoke(main, ["--database-url", url, "--host", "cli_support:standalone",
                                     *args], catch_exceptions=False)


@pytest.mark.parametrize(("fmt", "action"), [
    ("json", "download_json"), ("csv", "download_csv"), ("html", "view_proof_page"),
    ("bundle", "download_bundle"), (None, "export_status_list"),
])
def test_each_cli_export_writes_exactly_one_row(
    host: TestHost, tmp_path: Any, fmt: str | None, action: str
) -> None:
    tenant, client = _practice(host)
    host.session().close()
    out = str(tmp_path / "out")
    if fmt is None:
        result = _cli(host.engine, "export", "practice", "--staff", "owner", "--tenant", tenant, "--out", out)
    else:
        result = _cli(host.engine, "export", "client", "--staff", "owner", "--tenant", tenant, "--client", client,
                      "--format", fmt, "--out", out)
    assert result.exit_code == 0, result.output
    [(actor, logged, ref, via, detail)] = rows(host, tenant)
    assert (actor, logged, via) == ("staff:owner", action, "cli")  # who, not the OS user
    assert ref == (None if fmt is None else client)
    if fmt is None:
        assert detail == "refs_only"  # a host that lists no clients: no names or addresses


def test_the_access_log_command(host: TestHost) -> None:
    tenant, client = _practice(host)
    other = host.new_client(tenant)
    export.client_history_csv(host, tenant, client, by=BY)
    export.client_history_json(host, tenant, other, by=BY)
    "".join(export.practice_status_csv(host, tenant, by=BY, from_host=False))
    b, b_client = _practice(host)
    export.client_history_csv(host, b, b_client, by=BY)
    host.session().close()
    shown = _cli(host.engine, "access-log", "--staff", "owner", "--tenant", tenant)
    assert shown.exit_code == 0, shown.output
    lines = [line for line in shown.output.splitlines() if "staff:s9" in line]
    assert len(lines) == 3 and "whole practice" in lines[0] and "export_status_list" in lines[0]
    assert f"client {other}" in lines[1] and f"client {client}" in lines[2]
    assert b_client not in shown.output  # another practice's log is not there
    one = _cli(host.engine, "access-log", "--staff", "owner", "--tenant", tenant, "--client", client,
               "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(one.stdout)))
    assert [(r["client_ref"], r["action"]) for r in parsed] == [(client, "download_csv")]
    assert len(rows(host, tenant)) == 3  # reading the log records nothing
    missing = _cli(host.engine, "access-log", "--staff", "owner", "--tenant", "t-never-activated")
    assert missing.exit_code == 1 and "no data" in missing.output

"""The benchmark runs and reports every figure, and its data set is what the app would
have written (not timed: no assertion here depends on how fast anything is)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

# bench/ and examples/ are not part of the installed package: import them from the source
# tree, after the installed packages (so samtycke_plugin still comes from the installation).
ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))

from conftest import create_pg_database, drop_pg_database  # noqa: E402

from bench import run  # noqa: E402
from bench.generate import PracticeSpec, generate  # noqa: E402
from bench.site import close_app, make_app  # noqa: E402
from examples.host_app.models import Client  # noqa: E402
from examples.host_app.testing import platform_of  # noqa: E402
from hookspecs.types import TenantRef  # noqa: E402
from samtycke_plugin import panels, practices  # noqa: E402
from samtycke_plugin.chain import verify_chain  # noqa: E402
from samtycke_plugin.ledger import projection, replay  # noqa: E402
from samtycke_plugin.models import ConsentEvent  # noqa: E402

IDS = {"C1", "C2", "C3", "C4", "C4 growth", "C5", "C6", "C7 verify", "C7 export", "C8"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(URL of an empty database, the admin URL the benchmark takes) for each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gen.sqlite'}", ""
        return
    admin = request.getfixturevalue("pg_server")
    url = create_pg_database(admin)
    yield url, admin
    drop_pg_database(admin, url)


@pytest.fixture
def platform_app(database: tuple[str, str]) -> Iterator[Flask]:
    app = make_app(database[0])
    yield app
    close_app(app)


def test_generated_practices_verify_and_match_a_replay(platform_app: Flask) -> None:
    specs = [
        PracticeSpec(name="a", clients=300, current_major=2, validity_days=730, seed=11),
        PracticeSpec(name="b", clients=200, current_major=3, validity_days=None,
                     required=True, seed=12),
        PracticeSpec(name="plain", clients=50, app=False, seed=13),
        PracticeSpec(name="c", clients=150, purposes=("reminders", "newsletter"), seed=14),
    ]
    platform = platform_of(platform_app)
    gen = generate(platform.engine, specs, log=lambda _msg: None)
    session = platform.db()
    try:
        for spec in specs:
            g = gen[spec.name]
            clients = session.scalars(select(Client.id).where(Client.practice_id == g.practice_id)
                                      .order_by(Client.id)).all()
            assert list(clients) == list(range(g.first_client, g.first_client + spec.clients))
            events = session.scalar(select(func.count()).select_from(ConsentEvent)
                                    .where(ConsentEvent.tenant_ref == g.tenant))
            if not spec.app:
                assert events == g.events == 0
                continue
            assert verify_chain(session, g.tenant).ok
            assert projection(session, g.tenant) == replay(session, g.tenant)
            assert events == g.events > spec.clients  # more than one event per client
            # The generator's split is what the app's list filter says on the host's table.
            clause = platform.apps.filter_condition(g.practice_id, panels.FILTER_NOT_VALID)
            assert clause is not None
            without = set(session.scalars(
                select(Client.id).where(Client.practice_id == g.practice_id, clause)))
            assert without == set(g.not_valid)
            assert 0 < len(without) < spec.clients
            assert set(g.not_valid_by_purpose) == set(spec.purposes)
            for key, count in g.not_valid_by_purpose.items():
                clause = platform.apps.filter_condition(
                    g.practice_id, f"{panels.FILTER_NOT_VALID}.{key}")
                assert clause is not None
                assert 0 < count < spec.clients
                assert session.scalar(select(func.count()).select_from(Client).where(
                    Client.practice_id == g.practice_id, clause)) == count
        assert practices.get_practice(session, TenantRef(gen["plain"].tenant)) is None
    finally:
        platform.sessions.remove()


def test_the_benchmark_reports_c1_to_c8(database: tuple[str, str], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny run on each backend: every figure is measured, printed and written to the
    JSON, and the checks that do not depend on speed hold (the batch reached every client
    without valid consent, the chain verified, the CSV has a line per client)."""
    args = ["--smoke", "--practices", "4", "--clients", "200", "--out", str(tmp_path / "out")]
    if database[1]:
        args += ["--database-url", database[1]]
    code = run.main(args)
    assert code in (0, 1)  # 1: a target missed, which a tiny run may well do
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / f"{'postgresql' if database[1] else 'sqlite'}"
                         "-smoke.json").read_text())
    results = {r["id"]: r for r in report["results"]}
    assert set(results) == IDS
    table = printed[printed.index("id "):]
    for id_ in IDS:
        assert f"\n{id_} " in table
    assert code == (0 if all(r["passed"] for r in results.values()) else 1)
    c6 = results["C6"]["extra"]
    # everyone without valid consent is asked, except those who withdrew or declined
    assert c6["status"] == 303 and c6["queued"] == c6["to_ask"] > 0
    assert c6["to_ask"] < c6["without_valid_consent"]
    assert "problem" not in results["C7 verify"]["extra"]
    assert "problem" not in results["C7 export"]["extra"]
    assert results["C8"]["extra"]["booked"] > 0
    assert [g["clients"] for g in report["growth"]] == [20, 200, 2000]
    assert report["sizes"]["host_clients"] == 4 * 200 + 200 + 20 + 2000 + 700 + 200
    assert results["C4"]["extra"]["purposes"] == 3

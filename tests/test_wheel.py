"""Build the wheel, install it into a fresh virtualenv and drive the flow from a minimal
host that discovers the app only through its entry point (as a real platform would)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

HOST_SCRIPT = textwrap.dedent(
    """
    import re, sys
    from contextlib import contextmanager
    from datetime import UTC, datetime
    from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select, text
    from sqlalchemy.orm import Session
    from hookspecs.facade import AppHooks, make_plugin_manager
    from hookspecs.types import (BookingFormContext, BookingRef, BookingSubmission, ClientInfo,
                                 ClientRef, PracticeInfo, StaffContext, StaffRef, TenantRef)

    assert "samtycke_plugin" not in sys.modules
    url = sys.argv[1]
    engine = create_engine(url)
    md = MetaData()
    clients = Table("shop_client", md, Column("id", Integer, primary_key=True),
                    Column("name", String(80)), Column("email", String(80)))
    md.create_all(engine)

    class Host:
        def __init__(self):
            self.s = Session(engine)
        def connection(self):  # the DB-API connection of the session's transaction
            return self.s.connection().connection.driver_connection
        @contextmanager
        def unit_of_work(self):
            with engine.begin() as conn:
                yield conn.connection.driver_connection
        def now(self): return datetime.now(UTC)
        def lookup_client(self, tenant, client):
            row = self.s.execute(select(clients).where(clients.c.id == int(client))).one_or_none()
            return row and ClientInfo(ref=client, name=row.name, email=row.email, locale="sv")
        def iter_clients(self, tenant):
            for row in self.s.execute(select(clients)):
                yield ClientInfo(ref=ClientRef(str(row.id)), name=row.name, email=row.email, locale="sv")
        def practice_info(self, tenant):
            return PracticeInfo(ref=tenant, name="Salong Sax", email="hej@sax.example", phone=None, locale="sv")
        def absolute_url(self, tenant, path): return "http://shop.example" + path
        def app_secret(self, app): return b"0123456789abcdef0123456789abcdef"
        def deliver_email(self, tenant, message): return None

    host = Host()
    pm = make_plugin_manager(strict=True)
    assert [n for n, _ in pm.list_name_plugin()] == ["samtycke"], pm.list_name_plugin()
    tenant = TenantRef("salong-1")
    hooks = AppHooks(pm, host, lambda t: {"samtycke"})
    hooks.activate(tenant, "samtycke", {"require_consent_for_online_booking": True})
    host.s.commit()

    def form(client):
        frags = hooks.form_fragments(BookingFormContext(tenant=tenant, client=client, locale="sv"))
        if not frags:
            return None
        return re.search(r'name="samtycke_text" value="(\\d+)"', frags[0].html).group(1)

    def submit(client, ticked, text_id):
        fields = {"samtycke_text": text_id or ""}
        if ticked:
            fields["samtycke_consent"] = "yes"
        return BookingSubmission(tenant=tenant, client=client, is_new_client=client is None,
                                 channel="online", fields=fields, locale="sv",
                                 ip_address="198.51.100.23", user_agent="wheel-test")

    text_id = form(None)
    assert text_id
    vetoes = hooks.submit_check(submit(None, False, text_id))
    assert [v.key for v in vetoes] == ["samtycke.consent_required"], vetoes
    sub = submit(None, True, text_id)
    assert hooks.submit_check(sub) == []
    cid = host.s.execute(insert(clients).values(name="Eva", email="eva@example.org").returning(clients.c.id)).scalar_one()
    other = host.s.execute(insert(clients).values(name="Olle", email=None).returning(clients.c.id)).scalar_one()
    hooks.submitted(sub, BookingRef("b1"), ClientRef(str(cid)))
    host.s.commit()

    badges = hooks.list_badges(tenant, [ClientRef(str(cid)), ClientRef(str(other))], "sv")
    assert badges[ClientRef(str(cid))][0].label == "Giltigt samtycke"
    assert badges[ClientRef(str(other))][0].label == "Inget samtycke"
    clause = hooks.list_filter_clause(tenant, "samtycke.not_valid", "CAST(shop_client.id AS VARCHAR)")
    condition = text(clause.condition.sql).bindparams(**clause.condition.params)
    ids = host.s.scalars(select(clients.c.id).where(condition)).all()
    assert ids == [other], ids
    assert form(ClientRef(str(cid))) is None

    from samtycke_plugin import practices  # the practitioner edits the text (content change)

    from samtycke_plugin import practice_texts
    practice_texts.publish_text(host, tenant, bodies={"sv": "Ny text: vi sparar dina uppgifter i tio år."},
                         kind="content", reason="längre lagring", actor="staff:owner", expected_major=1)
    host.s.commit()
    new_id = form(ClientRef(str(cid)))
    assert new_id and new_id != text_id
    assert hooks.list_badges(tenant, [ClientRef(str(cid))], "en")[ClientRef(str(cid))][0].label == "Outdated text"
    from samtycke_plugin.purpose_catalogue import CATALOGUE  # shipped texts are in the wheel
    assert all("$practice_name" in p.template(lang) for p in CATALOGUE for lang in ("sv", "en"))
    print("FLOW OK")
    """
)


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result  # type: ignore[no-any-return]


@pytest.mark.slow
def test_wheel_installs_and_runs_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)])
    [wheel] = list(dist.glob("samtycke_plugin-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", str(wheel)])
    db = tmp_path / "shop.sqlite"
    # migrations through the console script, from a folder outside the repository
    out = _run(
        [str(venv / "bin" / "samtycke"), "--database-url", f"sqlite:///{db}", "db", "upgrade"],
        cwd=tmp_path,
    )
    assert "revision head" in out.stdout
    script = tmp_path / "host.py"
    script.write_text(HOST_SCRIPT)
    result = _run([str(py), str(script), f"sqlite:///{db}"], cwd=tmp_path)
    assert "FLOW OK" in result.stdout
    # the installed files are the wheel's, not the source tree's
    where = _run(
        [
            str(py),
            "-c",
            "import samtycke_plugin, hookspecs, hookimpls; print(samtycke_plugin.__file__)",
        ],
        cwd=tmp_path,
    )
    assert str(ROOT) not in where.stdout

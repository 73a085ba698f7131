"""The Flask integration's own rules; the example platform (tests/example) drives the
rest of it end to end on SQLite and PostgreSQL."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from markupsafe import Markup

from hookspecs.types import StaffContext, StaffRef
from samtycke_plugin.integrations.flask import FlaskApps, Fragment, Practitioner

PACKAGE = Path(__file__).resolve().parents[1] / "samtycke_plugin"


def test_only_the_flask_integration_imports_flask() -> None:
    """The app itself never needs Flask (it is the ``demo`` extra's)."""
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "flask" for name in names):
                importers.add(path.relative_to(PACKAGE).as_posix())
    assert importers == {"integrations/flask.py", "integrations/flask_exports.py",
                         "integrations/flask_mount.py"}


def test_fragments_keep_the_apps_html_and_escape_the_veto_messages() -> None:
    fragment = Fragment(key="samtycke.consent", html=Markup("<input name=x>"),
                        field_names=("x",))
    html = FlaskApps.fragments_html([fragment], {"samtycke.consent": ["<b>Tick</b> & send"]})
    assert '<div class="app-fragment" id="app-samtycke-consent" tabindex="-1">' in html
    assert '<p class="field-error">&lt;b&gt;Tick&lt;/b&gt; &amp; send</p>' in html
    assert "<input name=x>" in html
    assert FlaskApps.fragments_html([fragment]).count("field-error") == 0
    key, markup, names = fragment  # templates unpack it
    assert (key, names) == ("samtycke.consent", ("x",)) and isinstance(markup, Markup)


def test_a_practitioner_is_the_staff_context_the_app_gets() -> None:
    who = Practitioner(tenant=7, ref=12, name="Eva", can_record_consent=False, session="s")
    assert who.staff == StaffContext(ref=StaffRef("12"), name="Eva", can_record_consent=False)


def test_in_pages_reads_every_row_once_and_leaves_no_cursor_open(tmp_path: Path) -> None:
    from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select
    from sqlalchemy.orm import Session

    from samtycke_plugin.integrations.flask import in_pages

    engine = create_engine(f"sqlite:///{tmp_path / 'pages.sqlite'}")
    rows = Table("rows", MetaData(), Column("id", Integer, primary_key=True),
                 Column("name", String))
    rows.create(engine)
    with Session(engine) as session:
        session.execute(insert(rows), [{"id": i * 3, "name": f"n{i}"} for i in range(1, 8)])
        seen = []
        for row in in_pages(lambda: session, select(rows.c.id, rows.c.name), size=2):
            # Between rows the connection is free: a function can be registered on it
            # (sqlite3 refuses that while a statement of the connection is unfinished).
            session.connection().connection.driver_connection.create_function(
                "f", 0, lambda: 1)
            seen.append(tuple(row))
        assert seen == [(i * 3, f"n{i}") for i in range(1, 8)]


def test_the_activation_table_stores_and_reads_which_apps_are_active(tmp_path: Path) -> None:
    from datetime import datetime

    from sqlalchemy import (
        Boolean,
        Column,
        DateTime,
        Integer,
        MetaData,
        String,
        Table,
        create_engine,
        select,
    )
    from sqlalchemy.orm import Session

    from samtycke_plugin.integrations.sqlalchemy_tables import ActivationColumns

    table = Table("activation", MetaData(), Column("practice", Integer, primary_key=True),
                  Column("app", String(60), primary_key=True), Column("active", Boolean),
                  Column("at", DateTime), Column("by", Integer))
    engine = create_engine(f"sqlite:///{tmp_path / 'activation.sqlite'}")
    table.metadata.create_all(engine)
    c = table.c
    columns = ActivationColumns(tenant=c.practice, key=c.app, active=c.active,
                                changed_at=c.at, changed_by=c.by)
    at = datetime(2024, 5, 1, 12)
    with Session(engine) as session:
        columns.store(session, "7", "samtycke", True, at=at, by="3")
        columns.store(session, "7", "other", True, at=at, by=None)
        columns.store(session, "8", "samtycke", True, at=at, by="4")
        columns.store(session, "7", "other", False, at=at, by="3")  # the same row again
        assert columns.active_keys(session, "7") == ["samtycke"]
        assert columns.active_keys(session, "8") == ["samtycke"]
        assert columns.active_keys(session, "x") == []  # not an id: no practice
        rows = session.execute(select(c.practice, c.app, c.active, c.by).order_by(
            c.practice, c.app)).all()
        assert [tuple(r) for r in rows] == [(7, "other", False, 3), (7, "samtycke", True, 3),
                                            (8, "samtycke", True, 4)]
        with pytest.raises(LookupError):
            columns.store(session, "x", "samtycke", True, at=at, by=None)


def test_may_use_answers_by_client_and_says_when_no_app_keeps_consent() -> None:
    from datetime import UTC, datetime

    from hookspecs.types import ClientRef, ConsentAnswer, UnknownPurpose

    calls: list[tuple[object, list[ClientRef], str]] = []

    class Hooks:
        answers: dict[ClientRef, ConsentAnswer] | None = None

        def consent_lookup(self, tenant: object, clients: list[ClientRef], purpose: str
                           ) -> dict[ClientRef, ConsentAnswer] | None:
            calls.append((tenant, clients, purpose))
            if purpose == "newsletter":
                raise UnknownPurpose(purpose)
            return self.answers

    apps = object.__new__(FlaskApps)
    hooks = Hooks()
    apps.hooks = hooks  # type: ignore[assignment]
    assert apps.may_use(7, [1, 2], "reminders") is None  # no consent app: the host's rule
    valid = ConsentAnswer(may_use=True, status="valid", since=datetime(2026, 1, 1, tzinfo=UTC),
                          expires_at=None)
    withdrawn = ConsentAnswer(may_use=False, status="withdrawn", since=None, expires_at=None)
    hooks.answers = {ClientRef("1"): valid, ClientRef("2"): withdrawn}
    assert apps.may_use(7, [1, 2], "reminders") == {"1": True, "2": False}
    assert apps.may_use(7, [1, 2], "newsletter") == {"1": False, "2": False}
    assert calls[1] == ("7", ["1", "2"], "reminders")  # one lookup for all the clients
    assert len(calls) == 3

"""The host contract is framework-neutral: no SQLAlchemy type in it, the database as a
plain DB-API connection (write hooks refuse one that would autocommit), list filters as
SQL text any driver runs, and dates that survive a host's own sqlite3 converters."""

from __future__ import annotations

import ast
import inspect
import sqlite3
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from hostkit import QueryHost, TestHost, staff
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

import hookspecs
from hookspecs import host as host_module
from hookspecs import spec as spec_module
from hookspecs import types as types_module
from hookspecs.types import (
    BookingRef,
    ClientCreated,
    ClientRef,
    NoHostTransaction,
    SqlText,
    TenantRef,
)
from samtycke_plugin import consent, panels, practice_texts
from samtycke_plugin.access_log import Viewer
from samtycke_plugin.export import client_history
from samtycke_plugin.models import Practice
from samtycke_plugin.rules import Status

#: Who reads in these tests (each export records an access-log row).
READER = Viewer(actor="cli:tests", via="cli")


HOOKSPECS = Path(hookspecs.__file__).resolve().parent


# -- (a) no SQLAlchemy type in the contract ---------------------------------------------


def _namespace(module: Any) -> dict[str, Any]:
    """The module's globals plus the names it imports only under ``TYPE_CHECKING``."""
    ns = dict(vars(module))
    tree = ast.parse(inspect.getsource(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING",
                                                                   "typing.TYPE_CHECKING"):
            exec(compile(ast.Module(body=node.body, type_ignores=[]), "<imports>", "exec"), ns)
    return ns


def _types_in(hint: Any) -> Iterator[Any]:
    yield hint
    origin = typing.get_origin(hint)
    if origin is not None:
        yield origin
    for arg in typing.get_args(hint):
        if isinstance(arg, list | tuple):
            for a in arg:
                yield from _types_in(a)
        else:
            yield from _types_in(arg)


def _sqlalchemy_types(hints: dict[str, Any]) -> list[str]:
    return [
        f"{name}: {t!r}"
        for name, hint in hints.items()
        for t in _types_in(hint)
        if str(getattr(t, "__module__", "")).startswith("sqlalchemy")
    ]


def _hookspecs() -> list[Any]:
    found = []
    for _name, cls in inspect.getmembers(spec_module, inspect.isclass):
        if cls.__module__ != spec_module.__name__:
            continue
        for fname, fn in vars(cls).items():
            if fname.startswith("booking_") and callable(fn):
                found.append(fn)
    return found


def test_no_hookspec_annotation_is_a_sqlalchemy_type() -> None:
    ns = _namespace(spec_module)
    specs = _hookspecs()
    assert len(specs) >= 13
    for fn in specs:
        hints = typing.get_type_hints(fn, globalns=ns)
        assert "host" in hints and "return" in hints, fn.__name__  # resolved, not skipped
        assert _sqlalchemy_types(hints) == [], fn.__name__


def test_no_host_protocol_method_uses_a_sqlalchemy_type() -> None:
    ns = _namespace(host_module)
    protocols = [host_module.Host, host_module.ClientQuery, host_module.PageLayout]
    checked = 0
    for proto in protocols:
        for name, fn in vars(proto).items():
            if name.startswith("_") or not callable(fn):
                continue
            hints = typing.get_type_hints(fn, globalns=ns)
            assert "return" in hints, f"{proto.__name__}.{name}"
            assert _sqlalchemy_types(hints) == [], f"{proto.__name__}.{name}"
            checked += 1
    assert {"connection", "unit_of_work", "client_query"} <= {
        n for p in protocols for n in vars(p)
    }
    assert checked >= 12


def test_no_field_of_the_exchanged_types_is_a_sqlalchemy_type() -> None:
    ns = _namespace(types_module)
    classes = [c for _n, c in inspect.getmembers(types_module, inspect.isclass)
               if attrs.has(c) and c.__module__ == types_module.__name__]
    assert {"FilterClause", "SqlText", "ClientSelect", "AppPage"} <= {c.__name__ for c in classes}
    for cls in classes:
        hints = typing.get_type_hints(cls, globalns=ns)
        assert set(hints) >= {f.name for f in attrs.fields(cls)}, cls.__name__
        assert _sqlalchemy_types(hints) == [], cls.__name__


def test_the_hookspecs_package_imports_nothing_from_sqlalchemy() -> None:
    for path in sorted(HOOKSPECS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            assert not [n for n in names if n.split(".")[0] == "sqlalchemy"], path.name


def test_the_checks_above_see_a_sqlalchemy_annotation() -> None:
    """The detector itself: a hint naming a SQLAlchemy type is found, also nested."""
    from sqlalchemy import ColumnElement

    def spec(column: ColumnElement[str] | None) -> list[ColumnElement[bool]]:
        raise NotImplementedError

    hints = typing.get_type_hints(spec, localns={"ColumnElement": ColumnElement})
    assert len(_sqlalchemy_types(hints)) >= 2


# -- a host on a raw DB-API connection --------------------------------------------------


def _raw_connection(engine: Engine, *, autocommit: bool, **sqlite_kw: Any) -> Any:
    if engine.dialect.name == "sqlite":
        return sqlite3.connect(engine.url.database or "", isolation_level=None,
                               check_same_thread=False, **sqlite_kw)
    url = make_url(engine.url).set(drivername="postgresql")
    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=autocommit)


class RawHost(TestHost):
    """A host that is not SQLAlchemy at all on its side: one DB-API connection.

    ``begin=False``: :meth:`connection` gives it as it is (autocommit, no transaction
    open), which the write hooks must refuse."""

    __test__ = False

    def __init__(self, engine: Engine, raw: Any, *, begin: bool = True) -> None:
        super().__init__(engine)
        self.raw = raw
        self.begin = begin

    def connection(self) -> Any:
        if self.begin and isinstance(self.raw, sqlite3.Connection) and not self.raw.in_transaction:
            self.raw.execute("BEGIN IMMEDIATE")
        return self.raw

    @contextmanager
    def unit_of_work(self) -> Iterator[Any]:  # type: ignore[override]
        if isinstance(self.raw, sqlite3.Connection):
            self.raw.execute("BEGIN IMMEDIATE")
        try:
            yield self.raw
        except BaseException:
            self.raw.rollback()
            raise
        self.raw.commit()

    def close(self) -> None:
        self.raw.close()
        super().close()


def _practice_rows(engine: Engine, tenant: str) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(Practice.tenant_ref).where(
            Practice.tenant_ref == tenant)).all())


# -- (b) write hooks refuse a connection that would autocommit ---------------------------


def test_write_hooks_refuse_an_autocommit_connection(engine: Engine) -> None:
    ready = TestHost(engine)
    hooks = ready.hooks()
    tenant = ready.new_tenant()
    ready.activate(hooks, tenant)
    client = ready.new_client(tenant)
    ready.close()

    raw = _raw_connection(engine, autocommit=True)
    host = RawHost(engine, raw, begin=False)
    host.clients, host.practices, host.active = ready.clients, ready.practices, ready.active
    hooks = host.hooks()
    fresh = host.new_tenant()
    from hostkit import submission

    calls = {
        "activated": lambda: hooks.activate(fresh, "samtycke", {}),
        "deactivated": lambda: hooks.deactivate(tenant, "samtycke"),
        "submitted": lambda: hooks.submitted(
            submission(tenant, client, ticked=True), BookingRef("b1"), ClientRef(client)),
        "client_created": lambda: hooks.client_created(ClientCreated(
            tenant=tenant, client=ClientRef(client), created_by="staff", at=host.now())),
        "client_erased": lambda: hooks.client_erased(tenant, ClientRef(client)),
    }
    try:
        for name, call in calls.items():
            with pytest.raises(NoHostTransaction, match="autocommit") as err:
                call()
            assert "transaction" in str(err.value), name
        assert _practice_rows(engine, fresh) == 0  # nothing written
        assert consent.client_status(host, tenant, client).status is Status.UNKNOWN
        # the same connection inside a transaction: the hook writes, the host commits
        if isinstance(raw, sqlite3.Connection):
            raw.execute("BEGIN IMMEDIATE")
        else:
            raw.autocommit = False
        hooks.activate(fresh, "samtycke", {})
        raw.commit()
        assert _practice_rows(engine, fresh) == 1
    finally:
        host.close()


# -- (c) the filter clause on plain DB-API cursors ----------------------------------------


def test_the_filter_clause_runs_on_plain_dbapi_cursors(engine: Engine) -> None:
    host = QueryHost(engine)
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, validity_days=30)
    clients = {kind: host.new_client(tenant, name=f"Klient {kind}")
               for kind in ("expired", "valid", "withdrawn", "none")}
    for kind in ("expired", "valid", "withdrawn"):
        if kind == "valid":
            host.advance(days=40)  # the first consent has expired meanwhile
        consent.record_manual(host, tenant, clients[kind], staff(), method="paper",
                              given_at=host.now(), note=None)
    consent.withdraw(host, tenant, clients["withdrawn"], actor="staff:s1", channel="manual",
                     method="paper", by_client=False)
    host.client_query(tenant)  # the host's own client table, filled
    host.session().commit()

    expected = {ref for ref in clients.values()
                if consent.client_status(host, tenant, ref).status is Status.VALID}
    assert expected == {clients["valid"]}
    practice = host.session().get(Practice, tenant)
    assert practice is not None
    assert practice_texts.count_valid(host.session(), practice, host.now()) == len(expected)
    host.session().commit()

    dbapi = host.connection()
    found: dict[str, set[str]] = {}
    for key in ("samtycke.valid", "samtycke.not_valid"):
        clause = hooks.list_filter_clause(tenant, key, "hostkit_client.ref")
        assert clause is not None
        cond = clause.condition
        assert cond.params and all(name.startswith("samtycke_") for name in cond.params)
        assert "::" not in cond.sql  # no driver casts: SQLAlchemy's text() takes it too
        if isinstance(dbapi, sqlite3.Connection):
            # the app's own storage form: no driver converter needed for a time
            assert all(isinstance(v, str | int | bool | type(None)) for v in cond.params.values())
        query = SqlText(
            sql=f"SELECT ref FROM hostkit_client WHERE tenant = :tenant AND {cond.sql}",
            params={"tenant": tenant, **cond.params},
        )
        cur = dbapi.cursor()
        if isinstance(dbapi, sqlite3.Connection):
            cur.execute(query.sql, dict(query.params))  # named style
        else:
            cur.execute(*query.format_style())  # %s style (psycopg, Django)
        found[key] = {row[0] for row in cur.fetchall()}
        cur.close()
    assert found["samtycke.valid"] == expected
    assert found["samtycke.not_valid"] == set(clients.values()) - expected
    host.session().rollback()
    host.close()


def test_the_app_s_bind_names_do_not_collide_with_the_host_s(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant)
    clause = panels.filter_clause(host, tenant, panels.FILTER_VALID, "c.ref")
    assert clause is not None
    assert ":tenant" not in clause.condition.sql and ":samtycke_" in clause.condition.sql
    assert "c.ref" in clause.condition.sql
    host.session().rollback()


# -- (d) a host's sqlite3 connection with detect_types -------------------------------------


@pytest.fixture
def django_like_converters() -> Iterator[None]:
    """Converters for DATETIME/TIMESTAMP columns, as Django's SQLite backend registers
    them (process-wide: restored afterwards)."""
    saved = dict(sqlite3.converters)

    def parse(value: bytes) -> datetime:
        return datetime.fromisoformat(value.decode())

    sqlite3.register_converter("datetime", parse)
    sqlite3.register_converter("timestamp", parse)
    try:
        yield
    finally:
        sqlite3.converters.clear()
        sqlite3.converters.update(saved)


def test_dates_survive_a_connection_with_detect_types(
    sqlite_engine: Engine, django_like_converters: None
) -> None:
    raw = _raw_connection(sqlite_engine, autocommit=False,
                          detect_types=sqlite3.PARSE_DECLTYPES | sqlite3.PARSE_COLNAMES)
    host = RawHost(sqlite_engine, raw)
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.active[tenant] = {"samtycke"}
    hooks.activate(tenant, "samtycke", {"validity_days": 365})
    raw.commit()
    client = host.new_client(tenant)
    given = host.now() - timedelta(days=3)
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=given,
                          note=None)
    raw.commit()
    # the converter does turn the app's columns into datetimes on this connection
    [(occurred,)] = raw.execute(
        "SELECT occurred_at FROM samtycke_consent_event WHERE tenant_ref = ?", (tenant,)
    ).fetchall()
    assert isinstance(occurred, datetime)
    status = consent.client_status(host, tenant, client)
    assert status.status is Status.VALID
    raw.commit()  # an export is the app's own unit of work (it records an access-log row)
    history = client_history(host, tenant, client, by=READER)
    [event] = history["events"]
    assert event["state"] == "given"
    assert str(event["given_at"]).startswith(given.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"))
    [panel] = hooks.profile_panels(tenant, ClientRef(client), staff(), "en")
    assert f"Given {host.now():%Y-%m-%d}" in panel.html  # the projection's time, read back
    raw.rollback()
    host.close()


def test_the_app_refuses_an_unknown_driver_clearly(host: TestHost) -> None:
    class Odd:
        pass

    host.connection = lambda: Odd()  # type: ignore[method-assign]
    with pytest.raises(TypeError, match=r"sqlite3\.Connection .* psycopg\.Connection"):
        consent.client_status(host, TenantRef("t1"), "c1")

"""The app uses SQLAlchemy through its documented API only: no private attributes of
connections, sessions, engines, compiled statements or results, which change between
SQLAlchemy releases without notice."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("samtycke_plugin", "hookspecs", "hookimpls")

#: Private or internal SQLAlchemy attributes, wherever they are read.
FORBIDDEN = frozenset({
    "_has_events", "_echo", "positiontup", "_bind_processors", "effective_value",
    "_execution_options", "_dbapi_connection", "_transaction", "_result_columns",
})
#: Names the code gives SQLAlchemy objects: any ``_private`` attribute read on them.
SQLALCHEMY_NAMES = frozenset({
    "conn", "connection", "compiled", "stmt", "statement", "session", "engine", "result",
    "dialect", "cursor", "bind", "db", "raw_conn", "dbapi_connection", "trans",
    "transaction", "mapper", "table", "query",
})


def _owner(node: ast.expr) -> str | None:
    """The name of the object an attribute is read on (``a.b.conn`` → conn)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):  # ``session.get_bind()._x``: what the session gives
        func = node.func
        return _owner(func.value) if isinstance(func, ast.Attribute) else _owner(func)
    return None


def private_uses(source: str, filename: str) -> list[str]:
    """``file:line: expression`` of every private SQLAlchemy attribute read in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        attr: str | None = None
        if isinstance(node, ast.Attribute):
            owner, attr = _owner(node.value), node.attr
        elif (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
        ):
            owner, attr = _owner(node.args[0]), node.args[1].value
        if attr is None:
            continue
        private = (
            attr.startswith("_") and not attr.startswith("__")
            and (owner or "").lower() in SQLALCHEMY_NAMES
        )
        if attr in FORBIDDEN or private:
            found.append((node.lineno, f"{filename}:{node.lineno}: {ast.unparse(node)}"))
    return [where for _, where in sorted(found)]


def test_the_check_finds_private_attributes() -> None:
    sample = (
        "if conn._has_events or conn._echo: pass\n"
        "names = compiled.positiontup\n"
        "value = bind.effective_value\n"
        "procs = self.compiled._bind_processors\n"
        "x = session.get_bind()._something\n"
        "y = getattr(conn, '_echo', False)\n"
        "ok = conn.execute(stmt).rowcount + self._plans + session.info.get('k')\n"
    )
    assert [line.split(":")[1] for line in private_uses(sample, "sample.py")] == [
        "1", "1", "2", "3", "4", "5", "6",
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_private_sqlalchemy_attributes(package: str) -> None:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        found += private_uses(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "private SQLAlchemy attributes used:\n" + "\n".join(found)

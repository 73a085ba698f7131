"""What the clinic carries only because of Samtycke is small, counted, and stated in the
example's README; only the glue module (and the demo data, settings' SQLite options)
import the app."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from django_support import ROOT

EXAMPLE = ROOT / "examples" / "django_host"
GLUE = EXAMPLE / "clinic" / "samtycke_glue.py"
LAYOUT = EXAMPLE / "clinic" / "templates" / "clinic" / "samtycke_page.html"
#: A line of the clinic's other files that is there because of the app.
MENTIONS = re.compile(r"samtycke|glue|sqlite_options", re.IGNORECASE)
#: Demo data and Django's generated migrations are not glue a host writes.
NOT_GLUE = {"demo_seed.py", "0001_initial.py"}


def code_lines(path: Path) -> list[int]:
    """Line numbers that are code: not blank, not comments, not docstrings."""
    source = path.read_text("utf-8")
    docs: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docs.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER)
    code: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            code.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docs)
    return sorted(code)


def glue_lines() -> dict[str, int]:
    """Per file: the lines there because of the app (the glue module's and the layout
    template's code lines whole; elsewhere the code lines that name the app or glue)."""
    counts = {"clinic/samtycke_glue.py": len(code_lines(GLUE)),
              "clinic/templates/clinic/samtycke_page.html":
                  sum(1 for line in LAYOUT.read_text("utf-8").splitlines() if line.strip())}
    for path in sorted(EXAMPLE.rglob("*.py")):
        if path in (GLUE,) or path.name in NOT_GLUE:
            continue
        lines = path.read_text("utf-8").splitlines()
        hits = sum(1 for n in code_lines(path) if MENTIONS.search(lines[n - 1].split("#")[0]))
        if hits:
            counts[str(path.relative_to(EXAMPLE))] = hits
    for path in sorted(EXAMPLE.rglob("*.html")):
        if path == LAYOUT:
            continue
        hits = sum(1 for line in path.read_text("utf-8").splitlines() if MENTIONS.search(line))
        if hits:
            counts[str(path.relative_to(EXAMPLE))] = hits
    return counts


def test_the_glue_is_at_most_80_lines_and_the_readme_says_how_many() -> None:
    counts = glue_lines()
    total = sum(counts.values())
    assert total <= 80, counts
    readme = (EXAMPLE / "README.md").read_text("utf-8")
    assert f"**{total} lines**" in readme, (total, counts)
    for name, count in counts.items():
        assert f"| `{name}` | {count} |" in readme, (name, count)


def test_only_the_glue_module_imports_the_app() -> None:
    allowed = {"samtycke_glue.py", "demo_seed.py", "settings.py"}
    offenders = []
    for path in EXAMPLE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.split(".")[0] in ("samtycke_plugin", "hookimpls", "hookspecs") and \
                        path.name not in allowed:
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []

"""The example booking platform through Flask's test client, on SQLite and PostgreSQL.

Each backend gets one migrated database with the demo data; tests isolate by
making their own practices (as the platform's tenants), never by cleaning tables.
"""

from __future__ import annotations

import ast
import re
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import create_pg_database, drop_pg_database
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, inspect, select, text

# The example host is not an installed package: reach it from the repository root,
# appended last so the installed samtycke_plugin still wins over the source tree.
ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))

from examples.host_app import apps_glue, create_app, demo_seed  # noqa: E402
from examples.host_app.i18n import messages  # noqa: E402
from examples.host_app.models import Booking, Client, DevMail, Practice  # noqa: E402
from examples.host_app.testing import activate, add_practice, csrf_from, platform_of  # noqa: E402
from examples.host_app.translations_sv import SV  # noqa: E402
from hookspecs import hookimpl  # noqa: E402
from hookspecs.types import AppInfo, StaffContext, StaffRef, WebMount  # noqa: E402
from samtycke_plugin import booking as online_booking  # noqa: E402
from samtycke_plugin import consent  # noqa: E402
from samtycke_plugin.chain import verify_chain  # noqa: E402
from samtycke_plugin.models import ConsentEvent  # noqa: E402

SECRET = "test-secret-" + "x" * 40


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('host') / 'booking.sqlite'}"
        return
    admin = request.getfixturevalue("pg_server")
    url = create_pg_database(admin)
    yield url
    drop_pg_database(admin, url)


@pytest.fixture(scope="module")
def app(database_url: str) -> Iterator[Flask]:
    flask_app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": SECRET,
                            "BASE_URL": "http://booking.test", "STRICT_APPS": True})
    flask_app.config["TESTING"] = True
    assert demo_seed.seed(platform_of(flask_app))
    yield flask_app
    platform_of(flask_app).sessions.remove()
    platform_of(flask_app).engine.dispose()


def signed_in(app: Flask, email: str, password: str) -> FlaskClient:
    client = app.test_client()
    page = client.get("/login")
    response = client.post("/login", data={"email": email, "password": password,
                                           "csrf_token": csrf_from(page.text)})
    assert response.status_code == 302, response.text
    return client


def token(client: FlaskClient, path: str = "/") -> str:
    return csrf_from(client.get(path).text)


def query(app: Flask, statement: Any) -> list[Any]:
    platform = platform_of(app)
    try:
        return list(platform.db().execute(statement).all())
    finally:
        platform.sessions.remove()


def practice_with_samtycke(app: Flask, **settings: object) -> dict[str, Any]:
    practice = add_practice(platform_of(app), staff=2)
    activate(platform_of(app), practice["id"], **(settings or {"ask_new_clients": True}))
    return practice


def free_slot(client: FlaskClient, slug: str) -> tuple[str, str]:
    page = client.get(f"/book/{slug}").text
    slot = re.search(r'<option value="([0-9T:Z-]+)"', page)
    service_id = re.search(r'name="service" id="service-(\d+)"', page)
    assert slot and service_id
    return service_id.group(1), slot.group(1)


def consent_fields(page: str) -> dict[str, str]:
    found = re.search(r'name="samtycke_text" value="(\d+)"', page)
    return {"samtycke_text": found.group(1)} if found else {}


def book(app: Flask, slug: str, name: str, email: str, *, tick: bool) -> Any:
    browser = app.test_client()
    service_id, slot = free_slot(browser, slug)
    page = browser.get(f"/book/{slug}").text
    data = {"csrf_token": csrf_from(page), "service": service_id, "slot": slot, "name": name,
            "email": email, **consent_fields(page)}
    if tick:
        data["samtycke_consent"] = "yes"
    return browser.post(f"/book/{slug}", data=data)


def events_of(app: Flask, practice_id: int) -> list[Any]:
    return query(app, select(ConsentEvent.client_ref, ConsentEvent.state, ConsentEvent.booking_ref)
                 .where(ConsentEvent.tenant_ref == str(practice_id))
                 .order_by(ConsentEvent.seq))


# -- the migrate step, the seed and the glue boundary --------------------------------------------


def test_migrate_step_runs_platform_and_app_migrations(app: Flask, database_url: str) -> None:
    engine = platform_of(app).engine
    tables = set(inspect(engine).get_table_names())
    assert {"host_practice", "host_client", "host_booking", "host_app_activation",
            "host_alembic_version", "samtycke_alembic_version",
            "samtycke_consent_event"} <= tables
    assert query(app, text("SELECT version_num FROM host_alembic_version")) == [("0003",)]
    again = create_app({"DATABASE_URL": database_url, "SECRET_KEY": SECRET})  # idempotent
    platform_of(again).engine.dispose()
    assert set(inspect(engine).get_table_names()) == tables


def test_demo_data_is_a_real_ledger_with_a_mix_of_states(app: Flask) -> None:
    practices = query(app, select(Practice.id, Practice.slug).order_by(Practice.id))[:3]
    assert [slug for _id, slug in practices] == ["lugn-och-ro", "fysio-norr", "kroppsterapi-syd"]
    platform = platform_of(app)
    try:
        for pid, _slug in practices[:2]:
            assert verify_chain(platform.db(), str(pid)).ok
    finally:
        platform.sessions.remove()
    client = signed_in(app, "anna@lugnochro.example", "lugn-demo")
    page = client.get("/clients").text
    statuses = set(re.findall(r'data-status="([a-z]+)"', page))
    assert {"valid", "outdated", "withdrawn", "refused", "requested", "unknown"} <= statuses
    total = int(re.search(r"av (\d+) klienter", page).group(1))  # type: ignore[union-attr]
    valid = client.get("/clients?filter=samtycke.valid").text
    not_valid = client.get("/clients?filter=samtycke.not_valid").text
    counts = [int(re.search(r"av (\d+) klienter", p).group(1))  # type: ignore[union-attr]
              for p in (valid, not_valid)]
    assert counts[0] > 0 and counts[1] > 0 and sum(counts) == total == 30
    assert set(re.findall(r'data-status="([a-z]+)"', valid)) == {"valid"}
    assert "valid" not in set(re.findall(r'data-status="([a-z]+)"', not_valid))


def test_only_the_glue_module_imports_the_app() -> None:
    """The booking code calls hooks; only apps_glue (and the demo data) import samtycke."""
    offenders = []
    for path in (ROOT / "examples" / "host_app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.split(".")[0] in ("samtycke_plugin", "hookimpls", "hookspecs") and \
                        path.name not in ("apps_glue.py", "demo_seed.py"):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def _code_lines(source: str) -> set[int]:
    """The numbers of the lines that hold code: not blank, not comments, not docstrings."""
    import io
    import tokenize

    docs: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docs.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    code: set[int] = set()
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            code.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docs)
    return code


def _line_counts(path: Path) -> tuple[int, int]:
    """(all lines, code lines: not blank, not comments, not docstrings)."""
    source = path.read_text("utf-8")
    return len(source.splitlines()), len(_code_lines(source))


EXAMPLE = ROOT / "examples" / "host_app"
#: Demo data and the tests' helpers are not glue a host writes.
_NOT_GLUE = {"apps_glue.py", "demo_seed.py", "testing.py"}
#: Names that reach the glue from the platform's own code: the ``Apps`` object (as a
#: variable, ``platform().apps`` or ``booking_apps`` in templates), the ``PlatformHost``
#: (``platform().host``), the glue module itself.  Names a module imports from the glue
#: module are added per module.
_GLUE_NAMES = {"apps", "host", "apps_glue", "booking_apps"}
#: A string that names the app or its mounted pages (``"samtycke"``, ``"app_mount:"``).
_GLUE_STRING = re.compile(r"""[rbuf]*['"](samtycke\b[^'" ]*|app_mount:?)['"]""")
#: In a template: a line that uses the apps' objects or names the app.
_GLUE_IN_TEMPLATE = re.compile(r"\bbooking_apps\b|\bapps\.\w|samtycke_|app_mount")


def _py_glue(path: Path) -> int:
    """Code lines of a platform module that name the glue (its objects, anything
    imported from it, the app): every call site into the glue, found mechanically."""
    import io
    import tokenize

    source = path.read_text("utf-8")
    tree = ast.parse(source)
    names = set(_GLUE_NAMES)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("apps_glue"):
            names |= {alias.asname or alias.name for alias in node.names}
    code, hits = _code_lines(source), set()
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for i, tok in enumerate(tokens):
        if tok.start[0] not in code:
            continue
        if tok.type == tokenize.NAME and tok.string == "host" and i >= 2 and \
                tokens[i - 2].string == "args":
            continue  # the command line's --host: the address to listen on
        if (tok.type == tokenize.NAME and (tok.string in names or tok.string.startswith(
                ("samtycke", "hookspecs", "hookimpls")))) or \
                (tok.type == tokenize.STRING and _GLUE_STRING.fullmatch(tok.string)):
            hits.add(tok.start[0])
    return len(hits)


def _template_glue(path: Path) -> int:
    """The template lines that put the apps' output into the page: all of a template
    that only serves apps (``app_page.html``), the lines between ``{# apps #}`` and
    ``{# /apps #}``, and any other line that uses the apps' objects."""
    lines = [line for line in path.read_text("utf-8").splitlines() if line.strip()]
    if path.name == "app_page.html":
        return len(lines)
    inside, found = False, 0
    for line in lines:
        if line.strip() in ("{# apps #}", "{# /apps #}"):
            inside = line.strip() == "{# apps #}"
        elif inside or _GLUE_IN_TEMPLATE.search(line):
            found += 1
    return found


def glue_counts() -> dict[str, int]:
    """Per file of the platform, the lines it carries only because of the apps: the
    glue module's code lines whole, the template lines that insert the apps' output,
    and every other code line that calls or names the glue or the app."""
    counts = {"apps_glue.py": _line_counts(EXAMPLE / "apps_glue.py")[1]}
    for path in sorted(EXAMPLE.rglob("*.py")):
        if path.name not in _NOT_GLUE and (hits := _py_glue(path)):
            counts[str(path.relative_to(EXAMPLE))] = hits
    for path in sorted((EXAMPLE / "templates").glob("*.html")):
        if hits := _template_glue(path):
            counts[str(path.relative_to(EXAMPLE))] = hits
    return counts


def test_the_readme_says_how_many_lines_the_glue_is() -> None:
    """What the platform carries only because of the apps, counted the same way as the
    Django example's: the glue module (imports, the Host implementation, activation,
    settings), the template lines that insert the apps' output, and every line of the
    platform's own modules that calls or names the glue, without blank lines, comments
    and docstrings."""
    counts = glue_counts()
    total = sum(counts.values())
    assert counts["apps_glue.py"] > 25 and len(counts) > 8  # the count sees the glue at all
    readme = (EXAMPLE / "README.md").read_text("utf-8")
    assert f"**{total} lines**" in readme, (total, counts)
    for name, count in counts.items():
        assert f"| `{name}` | {count} |" in readme, (name, count)
    assert f"whole glue on top of it is {total} lines" in (ROOT / "README.md").read_text("utf-8")


def test_the_glue_is_at_most_80_lines() -> None:
    counts = glue_counts()
    assert sum(counts.values()) <= 80, counts


def test_the_glue_count_sees_a_new_call_site(tmp_path: Path) -> None:
    """A call into the glue added anywhere in the platform's modules or templates is
    counted without anyone listing it."""
    module = tmp_path / "views_new.py"
    module.write_text("from examples.host_app.apps_glue import Apps as A\n"
                      "def view(site):\n"
                      "    site.apps.client_erased(1, 2)  # a call\n"
                      "    x = A\n"
                      "    return site.host.now(), \"samtycke\", args.host\n", "utf-8")
    assert _py_glue(module) == 4
    template = tmp_path / "page.html"
    template.write_text("<p>\n{{ booking_apps.export_links() }}\n</p>\n", "utf-8")
    assert _template_glue(template) == 1


def test_the_apps_pages_are_in_the_platforms_layout_with_links_back(app: Flask) -> None:
    practice = practice_with_samtycke(app)
    staff = signed_in(app, practice["emails"][0], practice["password"])
    overview = staff.get("/apps/samtycke/", follow_redirects=True)
    assert overview.status_code == 200
    page = overview.text
    # The platform's own document: its menu and sign-out, the app's page inside.
    assert page.count("<html") == 1 and 'href="/clients"' in page and "Logga ut" in page
    assert '<div class="sp-page"' in page
    # "Back to Praktika" is the staff start page, not the public one.
    assert '<a href="/dashboard">← Tillbaka till Praktika</a>' in page
    created = staff.post("/clients/new", data={"name": "Bo <Bak>", "email": "", "locale": "sv",
                                               "phone": "", "notes": "",
                                               "csrf_token": token(staff)})
    cid = int(created.location.rsplit("/", 1)[1])
    for path in ("obtain", "history", "withdraw"):
        client_page = staff.get(f"/apps/samtycke/clients/{cid}/{path}").text
        assert f'<a href="/clients/{cid}">← Tillbaka till Bo &lt;Bak&gt;</a>' in client_page


def test_the_example_layout_escapes_the_apps_plain_text(app: Flask) -> None:
    """AppPage.title and AppPage.back are plain text: the platform's layout escapes them
    and inserts only body_html and head_html as HTML."""
    from hookspecs.types import AppPage, StaffContext, TenantRef

    host = platform_of(app).host
    page = AppPage(title="<script>alert(1)</script>", body_html="<p id=body>b</p>",
                   head_html="<style>.x{}</style>", locale="sv", tenant=TenantRef("1"),
                   staff=StaffContext(ref=StaffRef("1"), name="<b>Eva</b>",
                                      can_record_consent=True),
                   back=("/clients/1", '"><img src=x onerror=alert(1)>'))
    with app.test_request_context("/apps/samtycke/"):
        html = host.page_layout(page)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; · Praktika</title>" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert '<a href="/clients/1">' in html
    assert "<p id=body>b</p>" in html and "<style>.x{}</style>\n</head>" in html
    assert html.count("<html") == 1


def test_python_m_examples_host_app_starts_and_prints_the_logins(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "BOOKING_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite'}",
           "BOOKING_SECRET_KEY": SECRET}
    env.pop("BOOKING_SMTP_HOST", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.host_app", "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        printed = ""
        deadline = time.monotonic() + 60
        while "Stop with Ctrl+C" not in printed and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            printed += line
        assert f"runs at http://127.0.0.1:{port}/" in printed, printed
        assert "anna@lugnochro.example" in printed and "lugn-demo" in printed
        body = ""
        for _attempt in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/book/fysio-norr") as page:
                    body = page.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert "Boka tid hos Fysio Norr" in body and "samtycke_consent" in body
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_every_platform_string_has_swedish() -> None:
    found = messages()
    assert len(found) > 100
    assert sorted(found - set(SV)) == []
    assert sorted(set(SV) - found) == []  # no stale translations


# -- signing in, CSRF, errors, language ----------------------------------------------------------


def test_sign_in_is_required_and_a_wrong_password_says_what_to_do(app: Flask) -> None:
    browser = app.test_client()
    response = browser.get("/clients")
    assert response.status_code == 302 and "/login?next=/clients" in response.location
    page = browser.get("/login").text
    wrong = browser.post("/login", data={"email": "anna@lugnochro.example", "password": "nej",
                                         "csrf_token": csrf_from(page)})
    assert wrong.status_code == 400
    assert "E-postadressen eller lösenordet är fel. Kontrollera dem och försök igen." in wrong.text
    ok = browser.post("/login?next=//evil.example/x", data={
        "email": "anna@lugnochro.example", "password": "lugn-demo", "csrf_token": csrf_from(page)})
    assert ok.location == "/dashboard"  # never redirected off-site


def test_every_form_needs_the_session_csrf_token(app: Flask) -> None:
    practice = add_practice(platform_of(app))
    client = signed_in(app, practice["emails"][0], practice["password"])
    for path, data in [("/app-menu/samtycke", {"action": "activate"}),
                       ("/clients/new", {"name": "X", "locale": "sv"}),
                       ("/language", {"lang": "en"}), ("/logout", {})]:
        for bad in ({}, {"csrf_token": "forged"}):
            response = client.post(path, data={**data, **bad})
            assert response.status_code == 400, path
            assert "Formuläret hade gått ut." in response.text
            assert "Traceback" not in response.text
    assert query(app, select(func.count()).select_from(Client)
                 .where(Client.practice_id == practice["id"])) == [(0,)]
    assert "Inte aktiv" in client.get("/app-menu").text


def test_error_pages_are_sentences_without_tracebacks(app: Flask, monkeypatch:
                                                      pytest.MonkeyPatch) -> None:
    browser = app.test_client()
    missing = browser.get("/no/such/page")
    assert missing.status_code == 404 and "Sidan finns inte." in missing.text

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("examples.host_app.views_public.render_template", boom)
    broken = browser.get("/")
    assert broken.status_code == 500
    assert "Något gick fel hos oss." in broken.text and "secret internals" not in broken.text


def test_language_switch_is_kept_in_the_session(app: Flask) -> None:
    browser = app.test_client()
    assert '<html lang="sv">' in browser.get("/").text
    switched = browser.post("/language", data={"lang": "en", "next": "/book/fysio-norr",
                                                "csrf_token": token(browser)})
    assert switched.location == "/book/fysio-norr"
    page = browser.get("/book/fysio-norr").text
    assert '<html lang="en">' in page and "Book a time at Fysio Norr" in page
    assert "I have read the text above" in page  # the app's fragment follows the language


# -- online booking: the two phases --------------------------------------------------------------


def test_booking_without_the_tick_is_vetoed_and_writes_nothing(app: Flask) -> None:
    practice = practice_with_samtycke(app, require_consent_for_online_booking=True)
    email = f"nina-{uuid.uuid4().hex[:6]}@example.org"
    refused = book(app, practice["slug"], "Nina Berg", email, tick=False)
    assert refused.status_code == 400
    assert "För att boka online behöver du ge ditt samtycke" in refused.text
    assert 'href="#app-samtycke-consent"' in refused.text  # the summary links to the box
    assert 'value="Nina Berg"' in refused.text
    assert query(app, select(Client.id).where(Client.email == email)) == []
    assert events_of(app, practice["id"]) == []

    accepted = book(app, practice["slug"], "Nina Berg", email, tick=True)
    assert accepted.status_code == 302 and accepted.location.endswith("/booked")
    [(cid,)] = query(app, select(Client.id).where(Client.email == email))
    [(bid,)] = query(app, select(Booking.id).where(Booking.client_id == cid))
    assert events_of(app, practice["id"]) == [(str(cid), "given", str(bid))]


def test_booking_and_consent_evidence_roll_back_together(app: Flask,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    practice = practice_with_samtycke(app, require_consent_for_online_booking=True)
    email = f"rolf-{uuid.uuid4().hex[:6]}@example.org"
    hooks = platform_of(app).apps.hooks
    original = hooks.submitted

    def record_then_fail(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)  # the app wrote its evidence in our transaction …
        raise RuntimeError("the disk is full")  # … and then the booking fails

    monkeypatch.setattr(hooks, "submitted", record_then_fail)
    failed = book(app, practice["slug"], "Rolf Ek", email, tick=True)
    assert failed.status_code == 503
    assert "Vi kunde inte spara din bokning, och inget bokades." in failed.text
    assert query(app, select(Client.id).where(Client.email == email)) == []
    assert events_of(app, practice["id"]) == []


def test_a_failing_check_fails_closed(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    practice = practice_with_samtycke(app, require_consent_for_online_booking=False)

    def broken(*_a: object, **_k: object) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr(online_booking, "check_booking", broken)
    email = f"ulf-{uuid.uuid4().hex[:6]}@example.org"
    response = book(app, practice["slug"], "Ulf Ek", email, tick=True)
    assert response.status_code == 400
    assert "Försök igen om en liten stund." in response.text
    assert query(app, select(Client.id).where(Client.email == email)) == []


def test_returning_client_link_books_as_the_same_client(app: Flask) -> None:
    practice = practice_with_samtycke(app, require_consent_for_online_booking=True)
    email = f"ebba-{uuid.uuid4().hex[:6]}@example.org"
    assert book(app, practice["slug"], "Ebba Lund", email, tick=True).status_code == 302
    [(body,)] = query(app, select(DevMail.text).where(DevMail.to == email,
                                                      DevMail.source == "platform"))
    link = re.search(r"http://booking\.test(/book/\S+)", body).group(1)  # type: ignore[union-attr]
    browser = app.test_client()
    page = browser.get(link).text
    assert "Du bokar som Ebba Lund." in page and "samtycke_consent" not in page  # valid: not asked
    service_id = re.search(r'name="service" id="service-(\d+)"', page).group(1)  # type: ignore[union-attr]
    slot = re.search(r'<option value="([0-9T:Z-]+)"', page).group(1)  # type: ignore[union-attr]
    r_token = re.search(r'name="r" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    again = browser.post(link.split("?")[0], data={"csrf_token": csrf_from(page), "r": r_token,
                                                   "service": service_id, "slot": slot})
    assert again.status_code == 302
    assert query(app, select(func.count()).select_from(Client).where(Client.email == email)) \
        == [(1,)]
    other = add_practice(platform_of(app))
    assert "Du bokar som" not in browser.get(f"/book/{other['slug']}?r={r_token}").text


# -- practitioner views: list, profile, erasure, app menu ------------------------------------------


def test_client_list_filters_paginate_and_badge_once_per_page(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    platform = platform_of(app)
    practice = practice_with_samtycke(app)
    now = datetime.now(UTC)
    session = platform.db()
    clients = [Client(practice_id=practice["id"], name=f"Klient {i:03d}", email=None,
                      locale="sv", created_by="staff", created_at=now) for i in range(120)]
    session.add_all(clients)
    session.flush()
    staff = StaffContext(ref=StaffRef("t"), name="Test", can_record_consent=True)
    valid_ids = {c.id for c in clients[::2][:55]}
    for cid in sorted(valid_ids):
        consent.record_manual(platform.host, str(practice["id"]), str(cid), staff,
                              method="paper", given_at=now, note=None)
    session.commit()
    platform.sessions.remove()

    calls: list[int] = []
    original = platform.apps.hooks.list_badges

    def counting(tenant: Any, refs: Any, locale: str) -> Any:
        calls.append(len(refs))
        return original(tenant, refs, locale)

    monkeypatch.setattr(platform.apps.hooks, "list_badges", counting)
    browser = signed_in(app, practice["emails"][0], practice["password"])

    def listed(query_string: str) -> tuple[list[int], str]:
        page = browser.get("/clients?" + query_string).text
        return ([int(x) for x in re.findall(r'<tr data-client="(\d+)"', page)],
                re.search(r'id="client-count">\s*([^<]*)', page).group(1).strip())  # type: ignore[union-attr]

    first, count = listed("")
    assert len(first) == 50 and count == "Visar 1–50 av 120 klienter" and calls == [50]
    third, count = listed("page=3")
    assert len(third) == 20 and count == "Visar 101–120 av 120 klienter" and calls[-1] == 20
    seen_valid: set[int] = set()
    for page_no in (1, 2):
        ids, count = listed(f"filter=samtycke.valid&page={page_no}")
        seen_valid.update(ids)
    assert count.endswith("av 55 klienter") and seen_valid == valid_ids
    seen_other: set[int] = set()
    for page_no in (1, 2):
        ids, count = listed(f"filter=samtycke.not_valid&page={page_no}")
        seen_other.update(ids)
    assert count.endswith("av 65 klienter") and seen_other == {c.id for c in clients} - valid_ids
    _ids, count = listed("filter=other.app")
    assert count == "Visar 1–50 av 120 klienter"
    assert "Det filtret finns inte längre" in browser.get("/clients?filter=other.app").text


def test_another_practice_gets_404_and_changes_nothing(app: Flask) -> None:
    first = practice_with_samtycke(app)
    second = practice_with_samtycke(app)
    email = f"anna-{uuid.uuid4().hex[:6]}@example.org"
    assert book(app, first["slug"], "Anna Hemlig", email, tick=True).status_code == 302
    [(cid,)] = query(app, select(Client.id).where(Client.email == email))
    other = signed_in(app, second["emails"][0], second["password"])
    for path in (f"/clients/{cid}", f"/clients/{cid}/erase", f"/apps/samtycke/clients/{cid}/obtain",
                 f"/apps/samtycke/clients/{cid}/history"):
        response = other.get(path)
        assert response.status_code == 404, path
        assert "Anna Hemlig" not in response.text
    erase = other.post(f"/clients/{cid}/erase", data={"confirm": "yes", "csrf_token": token(other)})
    assert erase.status_code == 404
    booking = other.post(f"/clients/{cid}/bookings", data={"csrf_token": token(other)})
    assert booking.status_code == 404
    assert query(app, select(Client.id).where(Client.id == cid)) == [(cid,)]
    assert "Anna Hemlig" not in other.get("/clients?q=Anna").text


def test_erasure_lets_the_apps_erase_in_the_same_transaction(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    practice = practice_with_samtycke(app)
    email = f"erik-{uuid.uuid4().hex[:6]}@example.org"
    assert book(app, practice["slug"], "Erik Glömd", email, tick=True).status_code == 302
    [(cid,)] = query(app, select(Client.id).where(Client.email == email))
    calls: list[tuple[str, str]] = []
    hooks = platform_of(app).apps.hooks
    original = hooks.client_erased
    monkeypatch.setattr(hooks, "client_erased",
                        lambda t, c: (calls.append((t, c)), original(t, c))[-1])
    staff = signed_in(app, practice["emails"][0], practice["password"])
    unconfirmed = staff.post(f"/clients/{cid}/erase", data={"csrf_token": token(staff)})
    assert unconfirmed.status_code == 302 and calls == []
    erased = staff.post(f"/clients/{cid}/erase", data={"confirm": "yes",
                                                        "csrf_token": token(staff)})
    assert erased.status_code == 302 and calls == [(str(practice["id"]), str(cid))]
    assert query(app, select(Client.id).where(Client.id == cid)) == []
    assert query(app, select(DevMail.id).where(DevMail.to == email)) == []
    platform = platform_of(app)
    try:
        assert verify_chain(platform.db(), str(practice["id"])).ok
    finally:
        platform.sessions.remove()


def test_app_menu_activation_opens_the_wizard_and_deactivation_keeps_data(app: Flask) -> None:
    practice = add_practice(platform_of(app), staff=2)
    assistant = signed_in(app, practice["emails"][1], practice["password"])
    refused = assistant.post("/app-menu/samtycke", data={"action": "activate",
                                                          "csrf_token": token(assistant)})
    assert refused.status_code == 302
    assert "Inte aktiv" in assistant.get("/app-menu").text

    owner = signed_in(app, practice["emails"][0], practice["password"])
    activated = owner.post("/app-menu/samtycke", data={"action": "activate",
                                                        "csrf_token": token(owner)})
    assert activated.location == "/apps/samtycke/setup"
    wizard = owner.get("/apps/samtycke/setup")
    assert wizard.status_code == 200 and practice["name"] in wizard.text
    # Nothing asked before the wizard is finished.
    assert "samtycke_consent" not in app.test_client().get(f"/book/{practice['slug']}").text
    activate(platform_of(app), practice["id"], ask_new_clients=True)  # the wizard's last step
    email = f"kim-{uuid.uuid4().hex[:6]}@example.org"
    assert book(app, practice["slug"], "Kim Kvar", email, tick=True).status_code == 302

    owner.post("/app-menu/samtycke", data={"action": "deactivate", "csrf_token": token(owner)})
    assert "Klienter med giltigt samtycke" not in owner.get("/clients").text
    [(cid,)] = query(app, select(Client.id).where(Client.email == email))
    assert "samtycke-panel" not in owner.get(f"/clients/{cid}").text
    owner.post("/app-menu/samtycke", data={"action": "activate", "csrf_token": token(owner)})
    assert 'data-status="valid"' in owner.get(f"/clients/{cid}").text  # resumed, data kept


def test_dev_mailbox_receives_app_mail_through_deliver_email(app: Flask) -> None:
    practice = practice_with_samtycke(app)
    staff = signed_in(app, practice["emails"][0], practice["password"])
    email = f"lo-{uuid.uuid4().hex[:6]}@example.org"
    created = staff.post("/clients/new", data={"name": "Lo Ny", "email": email, "locale": "en",
                                               "phone": "", "notes": "",
                                               "csrf_token": token(staff)})
    cid = int(created.location.rsplit("/", 1)[1])
    obtain = staff.get(f"/apps/samtycke/clients/{cid}/obtain").text
    sent = staff.post(f"/apps/samtycke/clients/{cid}/obtain",
                      data={"action": "send", "csrf_token": csrf_from(obtain)})
    assert sent.status_code in (200, 302, 303)
    [(subject, body, source)] = query(app, select(DevMail.subject, DevMail.text, DevMail.source)
                                      .where(DevMail.to == email))
    assert source == "samtycke" and "http://booking.test/apps/samtycke/c/" in body
    mailbox = app.test_client().get(f"/dev/mailbox?to={email}").text
    assert subject in mailbox
    [(mail_id,)] = query(app, select(DevMail.id).where(DevMail.to == email))
    shown = app.test_client().get(f"/dev/mailbox/{mail_id}").text
    assert '<a href="http://booking.test/apps/samtycke/c/' in shown


def test_deliver_email_returns_none_when_smtp_is_configured(app: Flask) -> None:
    platform = platform_of(app)
    host = apps_glue.PlatformHost(platform.sessions, secret_key=b"k" * 32,
                                  base_url="http://x")
    from hookspecs.types import OutgoingEmail, TenantRef

    message = OutgoingEmail(to="a@example.org", subject="s", text="t", html=None,
                            message_id="<1@x>")
    assert host.deliver_email(TenantRef("1"), message) is None
    assert len(host.app_secret("samtycke")) >= 32
    assert host.app_secret("samtycke") != host.app_secret("other")


def test_client_query_lists_what_iter_clients_lists(app: Flask) -> None:
    """The optional ClientQuery: the same clients as iter_clients, one practice only."""
    from hookspecs.host import ClientQuery
    from hookspecs.types import TenantRef

    platform = platform_of(app)
    host = apps_glue.PlatformHost(platform.sessions, secret_key=b"k" * 32,
                                  base_url="http://x")
    assert isinstance(host, ClientQuery)
    pid = query(app, select(Practice.id).order_by(Practice.id))[0][0]
    try:
        tenant = TenantRef(str(pid))
        streamed = {(c.ref, c.name, c.email) for c in host.iter_clients(tenant)}
        def run(tenant: TenantRef) -> list[Any]:
            select_ = host.client_query(tenant)
            return list(host.session().execute(text(select_.sql), dict(select_.params)))

        queried = {tuple(row) for row in run(tenant)}
        assert queried == streamed and len(streamed) == 30
        for other in ("999999", "not-a-practice"):
            assert run(TenantRef(other)) == []
    finally:
        platform.sessions.remove()


def test_consent_exports_are_downloads_scoped_to_the_practice(app: Flask) -> None:
    import csv
    import io
    import json
    import zipfile

    practice = practice_with_samtycke(app)
    email = f"vera-{uuid.uuid4().hex[:6]}@example.org"
    assert book(app, practice["slug"], "Vera Export", email, tick=True).status_code == 302
    [(cid,)] = query(app, select(Client.id).where(Client.email == email))
    staff = signed_in(app, practice["emails"][0], practice["password"])
    profile = staff.get(f"/clients/{cid}").text
    assert f"/clients/{cid}/consent.zip" in profile and "Bevispaket (ZIP)" in profile

    history = json.loads(staff.get(f"/clients/{cid}/consent.json").data)
    assert [e["state"] for e in history["events"]] == ["given"]
    rows = list(csv.reader(io.StringIO(staff.get(f"/clients/{cid}/consent.csv").text)))
    assert len(rows) == 2
    printable = staff.get(f"/clients/{cid}/consent.html")
    assert printable.mimetype == "text/html" and "<html" in printable.text
    bundle = staff.get(f"/clients/{cid}/consent.zip")
    assert bundle.headers["Content-Disposition"].startswith("attachment;")
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as archive:
        assert {"README.txt", "history.json", "MANIFEST.sha256"} <= set(archive.namelist())
    status = list(csv.reader(io.StringIO(staff.get("/clients/consent-status.csv").text)))
    assert len(status) == 2 and email in ",".join(status[1])

    other = practice_with_samtycke(app)
    stranger = signed_in(app, other["emails"][0], other["password"])
    for kind in ("json", "csv", "html", "zip"):
        assert stranger.get(f"/clients/{cid}/consent.{kind}").status_code == 404
    assert email not in stranger.get("/clients/consent-status.csv").text
    plain = add_practice(platform_of(app))
    never = signed_in(app, plain["emails"][0], plain["password"])
    assert never.get("/clients/consent-status.csv").status_code == 404
    assert "consent-status.csv" not in never.get("/clients").text


# -- the hook this module owns -------------------------------------------------------------------


class _Probe:
    """A second app whose WSGI page echoes what the host put in the environ."""

    @hookimpl
    def booking_app_info(self, host: object) -> AppInfo:
        return AppInfo(key="probe", name={"sv": "Sond", "en": "Probe"},
                       description={"sv": "", "en": ""}, version="1")

    @hookimpl
    def booking_web_mounts(self, host: object) -> list[WebMount]:
        def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            staff = environ.get("booking.staff")
            body = "|".join([
                environ["SCRIPT_NAME"], environ["PATH_INFO"],
                str(environ.get("booking.tenant")), staff.name if staff else "-",
                environ.get("booking.locale", ""),
                "host" if environ.get("booking.host") is not None else "no-host",
            ])
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [body.encode()]

        return [WebMount(key="probe.pages", prefix="/apps/probe", app=echo)]


def test_hook_booking_web_mounts(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from samtycke_plugin.integrations import flask as flask_integration

    original = flask_integration.make_plugin_manager
    monkeypatch.setattr(flask_integration, "make_plugin_manager",
                        lambda **kw: original(plugins=[("probe", _Probe())], **kw))
    probe_app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": SECRET,
                            "STRICT_APPS": True})
    try:
        mounts = platform_of(probe_app).apps.hooks.web_mounts()
        assert [(m.key, m.prefix) for m in mounts] == [("probe.pages", "/apps/probe"),
                                                      ("samtycke.pages", "/apps/samtycke")]
        anonymous = probe_app.test_client()
        response = anonymous.get("/apps/probe/some/page?x=1",
                                 headers={"booking.tenant": "1", "Booking-Staff": "evil"})
        assert response.text == "/apps/probe|/some/page|None|-|sv|host"
        practice = add_practice(platform_of(probe_app))
        staff = signed_in(probe_app, practice["emails"][0], practice["password"])
        assert staff.get("/apps/probe").text == f"/apps/probe||{practice['id']}|Behandlare 1|sv|host"
        # Samtycke's own mount: its practitioner pages need a signed-in practitioner.
        activate(platform_of(probe_app), practice["id"], ask_new_clients=True)
        # Signed out: the platform's sign-in page, and back to the app's page after it.
        signed_out = anonymous.get("/apps/samtycke/setup?step=2")
        assert signed_out.status_code == 303
        assert signed_out.headers["Location"] == "/login?next=%2Fapps%2Fsamtycke%2Fsetup%3Fstep%3D2"
        setup = staff.get("/apps/samtycke/setup")
        assert setup.status_code == 200 and practice["name"] in setup.text
    finally:
        platform_of(probe_app).sessions.remove()
        platform_of(probe_app).engine.dispose()

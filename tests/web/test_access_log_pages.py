"""The access log in the practitioner's pages: viewing a client's history leaves one row
(a GET's one accepted write), another site cannot make a browser leave one, and the
practice-wide "Åtkomstlogg / Access log" page needs a signed-in practitioner, posts
nothing, pages newest first, filters by client and shows only the practice's own rows.
SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

from hostkit import TestHost, staff
from sqlalchemy import select
from werkzeug.test import Client, TestResponse

from samtycke_plugin import access_log, common, consent, hostdb
from samtycke_plugin.access_log import Viewer
from samtycke_plugin.models import AccessLogEntry
from samtycke_plugin.web import make_wsgi_app

P = common.MOUNT_PREFIX
APP = make_wsgi_app()


def _practice(host: TestHost) -> tuple[str, str]:
    tenant = host.new_tenant()
    host.activate(host.hooks(), tenant, ask_new_clients=True)
    client = host.new_client(tenant)
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=host.now(),
                          note=None)
    host.session().commit()
    return tenant, client


def get(host: TestHost, tenant: str, path: str, *, signed_in: bool = True,
        method: str = "GET", lang: str = "sv", **extra: Any) -> TestResponse:
    environ: dict[str, Any] = {"booking.host": host, "booking.session": "sign-in-1",
                               "SCRIPT_NAME": P}
    if signed_in:
        environ.update({"booking.tenant": tenant, "booking.staff": staff()})
    return Client(APP).open(path, method=method, environ_overrides=environ,
                            headers={"Accept-Language": lang, **extra.pop("headers", {})},
                            **extra)


def logged(host: TestHost, tenant: str) -> list[tuple[Any, ...]]:
    host.session().rollback()
    found = host.session().execute(
        select(AccessLogEntry.actor, AccessLogEntry.action, AccessLogEntry.client_ref,
               AccessLogEntry.via).where(AccessLogEntry.tenant_ref == tenant)
        .order_by(AccessLogEntry.id)).all()
    host.session().rollback()
    return [tuple(r) for r in found]


def test_viewing_a_history_leaves_one_row_and_shows_who_looked(host: TestHost) -> None:
    tenant, client = _practice(host)
    page = get(host, tenant, f"/clients/{client}/history")
    assert page.status_code == 200
    assert logged(host, tenant) == [("staff:s1", "view_history", client, "page")]
    body = page.get_data(as_text=True)
    assert "Vem som har visat klientens samtyckesuppgifter" in body
    assert "Du (Dr. Berg)" in body and "Visade samtyckeshistoriken" in body
    assert f"{P}/access-log?client={client}" in body
    assert get(host, tenant, f"/clients/{client}/history", method="HEAD").status_code == 200
    assert len(logged(host, tenant)) == 1  # HEAD shows nothing, logs nothing
    en = get(host, tenant, f"/clients/{client}/history", lang="en").get_data(as_text=True)
    assert "Who has viewed this client's consent data" in en and "Viewed the consent history" in en
    assert len(logged(host, tenant)) == 2


def test_another_site_cannot_make_a_browser_log_a_view(host: TestHost) -> None:
    tenant, client = _practice(host)
    for mode in ("no-cors", "cors"):
        embedded = get(host, tenant, f"/clients/{client}/history",
                       headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": mode})
        assert embedded.status_code == 403
    assert logged(host, tenant) == []
    # Following a link from elsewhere is the practitioner opening the page: logged.
    opened = get(host, tenant, f"/clients/{client}/history",
                 headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    assert opened.status_code == 200 and len(logged(host, tenant)) == 1


def test_a_history_that_is_not_shown_is_not_logged(host: TestHost) -> None:
    tenant, _client = _practice(host)
    other, other_client = _practice(host)
    assert get(host, tenant, f"/clients/{other_client}/history").status_code == 404
    assert get(host, tenant, "/clients/no-such-client/history").status_code == 404
    assert get(host, tenant, "/clients/x/history", signed_in=False).status_code == 404
    assert logged(host, tenant) == [] and logged(host, other) == []


def test_the_access_log_page_needs_a_signed_in_practitioner_and_posts_nothing(
    host: TestHost,
) -> None:
    tenant, client = _practice(host)
    get(host, tenant, f"/clients/{client}/history")
    assert get(host, tenant, "/access-log", signed_in=False).status_code == 404
    environ = {"booking.host": host, "booking.sign_in": "/login", "SCRIPT_NAME": P}
    redirected = Client(APP).get("/access-log", environ_overrides=environ)
    assert redirected.status_code == 303 and redirected.location.startswith("/login?next=")
    page = get(host, tenant, "/access-log")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "<h1>Åtkomstlogg</h1>" in body
    assert 'aria-current="page">Åtkomstlogg' in body and 'method="post"' not in body
    for method in ("POST", "PUT", "DELETE"):
        assert get(host, tenant, "/access-log", method=method,
                   data={"client": client}).status_code == 405
    cross = get(host, tenant, "/access-log",
                headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"})
    assert cross.status_code == 200
    assert len(logged(host, tenant)) == 1  # reading the log records nothing
    en = get(host, tenant, "/access-log", lang="en").get_data(as_text=True)
    assert "<h1>Access log</h1>" in en and "Viewed the consent history" in en


def test_the_page_shows_only_the_practices_own_rows_filtered_by_client(host: TestHost) -> None:
    a, a_client = _practice(host)
    b, b_client = _practice(host)
    a_other = host.new_client(a)
    for tenant, client in ((a, a_client), (a, a_other), (b, b_client)):
        assert get(host, tenant, f"/clients/{client}/history").status_code == 200
    page = get(host, a, "/access-log").get_data(as_text=True)
    assert a_client in page and a_other in page and b_client not in page
    only = get(host, a, f"/access-log?client={a_client}").get_data(as_text=True)
    assert a_client in only and a_other not in only
    foreign = get(host, a, f"/access-log?client={b_client}")
    assert foreign.status_code == 200 and b_client not in foreign.get_data(as_text=True).split(
        "</form>", 1)[1]
    assert "Ingen har visat eller exporterat" in foreign.get_data(as_text=True)
    bad = get(host, a, "/access-log?client=%3Cscript%3E")
    body = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "Det är inte en klientreferens" in body
    assert "<script>" not in body


def test_the_page_is_paginated_newest_first(host: TestHost) -> None:
    tenant, client = _practice(host)
    by = Viewer.staff(staff())
    with hostdb.unit_of_work(host) as session:
        for _ in range(access_log.PAGE_SIZE + 1):
            access_log.record(session, host, tenant, by, "view_history", client=client)
    first = get(host, tenant, "/access-log").get_data(as_text=True)
    assert first.count("<tr>") == access_log.PAGE_SIZE + 1  # the header row, then 50
    older = re.search(r'href="([^"]*before=\d+[^"]*)">Äldre poster', first)
    assert older is not None
    second = get(host, tenant, older.group(1).replace("&amp;", "&").removeprefix(P))
    body = second.get_data(as_text=True)
    assert second.status_code == 200 and body.count("<tr>") == 2
    assert "Äldre poster" not in body and "Senaste posterna" in body

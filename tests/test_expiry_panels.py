"""The "expires soon" filter, badge and profile status, on SQLite and PostgreSQL: the
filter finds exactly the clients :func:`rules.expires_soon` names, in one statement,
and a page of badges marks exactly them in the statements it took before."""

from __future__ import annotations

import uuid

from hostkit import TestHost, count_statements, staff
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from hookspecs.types import ClientInfo, ClientRef
from samtycke_plugin import consent, practices, purposes
from samtycke_plugin.integrations.sqlalchemy import filter_condition
from samtycke_plugin.ledger import load_snapshots
from samtycke_plugin.models import Practice
from samtycke_plugin.rules import expires_soon

BODY = "Vi vill skicka dig nyheter om mottagningen ibland, om du vill det.\n"


def _table(host: TestHost) -> Table:
    md = MetaData()
    table = Table(
        f"host_client_{uuid.uuid4().hex[:8]}", md,
        Column("id", Integer, primary_key=True), Column("tenant", String(64)),
    )
    md.create_all(host.engine)
    return table


def _run(host: TestHost, hooks: object, tenant: str, table: Table, key: str) -> set[str]:
    clause = hooks.list_filter_clause(tenant, key, f"CAST({table.name}.id AS VARCHAR)")  # type: ignore[attr-defined]
    assert clause is not None and clause.key == key
    base = select(table.c.id).where(table.c.tenant == tenant, filter_condition(clause))
    with count_statements(host.engine) as statements:
        found = {str(i) for i in host.session().scalars(base)}
    assert len(statements) == 1
    total = host.session().scalar(select(func.count()).select_from(base.subquery()))
    assert total == len(found)
    return found


def _expected(host: TestHost, tenant: str, clients: list[str], purpose: str) -> set[str]:
    """The clients whose consent to ``purpose`` expires soon, by the pure rule."""
    host.session().rollback()
    practice = host.session().get(Practice, tenant, populate_existing=True)
    assert practice is not None
    settings = practices.settings_of(practice)
    major = practices.purpose_major(host.session(), practice, purpose)
    days = practices.purpose_validity(host.session(), practice, purpose)
    snaps = load_snapshots(host.session(), tenant, clients, purpose)
    return {c for c in clients
            if expires_soon(snaps.get(c), major, host.now(), settings, validity_days=days)}


def _practice(host: TestHost) -> tuple[object, str, Table, list[str]]:
    """Clients given consent on different days (care lasts 365 days, the newsletter
    100), some withdrawn, some never asked; the clock then stands where some of them
    expire within the 30-day window, some already expired, some later."""
    table = _table(host)
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, validity_days=365, renew_days_before=30)
    purposes.add(
        host.session(), tenant, key="newsletter", names={"sv": "Nyhetsbrev", "en": "Newsletter"},
        legal_basis={}, required=False, validity_days=100, bodies={"sv": BODY},
        actor="staff:s1", now=host.now(),
    )
    host.session().commit()
    clients: list[str] = []
    for i in range(40):
        cid = str(host.session().execute(
            insert(table).values(tenant=tenant).returning(table.c.id)).scalar_one())
        host.clients[(tenant, cid)] = ClientInfo(
            ref=ClientRef(cid), name=f"Klient {cid}", email=None, locale="sv")
        clients.append(cid)
        if i % 7 != 6:
            consent.record_manual(host, tenant, cid, staff(), method="paper",
                                  given_at=host.now(), note=None)
        if i % 3 == 0:
            consent.record_manual(host, tenant, cid, staff(), method="paper",
                                  given_at=host.now(), note=None, purpose="newsletter")
        if i % 11 == 5 and i % 7 != 6:
            consent.withdraw(host, tenant, cid, actor="staff:s1", channel="staff",
                             method="verbal", by_client=True)
        host.session().commit()
        host.advance(days=3)
    return hooks, tenant, table, clients


def test_the_expires_soon_filters_are_exact(host: TestHost) -> None:
    hooks, tenant, table, clients = _practice(host)
    keys = {f.key for f in hooks.list_filters(tenant, "sv")}  # type: ignore[attr-defined]
    assert {"samtycke.expires_soon", "samtycke.expires_soon.newsletter"} <= keys
    seen_care = seen_news = 0
    for days in (0, 200, 90, 20, 20):  # clock at +120 … +450 days from the first consent
        host.advance(days=days)
        care = _expected(host, tenant, clients, "care")
        news = _expected(host, tenant, clients, "newsletter")
        assert _run(host, hooks, tenant, table, "samtycke.expires_soon") == care
        assert _run(host, hooks, tenant, table, "samtycke.expires_soon.newsletter") == news
        assert _run(host, hooks, tenant, table, "samtycke.expires_soon.care") == care
        seen_care, seen_news = seen_care + len(care), seen_news + len(news)
    # The windows chosen above do meet consent that expires soon, and not all of it.
    assert 0 < seen_care < 5 * len(clients) and seen_news > 0

    # Renewal switched off: nothing "expires soon", and the filters are not offered.
    row = host.session().get(Practice, tenant)
    assert row is not None
    row.settings = {**row.settings, "renew_days_before": 0}
    host.session().commit()
    assert _run(host, hooks, tenant, table, "samtycke.expires_soon") == set()
    keys = {f.key for f in hooks.list_filters(tenant, "sv")}  # type: ignore[attr-defined]
    assert not any(k.startswith("samtycke.expires_soon") for k in keys)
    assert hooks.list_filter_clause(  # type: ignore[attr-defined]
        tenant, "samtycke.expires_soon.unknown", "x") is None


def test_a_practice_without_a_lifetime_offers_no_expiry_filter(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant)
    assert {f.key for f in hooks.list_filters(tenant, "sv")} == {  # type: ignore[attr-defined]
        "samtycke.valid", "samtycke.not_valid"}


def test_badges_and_profile_mark_exactly_the_consent_that_expires_soon(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, validity_days=365, renew_days_before=30)
    clients = []
    for _ in range(12):
        ref = host.new_client(tenant)
        consent.record_manual(host, tenant, ref, staff(), method="paper", given_at=host.now(),
                              note=None)
        clients.append(ref)
        host.session().commit()
        host.advance(days=5)
    host.advance(days=280)  # the first ones have 25 days or less left
    expected = _expected(host, tenant, clients, "care")
    assert 0 < len(expected) < len(clients)
    with count_statements(host.engine) as statements:
        badges = hooks.list_badges(tenant, clients, "sv")  # type: ignore[attr-defined]
    assert len(statements) == 2  # as for any page of one purpose's badges
    marked = {c for c, [b] in badges.items() if "går ut" in b.label}
    assert marked == expected
    # Valid until then: the tone of valid consent, the label says when it ends.
    assert all(b.tone == "ok" for c in expected for b in badges[c])
    assert all(b.tone == "ok" and b.label == "Giltigt samtycke"
               for c in set(clients) - expected for b in badges[c])
    soon, later = sorted(expected)[0], sorted(set(clients) - expected)[0]
    [panel] = hooks.profile_panels(tenant, soon, staff(), "sv")  # type: ignore[attr-defined]
    assert "Giltigt samtycke, går ut" in panel.label and "ombeds via e-post att förnya" in panel.html
    [panel] = hooks.profile_panels(tenant, later, staff(), "sv")  # type: ignore[attr-defined]
    assert panel.label == "Giltigt samtycke"


def test_the_summary_badge_names_the_purposes_that_expire_soon(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, validity_days=365, renew_days_before=30)
    purposes.add(
        host.session(), tenant, key="newsletter", names={"sv": "Nyhetsbrev", "en": "Newsletter"},
        legal_basis={}, required=False, validity_days=100, bodies={"sv": BODY},
        actor="staff:s1", now=host.now(),
    )
    host.session().commit()
    client = host.new_client(tenant)
    for key in ("care", "newsletter"):
        consent.record_manual(host, tenant, client, staff(), method="paper",
                              given_at=host.now(), note=None, purpose=key)
    host.session().commit()
    host.advance(days=80)
    [badge] = hooks.list_badges(tenant, [client], "sv")[client]  # type: ignore[attr-defined]
    assert badge.label == "Samtycke: 2 av 2 – går snart ut: Nyhetsbrev"
    assert badge.tone == "ok"
    [panel] = hooks.profile_panels(tenant, client, staff(), "sv")  # type: ignore[attr-defined]
    assert panel.html.count("Giltigt samtycke, går ut") == 1

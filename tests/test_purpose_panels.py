"""The profile panel, the badges and the list filters of a practice with several
purposes, on SQLite and PostgreSQL (the ``host`` fixture)."""

from __future__ import annotations

import itertools
import uuid

from hostkit import TestHost, staff
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from hookspecs.types import ClientInfo, ClientRef
from samtycke_plugin import consent, practice_texts, purposes
from samtycke_plugin.integrations.sqlalchemy import filter_condition

KEYS = ("care", "newsletter", "photos")
BODY = "Vi vill skicka dig nyheter om mottagningen ibland, om du vill det.\n"


def _table(host: TestHost) -> Table:
    md = MetaData()
    table = Table(
        f"host_client_{uuid.uuid4().hex[:8]}", md,
        Column("id", Integer, primary_key=True), Column("tenant", String(64)),
    )
    md.create_all(host.engine)
    return table


def _practice(host: TestHost) -> tuple[object, str, Table, dict[tuple[bool, ...], str]]:
    """A practice asking for care (optional), newsletter (optional) and photos
    (required), with one client for every combination of valid consents, and one more
    client who withdrew the newsletter."""
    table = _table(host)
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, ask_new_clients=True)
    for key, required in (("newsletter", False), ("photos", True)):
        purposes.add(
            host.session(), tenant, key=key, names={"sv": key.title(), "en": key.title()},
            legal_basis={}, required=required, validity_days=None, bodies={"sv": BODY},
            actor="staff:s1", now=host.now(),
        )
    host.session().commit()
    combos: dict[tuple[bool, ...], str] = {}
    for combo in itertools.product((False, True), repeat=3):
        cid = str(host.session().execute(
            insert(table).values(tenant=tenant).returning(table.c.id)).scalar_one())
        host.clients[(tenant, cid)] = ClientInfo(
            ref=ClientRef(cid), name=f"Klient {cid}", email=None, locale="sv")
        for key, give in zip(KEYS, combo, strict=True):
            if give:
                consent.record_manual(host, tenant, cid, staff(), method="paper",
                                      given_at=host.now(), note=None, purpose=key)
        combos[combo] = cid
    host.session().commit()
    # Withdrawn newsletter consent is not valid either.
    consent.withdraw(host, tenant, combos[(True, True, True)], actor="staff:s1",
                     channel="staff", method="verbal", by_client=True, purpose="newsletter")
    host.session().commit()
    return hooks, tenant, table, combos


def _run(host: TestHost, hooks: object, tenant: str, table: Table, key: str) -> set[str]:
    clause = hooks.list_filter_clause(tenant, key, f"CAST({table.name}.id AS VARCHAR)")  # type: ignore[attr-defined]
    assert clause is not None and clause.key == key
    base = select(table.c.id).where(table.c.tenant == tenant, filter_condition(clause))
    found = {str(i) for i in host.session().scalars(base)}
    total = host.session().scalar(select(func.count()).select_from(base.subquery()))
    assert total == len(found)
    return found


def test_filters_per_purpose_are_exact(host: TestHost) -> None:
    hooks, tenant, table, combos = _practice(host)
    withdrawn = combos[(True, True, True)]

    def having(index: int, value: bool) -> set[str]:
        out = {cid for combo, cid in combos.items() if combo[index] == value}
        if index == 1:  # the newsletter withdrawal
            out = out - {withdrawn} if value else out | {withdrawn}
        return out

    keys = [f.key for f in hooks.list_filters(tenant, "sv")]  # type: ignore[attr-defined]
    assert {"samtycke.valid", "samtycke.not_valid", "samtycke.valid.newsletter",
            "samtycke.not_valid.newsletter", "samtycke.valid.photos",
            "samtycke.not_valid.photos", "samtycke.required_missing"} == set(keys)
    labels = {f.key: f.label for f in hooks.list_filters(tenant, "sv")}  # type: ignore[attr-defined]
    assert labels["samtycke.not_valid.newsletter"] == (
        "Klienter utan giltigt samtycke till Newsletter"
    )
    assert _run(host, hooks, tenant, table, "samtycke.valid") == having(0, True)
    assert _run(host, hooks, tenant, table, "samtycke.not_valid") == having(0, False)
    for index, key in ((1, "newsletter"), (2, "photos")):
        assert _run(host, hooks, tenant, table, f"samtycke.valid.{key}") == having(index, True)
        assert _run(host, hooks, tenant, table, f"samtycke.not_valid.{key}") == having(
            index, False)
    # Only photos is required: missing exactly when photos is not valid.
    assert _run(host, hooks, tenant, table, "samtycke.required_missing") == having(2, False)
    # Requiring care too: missing when either is not valid.
    purposes.update(host.session(), tenant, "newsletter", names={"sv": "Newsletter"},
                    legal_basis={}, required=True, validity_days=None)
    host.session().commit()
    assert _run(host, hooks, tenant, table, "samtycke.required_missing") == (
        having(1, False) | having(2, False))
    # A change of content of the newsletter outdates only the newsletter.
    practice_texts.publish_text(host, tenant, bodies={"sv": BODY + "Varje månad.\n"}, kind="content",
                           reason=None, actor="staff:s1", expected_major=1, purpose="newsletter")
    host.session().commit()
    assert _run(host, hooks, tenant, table, "samtycke.valid.newsletter") == set()
    assert _run(host, hooks, tenant, table, "samtycke.valid") == having(0, True)
    assert _run(host, hooks, tenant, table, "samtycke.valid.photos") == having(2, True)
    assert hooks.list_filter_clause(  # type: ignore[attr-defined]
        tenant, "samtycke.valid.nothing", "x.id") is None


def test_profile_panel_and_badges_per_purpose(host: TestHost) -> None:
    hooks, tenant, _, combos = _practice(host)
    client = combos[(True, False, False)]
    [panel] = hooks.profile_panels(tenant, client, staff(), "en")  # type: ignore[attr-defined]
    for key in KEYS:
        assert f'data-purpose="{key}"' in panel.html
    newsletter = panel.html.split('data-purpose="newsletter"', 1)[1].split("</li>", 1)[0]
    photos = panel.html.split('data-purpose="photos"', 1)[1].split("</li>", 1)[0]
    care = panel.html.split('data-purpose="care"', 1)[1].split("</li>", 1)[0]
    assert 'data-status="valid"' in care and 'data-status="valid"' not in newsletter
    assert "required for online booking" in photos and 'data-status="valid"' not in photos
    refs = [combos[(True, False, False)], combos[(True, True, True)], combos[(True, True, False)],
            combos[(False, True, True)]]
    badges = {c: b for c, [b] in hooks.list_badges(tenant, refs, "sv").items()}  # type: ignore[attr-defined]
    assert badges[refs[0]].label == "Samtycke: 1 av 3 – saknas: Photos"
    assert badges[refs[1]].label == "Samtycke: 2 av 3"  # the newsletter was withdrawn
    assert badges[refs[2]].label == "Samtycke: 2 av 3 – saknas: Photos"
    assert badges[refs[3]].label == "Samtycke: 2 av 3"
    assert badges[refs[0]].tone == "missing" and badges[refs[3]].tone == "warn"
    en = {c: b for c, [b] in hooks.list_badges(tenant, refs, "en").items()}  # type: ignore[attr-defined]
    assert en[refs[0]].label == "Consent: 1 of 3 – missing: Photos"


def test_a_practice_with_one_purpose_keeps_its_panel_badges_and_filters(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, ask_new_clients=True)
    client = host.new_client(tenant)
    [panel] = hooks.profile_panels(tenant, client, staff(), "sv")
    assert "data-purpose" not in panel.html
    [badge] = hooks.list_badges(tenant, [client], "sv")[client]
    assert badge.label == "Inget samtycke"
    assert {f.key for f in hooks.list_filters(tenant, "sv")} == {
        "samtycke.valid", "samtycke.not_valid"}

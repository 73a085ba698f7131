"""Every hook: documented, exercised (one test_hook_<name> per hookspec somewhere in tests/),
and the facade's guarantees (duplicates, order, fail closed, per-tenant activation)."""

from __future__ import annotations

import inspect
import re
import sys
import types
import uuid
from pathlib import Path

import pluggy
import pytest
from hostkit import TestHost, staff, submission
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from hookspecs import PROJECT, hookimpl
from hookspecs.facade import AppHooks, DuplicateKeyError, make_plugin_manager
from hookspecs.spec import BookingSpecs
from hookspecs.types import (
    AppInfo,
    BookingFormContext,
    BookingRef,
    ClientRef,
    FormFragment,
    TenantRef,
    Veto,
)
from samtycke_plugin import consent, practice_texts, practices
from samtycke_plugin.integrations.sqlalchemy import filter_condition
from samtycke_plugin.models import ConsentEvent, Practice

HOOK_NAMES = sorted(n for n in vars(BookingSpecs) if n.startswith("booking_"))
TESTS = Path(__file__).parent


def test_every_hookspec_is_documented() -> None:
    for name in HOOK_NAMES:
        fn = getattr(BookingSpecs, name)
        doc = inspect.getdoc(fn) or ""
        params = [p for p in inspect.signature(fn).parameters if p != "self"]
        assert params[0] == "host", f"{name}: the host must be the first argument"
        assert "When:" in doc, f"{name}: say when the host calls it"
        for p in params:
            assert f":param {p}:" in doc, f"{name}: document :param {p}:"
        assert ":returns:" in doc, f"{name}: document what it returns"
        hints = inspect.get_annotations(fn)
        assert set(params) <= set(hints) and "return" in hints, f"{name}: annotate fully"
        firstresult = fn.booking_spec.get("firstresult", False)
        assert ("first non-``None`` result" in doc) == firstresult, f"{name}: say firstresult"


def test_every_host_method_is_documented_and_named_in_the_readme() -> None:
    """The other direction of the contract: what the app may ask of its host (``Host``,
    and the optional ``ClientQuery``, ``OnCommit`` and ``StaffDirectory``), each method
    annotated and documented, and named where the README tells a host engineer what to
    implement."""
    from hookspecs.host import ClientQuery, Host, OnCommit, StaffDirectory

    readme = (TESTS.parent / "README.md").read_text("utf-8")
    for protocol in (Host, ClientQuery, OnCommit, StaffDirectory):
        assert inspect.getdoc(protocol), protocol.__name__
        methods = [n for n, f in vars(protocol).items()
                   if callable(f) and not n.startswith("_")]
        assert methods, protocol.__name__
        for name in methods:
            fn = getattr(protocol, name)
            assert len(inspect.getdoc(fn) or "") > 40, f"{protocol.__name__}.{name}: document it"
            assert "return" in inspect.get_annotations(fn), f"{name}: annotate the result"
            assert f"`{name}(" in readme, f"README: name {protocol.__name__}.{name}"


def test_every_hook_has_a_test() -> None:
    source = "\n".join(p.read_text("utf-8") for p in TESTS.rglob("test_*.py"))
    missing = [n for n in HOOK_NAMES if not re.search(rf"def test_hook_{n}\b", source)]
    assert missing == [], f"hooks without a test_hook_<name> test: {missing}"


#: Hooks an app calls and the platform's other apps implement.
CALLED_BY_APPS = {"booking_consent_changed"}


def test_every_hookspec_is_implemented_by_the_app_or_documented_as_host_only() -> None:
    pm = make_plugin_manager(strict=True)
    implemented = {n for n in HOOK_NAMES if getattr(pm.hook, n).get_hookimpls()}
    assert implemented == set(HOOK_NAMES) - CALLED_BY_APPS
    for name in CALLED_BY_APPS:
        doc = inspect.getdoc(getattr(BookingSpecs, name)) or ""
        assert "called by an app" in doc and "not by the host" in doc, name


def test_app_is_found_through_the_entry_point_only() -> None:
    from importlib.metadata import entry_points

    import hookimpls

    pm = make_plugin_manager(strict=True)
    assert pm.list_name_plugin() == [("samtycke", hookimpls)]
    [ep] = [e for e in entry_points(group="booking.apps") if e.name == "samtycke"]
    assert ep.value == "hookimpls" and ep.dist is not None
    assert ep.dist.metadata["Name"] == "samtycke-plugin"


# -- the facade ---------------------------------------------------------------------------


class _Other:
    """A second app, to check the facade's rules."""

    @hookimpl
    def booking_app_info(self, host: object) -> AppInfo:
        return AppInfo(key="other", name={"en": "Other"}, description={"en": "x"}, version="1")

    @hookimpl
    def booking_form_render(self, host: object, form: BookingFormContext) -> list[FormFragment]:
        return [
            FormFragment(key="other.a", html="<p>a</p>", field_names=(), required=False, order=1)
        ]

    @hookimpl
    def booking_submit_check(self, host: object, submission: object) -> list[Veto]:
        raise RuntimeError("bug in another app")


def test_facade_sorts_filters_by_tenant_and_fails_closed(host: TestHost) -> None:
    pm = make_plugin_manager(strict=True, plugins=[("other", _Other())])
    tenant = host.new_tenant()
    active: set[str] = {"samtycke"}
    hooks = AppHooks(pm, host, lambda t: active)
    assert [a.key for a in hooks.apps()] == ["other", "samtycke"]
    hooks.activate(tenant, "samtycke", {"require_consent_for_online_booking": True})
    host.session().commit()
    form = BookingFormContext(tenant=tenant, client=None, locale="sv")
    assert [f.key for f in hooks.form_fragments(form)] == ["samtycke.consent"]
    active.add("other")
    assert [f.key for f in hooks.form_fragments(form)] == ["other.a", "samtycke.consent"]
    vetoes = hooks.submit_check(submission(tenant, None, ticked=True, is_new=True))
    assert [(v.key, v.retryable) for v in vetoes] == [("booking.check_failed", True)]
    active.discard("other")
    active.discard("samtycke")
    assert hooks.form_fragments(form) == []


def test_facade_rejects_duplicate_keys(host: TestHost) -> None:
    class Dup:
        @hookimpl
        def booking_form_render(self, host: object, form: object) -> list[FormFragment]:
            return [FormFragment(key="samtycke.consent", html="", field_names=(), required=False)]

    pm = make_plugin_manager(strict=True, plugins=[("dup", Dup())])
    tenant = host.new_tenant()
    hooks = AppHooks(pm, host, lambda t: {"samtycke"})
    hooks.activate(tenant, "samtycke", {"ask_new_clients": True})
    host.session().commit()
    with pytest.raises(DuplicateKeyError):
        hooks.form_fragments(BookingFormContext(tenant=tenant, client=None, locale="sv"))


def test_facade_menu_and_switch_for_the_hosts_app_menu(host: TestHost) -> None:
    pm = make_plugin_manager(strict=True, plugins=[("other", _Other())])
    tenant = host.new_tenant()
    active: set[str] = set()
    hooks = AppHooks(pm, host, lambda t: active)
    menu = hooks.menu(tenant, "sv")
    assert [(e["key"], e["name"], e["description"], e["active"]) for e in menu] == [
        ("other", "other", "", False),  # no Swedish name: the key
        ("samtycke", "Samtycke", hooks.apps()[1].description["sv"], False),
    ]
    assert menu[1]["setup_path"] == "/apps/samtycke/setup" and menu[1]["version"]
    assert hooks.menu(tenant, "en")[0]["name"] == "Other"
    assert hooks.switch(tenant, "samtycke", True, {}) == "/apps/samtycke/setup"
    host.session().commit()
    assert host.session().get(Practice, tenant) is not None
    active.add("samtycke")
    assert [e["active"] for e in hooks.menu(tenant, "sv")] == [False, True]
    assert hooks.switch(tenant, "samtycke", False, {}) is None
    host.session().commit()
    assert host.session().get(Practice, tenant, populate_existing=True).active is False  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        hooks.switch(tenant, "no-such-app", True, {})


def test_broken_app_is_skipped_unless_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    import hookspecs.facade as facade

    class EP:
        name = "broken"

        def load(self) -> object:
            raise ImportError("missing dependency")

    monkeypatch.setattr(facade, "entry_points", lambda group: [EP()])
    pm = make_plugin_manager()
    assert pm.list_name_plugin() == []
    with pytest.raises(ImportError):
        make_plugin_manager(strict=True)


def test_misspelled_impl_is_caught() -> None:
    mod = types.ModuleType("typo_app")

    @hookimpl
    def booking_form_rendr(host: object, form: object) -> None:  # the typo
        return None

    mod.booking_form_rendr = booking_form_rendr  # type: ignore[attr-defined]
    with pytest.raises(pluggy.PluginValidationError):
        make_plugin_manager(load_entrypoints=False, plugins=[("typo", mod)])


def test_marker_project_name() -> None:
    assert PROJECT == "booking"
    assert "hookspecs" in sys.modules


# -- one test per hook -----------------------------------------------------------------------


def test_hook_booking_app_info(host: TestHost) -> None:
    [info] = host.hooks().apps()
    assert info.key == "samtycke" and info.name["sv"] == "Samtycke"
    assert info.setup_path == "/apps/samtycke/setup"


def test_hook_booking_app_activated(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant("Fysio & Co <script>")
    host.activate(hooks, tenant)
    practice = host.session().get(Practice, tenant)
    assert practice is not None and practice.active and not practice.setup_complete
    text = practice_texts.current_text(host.session(), practice, "sv")
    assert "Fysio & Co" in text.body and "<script>" not in text.html  # escaped placeholder
    assert "info@lugnochro.example" in text.body
    en = practice_texts.current_text(host.session(), practice, "en")
    assert en.language == "en" and "withdraw your consent" in en.body
    # idempotent: activating again neither duplicates texts nor resets settings
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    host.activate(hooks, tenant)
    assert practices.settings_of(practice).require_consent_for_online_booking is True
    assert len(practice_texts.text_languages(host.session(), practice)) == 2
    with pytest.raises(ValueError, match="unknown_setting"):
        hooks.activate(tenant, "samtycke", {"unknown_setting": True})
    host.session().rollback()
    with pytest.raises(ValueError, match="tenant"):
        hooks.activate(TenantRef("bad tenant id!"), "samtycke", {})
    host.session().rollback()
    with pytest.raises(KeyError):
        hooks.activate(tenant, "no-such-app", {})


def test_hook_booking_app_deactivated(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    consent.record_manual(
        host, tenant, client, staff(), method="verbal", given_at=host.now(), note=None
    )
    host.session().commit()
    hooks.deactivate(tenant, "samtycke")
    host.session().commit()
    assert host.session().get(Practice, tenant, populate_existing=True).active is False  # type: ignore[union-attr]
    assert hooks.form_fragments(BookingFormContext(tenant=tenant, client=None, locale="sv")) == []
    # reactivation resumes with everything kept
    host.activate(hooks, tenant)
    assert consent.client_status(host, tenant, client).status.value == "valid"
    assert practices.settings_of(
        host.session().get(Practice, tenant)  # type: ignore[arg-type]
    ).require_consent_for_online_booking


def test_hook_booking_form_render(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant)
    form = BookingFormContext(tenant=tenant, client=None, locale="en")
    assert hooks.form_fragments(form) == []  # not asked before the setup wizard is finished
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    [frag] = hooks.form_fragments(form)
    assert frag.key == "samtycke.consent" and frag.required
    assert set(frag.field_names) == {"samtycke_consent", "samtycke_text"}
    assert (
        'for="samtycke-consent-box"' in frag.html
        and 'aria-describedby="samtycke-text"' in frag.html
    )
    assert "withdraw your consent" in frag.html  # English text for an English client
    assert "checked" not in frag.html  # never pre-ticked


def test_hook_booking_submit_check(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    vetoes = hooks.submit_check(submission(tenant, None, ticked=False, is_new=True))
    assert [v.key for v in vetoes] == ["samtycke.consent_required"]
    assert hooks.submit_check(submission(tenant, None, ticked=False, channel="staff")) == []


def test_hook_booking_submitted(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    [frag] = hooks.form_fragments(BookingFormContext(tenant=tenant, client=None, locale="sv"))
    text_id = int(re.search(r'name="samtycke_text" value="(\d+)"', frag.html).group(1))  # type: ignore[union-attr]
    client = host.new_client(tenant)
    sub = submission(tenant, None, ticked=True, text_id=text_id, is_new=True)
    assert hooks.submit_check(sub) == []
    hooks.submitted(sub, BookingRef("b-77"), client)
    host.session().commit()
    [event] = host.session().scalars(select(ConsentEvent).where(ConsentEvent.tenant_ref == tenant))
    assert (event.client_ref, event.booking_ref, event.state) == (client, "b-77", "given")
    with pytest.raises(ValueError, match="booking"):
        hooks.submitted(sub, BookingRef("not valid!"), client)
    host.session().rollback()


def test_hook_booking_client_profile_render(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    [panel] = hooks.profile_panels(tenant, client, staff(can_record=False), "sv")
    assert panel.key == "samtycke.status" and panel.label == "Inget samtycke"
    assert "/apps/samtycke/clients/" + client + "/obtain" in panel.html
    other = host.new_tenant()
    assert hooks.profile_panels(other, client, staff(), "sv") == []  # not active there


def test_hook_booking_client_list_filters(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant)
    assert [(f.key, f.label) for f in hooks.list_filters(tenant, "sv")] == [
        ("samtycke.not_valid", "Klienter utan giltigt samtycke"),
        ("samtycke.valid", "Klienter med giltigt samtycke"),
    ]


def _host_clients(host: TestHost) -> Table:
    md = MetaData()
    table = Table(
        f"host_client_{uuid.uuid4().hex[:8]}",
        md,
        Column("id", Integer, primary_key=True),
        Column("tenant", String(64)),
        Column("name", String(100)),
    )
    md.create_all(host.engine)
    return table


def test_hook_booking_client_list_filter_clause(host: TestHost) -> None:
    table = _host_clients(host)  # DDL first: SQLite writes are serialized (BEGIN IMMEDIATE)
    hooks = host.hooks()
    tenant = host.new_tenant()
    other = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    host.activate(hooks, other, require_consent_for_online_booking=True)
    ids = []
    for i in range(6):
        ids.append(
            host.session()
            .execute(insert(table).values(tenant=tenant, name=f"Klient {i}").returning(table.c.id))
            .scalar_one()
        )
    other_id = (
        host.session()
        .execute(insert(table).values(tenant=other, name="Annan").returning(table.c.id))
        .scalar_one()
    )
    for cid in (ids[0], ids[2]):
        host.clients[(tenant, str(cid))] = host.clients.get((tenant, str(cid))) or _info(cid)
        consent.record_manual(
            host, tenant, str(cid), staff(), method="paper", given_at=host.now(), note=None
        )
    host.clients[(other, str(other_id))] = _info(other_id)
    consent.record_manual(
        host, other, str(other_id), staff(), method="paper", given_at=host.now(), note=None
    )
    host.session().commit()

    def run(key: str) -> tuple[list[int], int]:
        ref = f"CAST({table.name}.id AS VARCHAR)"
        clause = hooks.list_filter_clause(tenant, key, ref)
        assert clause is not None and clause.key == key
        base = select(table.c.id).where(table.c.tenant == tenant, filter_condition(clause))
        page = host.session().scalars(base.order_by(table.c.id).limit(50)).all()
        total = host.session().scalar(select(func.count()).select_from(base.subquery()))
        return list(page), int(total or 0)

    assert run("samtycke.valid") == ([ids[0], ids[2]], 2)
    assert run("samtycke.not_valid") == ([i for i in ids if i not in (ids[0], ids[2])], 4)
    assert hooks.list_filter_clause(tenant, "other.filter", f"CAST({table.name}.id AS VARCHAR)") is None
    # a content change empties "valid" at once
    practice_texts.publish_text(
        host,
        tenant,
        bodies={"sv": "Helt ny text om personuppgifter här."},
        kind="content",
        reason=None,
        actor="staff:s1",
        expected_major=1,
    )
    host.session().commit()
    assert run("samtycke.valid") == ([], 0)
    host.session().rollback()
    table.drop(host.engine)


def _info(cid: int):  # type: ignore[no-untyped-def]
    from hookspecs.types import ClientInfo

    return ClientInfo(ref=ClientRef(str(cid)), name=f"Klient {cid}", email=None, locale="sv")


def test_hook_booking_client_list_badges(host: TestHost) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    a, b = host.new_client(tenant), host.new_client(tenant)
    consent.record_manual(host, tenant, a, staff(), method="paper", given_at=host.now(), note=None)
    host.session().commit()
    badges = hooks.list_badges(tenant, [a, b], "en")
    assert [x.label for x in badges[a]] == ["Valid consent"]
    assert [x.label for x in badges[b]] == ["No consent"]
    assert 'data-status="valid"' in badges[a][0].html
    other = host.new_tenant()
    host.activate(hooks, other)
    assert [x.label for x in hooks.list_badges(other, [a], "en")[a]] == ["No consent"]

"""Roles: what a staff member may do (``StaffContext.permissions``), checked on every
practitioner route (enumerated from the URL map), on the actions inside the open pages,
in the domain function that records consent and in the hook that renders a client's
actions.  For each permission, staff without it are refused everywhere it applies with
a 403 page saying who may do it, and nothing is written; staff with only it get
through.  Runs on SQLite and PostgreSQL (the ``host`` fixture)."""

from __future__ import annotations

import hashlib
import inspect
import re
from typing import Any

import pytest
from hostkit import TestHost
from markupsafe import escape
from reliability_support import dump
from test_practice_pages import P, Pages, confirm_key, current_body, events, give, set_up

from hookspecs.spec import BookingSpecs
from hookspecs.types import ALL_PERMISSIONS, Permission, StaffContext, StaffRef
from samtycke_plugin import consent, roles
from samtycke_plugin.email import jobs
from samtycke_plugin.errors import PermissionDenied
from samtycke_plugin.i18n import t
from samtycke_plugin.web import make_wsgi_app

#: Practitioner routes any signed-in staff member may open: the overview, a text
#: version, and the obtain and withdraw pages (which check their actions themselves).
OPEN = {"practice.overview", "practice.text_version", "practice.obtain", "practice.withdraw"}

#: A scan of a signed paper form (what a PNG starts with, then anything).
PNG = b"\x89PNG\r\n\x1a\n" + b"signed form"

#: Actions inside the open pages that need a permission: (permission, path, form).
ACTIONS: list[tuple[Permission, str, dict[str, Any]]] = [
    (Permission.RECORD_CONSENT, "/clients/{fresh}/obtain",
     {"action": "record", "method": "paper", "given_on": "2026-11-20", "note": ""}),
    (Permission.RECORD_CONSENT, "/clients/{fresh}/obtain",
     {"action": "record", "method": "paper", "given_on": "2026-11-21", "note": "",
      "scan": (PNG, "form.png")}),
    (Permission.RECORD_CONSENT, "/clients/{given}/withdraw", {"action": "revoke", "note": ""}),
]


def who(permissions: frozenset[Permission]) -> StaffContext:
    return StaffContext(ref=StaffRef("s7"), name="Sam Personal", permissions=permissions)


def _guarded() -> dict[str, tuple[Any, Permission]]:
    """endpoint → (rule, permission) for every practitioner route behind ``requires``."""
    app = make_wsgi_app()
    found = {}
    for rule in app.url_map.iter_rules():
        permission = getattr(app.handlers[rule.endpoint], "permission", None)
        if permission is not None:
            found[rule.endpoint] = (rule, permission)
    return found


def test_every_practitioner_route_is_guarded_or_open_on_purpose() -> None:
    app = make_wsgi_app()
    practice = [r for r in app.url_map.iter_rules() if not r.endpoint.startswith("public.")]
    assert len(practice) >= 8  # the enumeration sees the routes at all
    guarded = _guarded()
    for rule in practice:
        assert rule.endpoint in guarded or rule.endpoint in OPEN, (
            f"{rule.rule}: wrap its handler in web.base.requires(...) or list it in OPEN")
    assert {p for _r, p in guarded.values()} == {
        Permission.MANAGE_SETTINGS, Permission.SEND_BATCH, Permission.VIEW_HISTORY,
        Permission.RECORD_CONSENT}
    assert not any(r.endpoint.startswith("public.") for r, _p in guarded.values())


def _world(host: TestHost) -> dict[str, Any]:
    tenant = set_up(host)
    given = host.new_client(tenant, name="Greta Given", email="greta@example.org")
    fresh = host.new_client(tenant, name="Frans Fresh", email="frans@example.org")
    give(host, tenant, given)
    scanned = consent.record_manual(host, tenant, given, who(ALL_PERMISSIONS), method="paper",
                                    given_at=host.now(), note=None, attachment=PNG)
    job = jobs.start_batch(host, tenant, actor="staff:s1").job_id
    host.session().commit()
    ids = {"client": given, "job_id": job, "text_id": 1, "sha256": scanned.attachment_sha256}
    return {"tenant": tenant, "given": given, "fresh": fresh, "ids": ids}


def _paths(world: dict[str, Any], permission: Permission) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, form) of every route and action of ``permission``."""
    adapter = make_wsgi_app().url_map.bind("x.test")
    out = []
    for rule, needed in _guarded().values():
        if needed != permission:
            continue
        path = adapter.build(rule.endpoint, {a: world["ids"][a] for a in rule.arguments})
        for method in sorted(rule.methods - {"OPTIONS", "HEAD"}):
            out.append((method, path, {"step": "3", "action": "save", "expected_major": "1"}))
    for needed, path, form in ACTIONS:
        if needed == permission:
            out.append(("POST", path.format(**world), form))
    return out


def _refusal(permission: Permission, path: str) -> str:
    return roles.TEXT_REFUSED if path == "/text" else roles.REFUSED[permission]


@pytest.mark.parametrize("permission", [p for p in Permission if p != Permission.EXPORT],
                         ids=lambda p: p.value)
def test_without_a_permission_each_of_its_routes_and_actions_is_refused_and_writes_nothing(
    host: TestHost, permission: Permission
) -> None:
    world = _world(host)
    tenant = world["tenant"]
    pages = Pages(host, tenant, who(ALL_PERMISSIONS - {permission}))
    paths = _paths(world, permission)
    assert paths, f"no route or action checks {permission}"
    before = dump(host.engine, [tenant])
    for method, path, form in paths:
        for lang in ("sv", "en"):
            if method == "GET":
                response = pages.get(path, lang=lang)
            else:
                response = pages.post(path, form, lang=lang)
            body = response.get_data(as_text=True)
            assert response.status_code == 403, (method, path, response.status_code)
            assert escape(t(lang, _refusal(permission, path))) in body, (method, path, lang)
            assert "Traceback" not in body
        assert "mottagningens ägare" in t("sv", _refusal(permission, path))
    assert dump(host.engine, [tenant]) == before


def test_staff_with_only_the_permission_get_through(host: TestHost) -> None:
    world = _world(host)
    tenant = world["tenant"]
    for permission in (Permission.MANAGE_SETTINGS, Permission.SEND_BATCH,
                       Permission.VIEW_HISTORY):
        pages = Pages(host, tenant, who(frozenset({permission})))
        for method, path, _form in _paths(world, permission):
            if method == "GET":
                assert pages.get(path).status_code == 200, path
    # the writes of each permission, by staff with that permission only
    settings = Pages(host, tenant, who(frozenset({Permission.MANAGE_SETTINGS})))
    edited = current_body(host, tenant, "sv").replace("Frågor?", "Har du frågor?")
    saved = settings.post("/text", {"action": "save", "kind": "correction",
                                     "expected_major": "1", "text_sv": edited})
    assert saved.status_code == 303 and "Har du frågor?" in current_body(host, tenant, "sv")
    batch = Pages(host, tenant, who(frozenset({Permission.SEND_BATCH})))
    for _ in range(5):  # the fixture's job runs to its end first (one at a time)
        if jobs.unfinished_job(host, tenant) is None:
            break
        jobs.run_pending(host, tenant=tenant)
    started = batch.post("/batch", confirm_key(batch))
    assert started.status_code == 303 and "/batch/jobs/" in started.headers["Location"]
    recorder = Pages(host, tenant, who(frozenset({Permission.RECORD_CONSENT})))
    count = len(events(host, tenant))
    for _permission, path, form in ACTIONS:
        response = recorder.post(path.format(**world), form)
        assert response.status_code == 303, path
        # without the history permission the recorder is not sent to the history
        assert "/history" not in response.headers["Location"]
    assert len(events(host, tenant)) == count + len(ACTIONS)
    assert {e.actor for e in events(host, tenant)[-len(ACTIONS):]} == {"staff:s7"}
    # the scan a recorder attached is in the event's hash
    assert events(host, tenant)[-2].attachment_sha256 == hashlib.sha256(PNG).hexdigest()


def test_anyone_signed_in_may_record_a_withdrawal_the_client_asked_for(host: TestHost) -> None:
    world = _world(host)
    nobody = Pages(host, world["tenant"], who(frozenset()))
    response = nobody.post(f"/clients/{world['given']}/withdraw",
                           {"action": "withdraw", "note": ""})
    assert response.status_code == 303
    assert response.headers["Location"].startswith(f"{P}/clients/{world['given']}/withdraw")
    assert events(host, world["tenant"])[-1].state == "withdrawn"


def test_links_to_what_the_staff_member_may_not_do_are_left_out_with_the_reason(
    host: TestHost,
) -> None:
    world = _world(host)
    tenant = world["tenant"]
    owner = Pages(host, tenant, who(ALL_PERMISSIONS)).get("/").get_data(as_text=True)
    for link in (f'href="{P}/text"', f'href="{P}/batch"', f'href="{P}/setup"'):
        assert link in owner
    recorder = Pages(host, tenant, who(frozenset({Permission.RECORD_CONSENT})))
    page = recorder.get("/").get_data(as_text=True)
    for link in (f'href="{P}/text"', f'href="{P}/batch"', f'href="{P}/setup"'):
        assert link not in page
    assert escape(t("sv", roles.REFUSED[Permission.MANAGE_SETTINGS])) in page
    assert escape(t("sv", roles.REFUSED[Permission.SEND_BATCH])) in page
    obtain = recorder.get(f"/clients/{world['fresh']}/obtain").get_data(as_text=True)
    assert 'value="record"' in obtain and "/history" not in obtain
    reader = Pages(host, tenant, who(frozenset({Permission.VIEW_HISTORY})))
    obtain = reader.get(f"/clients/{world['fresh']}/obtain").get_data(as_text=True)
    assert 'value="record"' not in obtain and f"/clients/{world['fresh']}/history" in obtain


def test_every_hook_that_acts_for_staff_shows_only_their_actions(host: TestHost) -> None:
    """Enumerated from the hook specifications: a hook taking a ``staff`` argument."""
    acting = sorted(name for name, spec in inspect.getmembers(BookingSpecs, inspect.isfunction)
                    if "staff" in inspect.signature(spec).parameters)
    assert acting == ["booking_client_profile_render"], "add the new hook to this test"
    hooks = host.hooks()
    world = _world(host)
    tenant, given = world["tenant"], world["given"]

    def panel(staff: StaffContext) -> str:
        [[result]] = hooks.pm.hook.booking_client_profile_render(
            host=host, tenant=tenant, client=given, staff=staff, locale="sv")
        host.session().rollback()
        return str(result.html)

    assert f"/clients/{given}/history" in panel(who(frozenset({Permission.VIEW_HISTORY})))
    assert f"/clients/{given}/history" not in panel(who(ALL_PERMISSIONS - {
        Permission.VIEW_HISTORY}))
    unset = host.new_tenant("Ej klar")
    host.activate(hooks, unset)  # not set up yet: the panel points at the wizard
    fresh = host.new_client(unset)

    def unset_panel(staff: StaffContext) -> str:
        [[result]] = hooks.pm.hook.booking_client_profile_render(
            host=host, tenant=unset, client=fresh, staff=staff, locale="sv")
        host.session().rollback()
        return str(result.html)

    assert f'href="{P}/setup"' in unset_panel(who(ALL_PERMISSIONS))
    refused = unset_panel(who(frozenset({Permission.RECORD_CONSENT})))
    assert f'href="{P}/setup"' not in refused
    assert escape(t("sv", roles.REFUSED[Permission.MANAGE_SETTINGS])) in refused


def test_the_domain_function_refuses_recording_without_the_permission(host: TestHost) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant)
    before = dump(host.engine, [tenant])
    for staff in (who(ALL_PERMISSIONS - {Permission.RECORD_CONSENT}),
                  StaffContext(ref=StaffRef("s8"), name="Legacy", can_record_consent=False),
                  StaffContext(ref=StaffRef("s9"), name="Unsaid")):
        with pytest.raises(PermissionDenied, match="Only staff who may record consent"):
            consent.record_manual(host, tenant, client, staff, method="paper",
                                  given_at=host.now(), note=None)
        host.session().rollback()
    assert dump(host.engine, [tenant]) == before
    legacy = StaffContext(ref=StaffRef("s8"), name="Legacy", can_record_consent=True)
    consent.record_manual(host, tenant, client, legacy, method="paper", given_at=host.now(),
                          note=None)
    host.session().commit()
    assert events(host, tenant)[-1].actor == "staff:s8"


def test_the_contract_maps_the_older_flag_and_defaults_to_nothing() -> None:
    legacy = StaffContext(ref=StaffRef("1"), name="A", can_record_consent=True)
    assert legacy.permissions == {Permission.RECORD_CONSENT}
    assert StaffContext(ref=StaffRef("1"), name="A").permissions == frozenset()
    assert not StaffContext(ref=StaffRef("1"), name="A", can_record_consent=False).permissions
    named = StaffContext(ref=StaffRef("1"), name="A", permissions=["record_consent", "export"])
    assert named.can_record_consent and named.may(Permission.EXPORT)
    assert not StaffContext(ref=StaffRef("1"), name="A",
                            permissions=["export"]).can_record_consent
    with pytest.raises(ValueError):
        StaffContext(ref=StaffRef("1"), name="A", can_record_consent=True, permissions=[])
    with pytest.raises(ValueError):
        StaffContext(ref=StaffRef("1"), name="A", permissions=["record"])  # a typo
    mapping = {"owner": ["*"], "staff": ["record_consent"]}
    assert roles.role_permissions(mapping, "owner") == ALL_PERMISSIONS
    assert roles.role_permissions(mapping, "staff") == {Permission.RECORD_CONSENT}
    assert roles.role_permissions(mapping, "staff", can_record_consent=False) == frozenset()
    assert roles.role_permissions(mapping, "intern") == frozenset()
    with pytest.raises(ValueError):
        roles.role_permissions({"staff": "record_consent"}, "staff")
    assert re.fullmatch(r"[a-z_]+", Permission.VIEW_HISTORY.value)


def test_every_command_line_path_that_acts_as_a_staff_member_checks_them() -> None:
    """The CLI's operator commands take no staff member.  A command that acts for staff
    is a ``StaffCommand``: it takes ``--staff``, asks the host who that is and checks
    them with roles.require before it runs, and records them as ``staff:<ref>``, never
    a free text (``tests/test_cli_roles.py`` runs each one with and without the
    permission)."""
    import click

    from samtycke_plugin.cli import main
    from samtycke_plugin.cli.staff import StaffCommand

    def commands(group: click.Command, path: str = "samtycke") -> list[tuple[str, Any]]:
        found = [(path, group)]
        for name, sub in getattr(group, "commands", {}).items():
            found += commands(sub, f"{path} {name}")
        return found

    every = commands(main)
    assert len(every) > 10  # the walk sees the commands at all
    staff_commands = 0
    for path, command in every:
        names = {p.name or "" for p in command.params}
        if isinstance(command, StaffCommand):
            staff_commands += 1
            assert "staff" in names and isinstance(command.permission, Permission), path
            assert not any("actor" in n or "role" in n for n in names), path
        else:
            assert not any("staff" in n or "role" in n or "permission" in n or "actor" in n
                           for n in names), path
    assert staff_commands >= 4
    checked = inspect.getsource(__import__("samtycke_plugin.cli.staff", fromlist=["x"]))
    assert "roles.require(staff, permission)" in checked
    source = inspect.getsource(__import__("samtycke_plugin.cli.mail", fromlist=["x"]))
    assert "actor=consent.staff_actor(staff)" in source and '"cli:' not in source

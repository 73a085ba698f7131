"""The Django clinic's roles: the owner may do everything in the app, other staff record
consent only, as ``settings.SAMTYCKE["ROLES"]`` says (and a change there changes it);
a member whose own flag withholds recording is refused that too."""

from __future__ import annotations

import io
import re
import uuid
from contextlib import redirect_stderr
from typing import Any

import pytest
from django_support import (
    PREFIX,
    add_practice,
    book,
    complete_setup,
    hidden_fields,
    page,
    signed_in,
)

from examples.django_host.clinic.models import Client, StaffMember
from hookspecs.types import ALL_PERMISSIONS, Permission

pytestmark = pytest.mark.usefixtures("clinic_db")


def _member(practice: Any, *, record: bool) -> Any:
    from django.contrib.auth.models import User

    user = User.objects.create_user("s-" + uuid.uuid4().hex[:10], password="pw",
                                    first_name="Sam")
    StaffMember.objects.create(user=user, practice=practice, is_owner=False,
                               can_record_consent=record)
    return user


def _count(practice: Any) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM samtycke_consent_event WHERE tenant_ref = %s",
                       [str(practice.pk)])
        return int(cursor.fetchone()[0])


def _record(browser: Any, client: Any) -> Any:
    form = hidden_fields(page(browser.get(f"{PREFIX}/clients/{client.pk}/obtain")))
    form.update({"action": "record", "method": "paper", "given_on": "2026-01-15", "note": ""})
    return browser.post(f"{PREFIX}/clients/{client.pk}/obtain", form)


def test_owner_everything_staff_recording_only_as_the_settings_say() -> None:
    from django.conf import settings
    from django.test import override_settings

    practice, owner_user = add_practice()
    owner = signed_in(owner_user)
    owner.post("/apps/", {"app": "samtycke", "action": "activate"})
    complete_setup(owner, required=False)
    assert book(practice, name="Ada Ek", email="ada@example.com", consent=False
                ).status_code == 302
    client = Client.objects.get(practice=practice, email_key="ada@example.com")
    staff = signed_in(_member(practice, record=True))
    barred = signed_in(_member(practice, record=False))
    pages = ("/setup", "/text", "/batch", f"/clients/{client.pk}/history")

    for path in pages:
        assert owner.get(PREFIX + path).status_code == 200, path
        refused = staff.get(PREFIX + path)
        assert refused.status_code == 403, path
        assert "mottagningens ägare" in page(refused) and "Traceback" not in page(refused)
    overview = page(staff.get(PREFIX + "/"))
    assert f'href="{PREFIX}/setup"' not in overview and f'href="{PREFIX}/setup"' in page(
        owner.get(PREFIX + "/"))

    before = _count(practice)
    assert _record(barred, client).status_code == 403
    assert _count(practice) == before
    recorded = _record(staff, client)
    assert recorded.status_code in (302, 303), page(recorded)
    assert _count(practice) == before + 1

    # The mapping is the project's setting: giving staff the history opens it for them.
    roles = {"owner": ["*"], "staff": ["record_consent", "view_history"]}
    with override_settings(SAMTYCKE={**settings.SAMTYCKE, "ROLES": roles}):
        assert staff.get(f"{PREFIX}/clients/{client.pk}/history").status_code == 200
        assert staff.get(f"{PREFIX}/setup").status_code == 403


def test_the_host_helper_maps_roles_and_gives_nothing_without_a_mapping() -> None:
    from django.conf import settings
    from django.test import override_settings

    from samtycke_plugin.integrations.django import samtycke

    host = samtycke().host
    assert host.staff_context(1, "A", "owner").permissions == ALL_PERMISSIONS
    assert host.staff_context(1, "A", "staff").permissions == {Permission.RECORD_CONSENT}
    assert host.staff_context(1, "A", "staff", can_record_consent=False).permissions == set()
    without = {k: v for k, v in settings.SAMTYCKE.items() if k != "ROLES"}
    with override_settings(SAMTYCKE=without):
        assert host.staff_context(1, "A", "owner").permissions == frozenset()
    assert re.fullmatch(r"\d+", str(host.staff_context(7, "A", "owner").ref))


def test_the_command_line_asks_the_host_who_a_staff_member_is() -> None:
    """``DjangoHost.staff_member`` (the command line's ``--staff``): the user by primary
    key, with the permissions :meth:`staff` gives them, only at their own practice."""
    from django.db import transaction

    from examples.django_host.clinic import samtycke_glue as glue
    from hookspecs.types import StaffRef, TenantRef
    from samtycke_plugin.integrations.django import samtycke
    from samtycke_plugin.integrations.django.management.commands.samtycke import run_cli

    host = samtycke().host
    practice, owner = add_practice()
    other, other_owner = add_practice()
    recorder = _member(practice, record=True)
    tenant = TenantRef(str(practice.pk))
    with host.unit_of_work():
        found = host.staff_member(tenant, StaffRef(str(owner.pk)))
        assert found is not None and found.permissions == ALL_PERMISSIONS
        found = host.staff_member(tenant, StaffRef(str(recorder.pk)))
        assert found is not None and found.permissions == {Permission.RECORD_CONSENT}
        assert host.staff_member(tenant, StaffRef(str(other_owner.pk))) is None
        assert host.staff_member(TenantRef(str(other.pk)), StaffRef(str(owner.pk))) is None
        assert host.staff_member(tenant, StaffRef("not-a-key")) is None
        assert host.staff_member(tenant, StaffRef("99999999")) is None
    with transaction.atomic():
        glue.set_active(practice, "samtycke", True)
    said = io.StringIO()
    with redirect_stderr(said):
        assert run_cli(["access-log", "--staff", str(recorder.pk), "--tenant", tenant]) == 1
    assert "was refused for Sam" in said.getvalue() and "owner" in said.getvalue()
    with redirect_stderr(said):
        assert run_cli(["access-log", "--staff", str(owner.pk), "--tenant", tenant]) == 0

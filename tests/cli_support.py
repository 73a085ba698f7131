"""Hosts for the command-line tests that know staff (``hookspecs.host.StaffDirectory``).

``samtycke --host cli_support:staffed_host`` is the test's :class:`TestHost` (the one
``smtp_support.CLI_HOSTS`` holds) with the staff of :data:`ROSTER`;
``--host cli_support:standalone`` is the command line's own database-only host (no
client names) with the same staff; ``--host cli_support:example_host`` is the example
platform's own host (its staff and roles), the one :data:`EXAMPLE_HOSTS` holds.
"""

from __future__ import annotations

from typing import Any

import click
from smtp_support import CLI_HOSTS

from hookspecs.types import ALL_PERMISSIONS, Permission, StaffContext, StaffRef, TenantRef
from samtycke_plugin.cli.context import Context, StandaloneHost

#: Staff reference → (their context, the one practice they work at or ``None`` for any).
ROSTER: dict[str, tuple[StaffContext, str | None]] = {
    "owner": (StaffContext(ref=StaffRef("owner"), name="Olga Owner",
                           permissions=ALL_PERMISSIONS), None),
    "recorder": (StaffContext(ref=StaffRef("recorder"), name="Rut Recorder",
                              permissions={Permission.RECORD_CONSENT}), None),
    "elsewhere": (StaffContext(ref=StaffRef("elsewhere"), name="Ellen Elsewhere",
                               permissions=ALL_PERMISSIONS), "t-another-practice"),
}


def only(permission: Permission) -> StaffContext:
    """A staff member with ``permission`` alone, added to the roster as ``only-<name>``."""
    ref = f"only-{permission.value}"
    ROSTER[ref] = (StaffContext(ref=StaffRef(ref), name=f"Only {permission.value}",
                                permissions={permission}), None)
    return ROSTER[ref][0]


def without(permission: Permission) -> StaffContext:
    """A staff member with every permission but ``permission`` (``all-but-<name>``)."""
    ref = f"all-but-{permission.value}"
    ROSTER[ref] = (StaffContext(ref=StaffRef(ref), name=f"All but {permission.value}",
                                permissions=ALL_PERMISSIONS - {permission}), None)
    return ROSTER[ref][0]


def member(tenant: TenantRef, staff: StaffRef) -> StaffContext | None:
    found = ROSTER.get(staff)
    if found is None or found[1] not in (None, tenant):
        return None
    return found[0]


class StaffedHost:
    """A host with everything of the wrapped one, and :data:`ROSTER` as its staff."""

    def __init__(self, host: Any) -> None:
        self._host = host

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)

    def staff_member(self, tenant: TenantRef, staff: StaffRef) -> StaffContext | None:
        return member(tenant, staff)


class StandaloneWithStaff(StandaloneHost):
    def staff_member(self, tenant: TenantRef, staff: StaffRef) -> StaffContext | None:
        return member(tenant, staff)


def staffed_host() -> StaffedHost:
    """Factory: the test's host (``smtp_support.CLI_HOSTS``) with staff."""
    return StaffedHost(CLI_HOSTS[-1])


def standalone() -> StandaloneHost:
    """Factory: the database-only host of ``--database-url``, with staff."""
    cli = click.get_current_context().find_object(Context)
    assert cli is not None
    return StandaloneWithStaff(cli.engine, cli.base_url)


#: The example platform's host for ``--host cli_support:example_host``.
EXAMPLE_HOSTS: list[Any] = []


def example_host() -> Any:
    """Factory: the example platform's ``PlatformHost`` under test."""
    return EXAMPLE_HOSTS[-1]

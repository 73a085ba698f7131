"""Staff commands: the ``samtycke`` commands that act for a staff member on a practice's
personal data or mail its clients, and the check they share.

Such a command is a :class:`StaffCommand` with the :class:`Permission` the matching
page requires.  It takes ``--staff REF`` (or ``SAMTYCKE_STAFF``), asks the host who that
is (:class:`hookspecs.host.StaffDirectory`) and refuses, before reading or writing
anything, when the host cannot say, the person is unknown at the practice, or they lack
the permission; the refusal says who may do it (the pages' own sentence,
:func:`samtycke_plugin.roles.require`).  The command then runs with that person's
:class:`StaffContext` as its ``staff`` argument and records them as the actor.

Every other command is an operator's: it keeps the database and the mail relay running
and shows no client's data (``verify``, ``rebuild-status``, ``checkpoint``, ``db``,
``outbox send``, ``secret``).
"""

from __future__ import annotations

import inspect
from typing import Any, NoReturn

import click

from hookspecs.host import StaffDirectory
from hookspecs.types import Permission, StaffContext, StaffRef, TenantRef
from samtycke_plugin import roles
from samtycke_plugin.cli.context import Context
from samtycke_plugin.errors import PermissionDenied
from samtycke_plugin.i18n import t

#: The environment variable that names the staff member when ``--staff`` is not given.
STAFF_ENV = "SAMTYCKE_STAFF"

#: Said after a staff command's own help text.
STAFF_HELP = (
    "A staff command: it needs --staff REF (or SAMTYCKE_STAFF), the staff member the "
    "platform (--host) knows by that reference, with the permission '{permission}'."
)


class StaffCommand(click.Command):
    """A command run for a staff member who needs ``permission`` (see the module)."""

    def __init__(self, *args: Any, permission: Permission, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.permission = permission
        self.params.append(click.Option(
            ["--staff", "staff"], envvar=STAFF_ENV, metavar="REF",
            help="The staff member doing this (their reference in the platform); "
                 f"needs the permission '{permission.value}'."))
        self.help = (inspect.cleandoc(self.help or "") + "\n\n"
                     + STAFF_HELP.format(permission=permission.value))

    def invoke(self, ctx: click.Context) -> Any:
        params = ctx.params
        cli = ctx.find_object(Context)
        assert cli is not None  # the main group always sets it
        params["staff"] = acting_staff(cli, ctx.command_path, params["tenant"],
                                       params.get("staff"), self.permission,
                                       params.get("locale") or "en")
        return super().invoke(ctx)


def _refuse(message: str) -> NoReturn:
    raise click.ClickException(message)


def acting_staff(cli: Context, command: str, tenant: str, ref: str | None,
                 permission: Permission, locale: str) -> StaffContext:
    """The staff member ``ref`` of ``tenant`` when they may do ``permission``; otherwise
    a :class:`click.ClickException` (exit status 1) saying what was refused and who may
    do it, raised before the command reads or writes anything."""
    if not ref or not ref.strip():
        _refuse(t(locale,
                  "%(command)s was refused: it acts for a staff member. Say who with --staff "
                  "REF (or SAMTYCKE_STAFF), their reference in the platform.",
                  command=command))
    host = cli.host
    if not isinstance(host, StaffDirectory):
        _refuse(t(locale,
                  "%(command)s was refused: the platform does not say who its staff are, so "
                  "nobody's permission can be checked. Run it with --host module:factory, "
                  "whose host must provide staff_member() (see the integration guide).",
                  command=command))
    with host.unit_of_work():
        staff = host.staff_member(TenantRef(tenant), StaffRef(ref.strip()))
    if staff is None:
        _refuse(t(locale,
                  "%(command)s was refused: no staff member %(staff)s works at practice "
                  "%(tenant)s. Check the reference with the practice's owner.",
                  command=command, staff=ref.strip(), tenant=tenant))
    try:
        roles.require(staff, permission)  # the pages' check, and its sentence
    except PermissionDenied as exc:
        refused = t(locale, "%(command)s was refused for %(name)s (staff member %(staff)s).",
                    command=command, name=staff.name, staff=staff.ref)
        _refuse(refused + " " + t(locale, str(exc)))
    return staff

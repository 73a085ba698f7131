"""The command line checks roles as the pages do: every command is either an operator's
(no client's data, no mail to clients) or a staff command that needs ``--staff`` and the
permission of the matching page; a staff member without it is refused, told who may,
and nothing is read into a file or written.  SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from batch_support import rows as batch_rows
from cli_support import only, without
from click.testing import CliRunner, Result
from hostkit import TestHost, staff
from smtp_support import CLI_HOSTS
from sqlalchemy import func, select

from hookspecs.types import Permission
from samtycke_plugin import consent, roles
from samtycke_plugin.cli import main
from samtycke_plugin.cli.staff import StaffCommand
from samtycke_plugin.i18n import t
from samtycke_plugin.models import AccessLogEntry, OutboxMessage

#: Commands that keep the database, the ledger and the mail relay running and show no
#: client's data: they need no staff member.
OPERATOR = {
    "secret", "verify", "rebuild-status", "db upgrade", "db downgrade", "outbox send",
    "checkpoint keygen", "checkpoint create", "checkpoint check",
    "check-bundle",  # a proof bundle file on its own: no database, nothing of the practice
}
#: Staff commands and the permission of the page that does the same.
GUARDED = {
    "request all": Permission.SEND_BATCH,
    "export client": Permission.EXPORT,
    "export practice": Permission.EXPORT,
    "access-log": Permission.VIEW_HISTORY,
}
STAFFED = ["--host", "cli_support:staffed_host"]


def commands(group: click.Group = main, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    """Every command under ``main``, by its path (``"export client"``)."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from commands(command, path + " ")
        else:
            yield path, command


def test_every_command_is_an_operators_or_checks_the_staff_members_permission() -> None:
    found = dict(commands())
    assert len(found) >= 10  # the enumeration sees the nested groups
    unclassified = {p for p, c in found.items()
                    if p not in OPERATOR and not isinstance(c, StaffCommand)}
    assert unclassified == set(), "add each new command to OPERATOR or make it a StaffCommand"
    guarded = {p: c.permission for p, c in found.items() if isinstance(c, StaffCommand)}
    assert guarded == GUARDED
    assert OPERATOR <= set(found) and not OPERATOR & set(guarded)
    for path in guarded:
        option = next(p for p in found[path].params if p.name == "staff")
        assert isinstance(option, click.Option) and option.envvar == "SAMTYCKE_STAFF"


def test_help_says_which_commands_are_staff_commands() -> None:
    runner = CliRunner()
    top = runner.invoke(main, ["--help"]).output
    assert "Staff commands" in top and "Operator commands" in top and "--staff" in top
    one = runner.invoke(main, ["export", "client", "--help"]).output
    assert "--staff REF" in one and "'export'" in one and "SAMTYCKE_STAFF" in one


@pytest.fixture
def cli(host: TestHost) -> Iterator[CliRunner]:
    CLI_HOSTS.append(host)
    yield CliRunner()
    CLI_HOSTS.remove(host)


def _practice(host: TestHost) -> tuple[str, str]:
    """A practice with one client who gave consent on paper and one never asked."""
    tenant = host.new_tenant()
    host.activate(host.hooks(), tenant, ask_new_clients=False)
    client = host.new_client(tenant, name="Greta Loggad", email="greta@example.org")
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=host.now(),
                          note=None)
    host.new_client(tenant, name="Nils Aldrig", email="nils@example.org")
    host.session().commit()
    return tenant, client


Args = Callable[[str, str, Path], list[str]]
#: Each staff command's arguments for a practice, a client and an output file.
ARGS: dict[str, Args] = {
    "request all": lambda tenant, client, out: ["request", "all", "--tenant", tenant, "--yes"],
    "export client": lambda tenant, client, out: [
        "export", "client", "--tenant", tenant, "--client", client, "--out", str(out)],
    "export practice": lambda tenant, client, out: [
        "export", "practice", "--tenant", tenant, "--out", str(out)],
    "access-log": lambda tenant, client, out: ["access-log", "--tenant", tenant, "--out",
                                               str(out)],
}


def written(host: TestHost, tenant: str) -> dict[str, Any]:
    """Everything a staff command could have written for the practice."""
    counts: dict[str, Any] = batch_rows(host, tenant)
    counts["access_log"] = host.session().execute(
        select(AccessLogEntry.actor, AccessLogEntry.action).where(
            AccessLogEntry.tenant_ref == tenant).order_by(AccessLogEntry.id)).all()
    host.session().rollback()
    return counts


def _run(cli: CliRunner, path: str, staff_ref: str | None, tenant: str, client: str,
         out: Path, *, host_args: list[str] = STAFFED, env: dict[str, str] | None = None
         ) -> Result:
    args = ARGS[path](tenant, client, out)
    cut = len(path.split())
    staff_args = [] if staff_ref is None else ["--staff", staff_ref]
    return cli.invoke(main, [*host_args, *args[:cut], *staff_args, *args[cut:]], env=env)


def test_the_commands_in_this_test_are_every_staff_command() -> None:
    assert set(ARGS) == set(GUARDED)


@pytest.mark.parametrize("path", sorted(GUARDED))
def test_without_the_permission_a_staff_command_is_refused_and_writes_nothing(
    host: TestHost, cli: CliRunner, tmp_path: Path, path: str
) -> None:
    permission = GUARDED[path]
    tenant, client = _practice(host)
    lacking = without(permission)  # every other permission
    before = written(host, tenant)
    out = tmp_path / "out"
    refused = _run(cli, path, lacking.ref, tenant, client, out)
    assert refused.exit_code == 1, refused.output
    assert f"was refused for {lacking.name} (staff member {lacking.ref})" in refused.output
    assert " ".join(t("en", roles.REFUSED[permission]).split()) in " ".join(
        refused.output.split())  # says who may: the pages' own sentence
    assert written(host, tenant) == before and not out.exists()


@pytest.mark.parametrize("path", sorted(GUARDED))
def test_with_only_the_permission_a_staff_command_runs_as_that_staff_member(
    host: TestHost, cli: CliRunner, tmp_path: Path, path: str
) -> None:
    permission = GUARDED[path]
    tenant, client = _practice(host)
    allowed = only(permission)
    before = written(host, tenant)
    out = tmp_path / "out"
    result = _run(cli, path, allowed.ref, tenant, client, out)
    assert result.exit_code == 0, result.output
    after = written(host, tenant)
    actor = f"staff:{allowed.ref}"
    if path == "request all":
        assert after["outbox"] == before["outbox"] + 1  # the client never asked
        newest = host.session().scalars(select(OutboxMessage).where(
            OutboxMessage.tenant_ref == tenant).order_by(OutboxMessage.id.desc())).first()
        assert newest is not None and newest.payload["actor"] == actor  # who asked
        host.session().rollback()
    elif path == "access-log":
        assert after == before and out.exists()  # reading the log records nothing
    else:
        assert after["access_log"] == [*before["access_log"], (actor, after["access_log"][-1][1])]
        assert out.exists() and out.stat().st_size > 0


def test_unknown_staff_another_practices_staff_and_no_staff_are_refused(
    host: TestHost, cli: CliRunner, tmp_path: Path
) -> None:
    tenant, client = _practice(host)
    before = written(host, tenant)
    out = tmp_path / "out"
    ghost = _run(cli, "export client", "ghost", tenant, client, out)
    assert ghost.exit_code == 1 and f"no staff member ghost works at practice {tenant}" in (
        " ".join(ghost.output.split()))
    elsewhere = _run(cli, "export client", "elsewhere", tenant, client, out)
    assert elsewhere.exit_code == 1 and "no staff member elsewhere" in elsewhere.output
    nobody = _run(cli, "export practice", None, tenant, client, out)
    assert nobody.exit_code == 1 and "--staff REF" in nobody.output
    blank = _run(cli, "access-log", "  ", tenant, client, out)
    assert blank.exit_code == 1 and "--staff REF" in blank.output
    assert written(host, tenant) == before and not out.exists()


def test_a_host_that_does_not_say_who_its_staff_are_runs_no_staff_command(
    host: TestHost, cli: CliRunner, tmp_path: Path
) -> None:
    tenant, client = _practice(host)
    before = written(host, tenant)
    out = tmp_path / "out"
    url = host.engine.url.render_as_string(hide_password=False)
    for host_args in (["--host", "smtp_support:cli_host"], ["--database-url", url]):
        for path in sorted(GUARDED):
            result = _run(cli, path, "owner", tenant, client, out, host_args=host_args)
            assert result.exit_code == 1, (host_args, path, result.output)
            assert "staff_member()" in result.output and "was refused" in result.output
    assert written(host, tenant) == before and not out.exists()
    # the operator's commands keep working without any staff
    verified = cli.invoke(main, ["--database-url", url, "verify", "--tenant", tenant])
    assert verified.exit_code == 0, verified.output


def test_the_staff_member_from_the_environment_and_the_refusal_in_swedish(
    host: TestHost, cli: CliRunner, tmp_path: Path
) -> None:
    tenant, client = _practice(host)
    before = written(host, tenant)
    out = tmp_path / "out"
    by_env = _run(cli, "export client", None, tenant, client, out,
                  env={"SAMTYCKE_STAFF": "owner"})
    assert by_env.exit_code == 0, by_env.output
    assert written(host, tenant)["access_log"] == [("staff:owner", "download_json")]
    recorder = cli.invoke(main, [*STAFFED, "request", "all", "--staff", "recorder",
                                 "--tenant", tenant, "--yes", "--locale", "sv"])
    assert recorder.exit_code == 1
    assert "nekades för Rut Recorder (medarbetare recorder)" in recorder.output
    assert " ".join(t("sv", roles.REFUSED[Permission.SEND_BATCH]).split()) in " ".join(
        recorder.output.split())
    assert written(host, tenant)["requests"] == before["requests"]


def test_the_rows_counted_here_are_the_ones_an_export_writes(host: TestHost) -> None:
    """The checks above look at the rows of the practice under test: the table they
    count is the one the commands write (a guard against counting the wrong table)."""
    tenant, client = _practice(host)
    from samtycke_plugin import export
    from samtycke_plugin.access_log import Viewer

    export.client_history_json(host, tenant, client, by=Viewer(actor="staff:x", via="cli"))
    host.session().commit()
    assert host.session().scalar(select(func.count()).select_from(AccessLogEntry).where(
        AccessLogEntry.tenant_ref == tenant)) == 1
    assert written(host, tenant)["access_log"] == [("staff:x", "download_json")]

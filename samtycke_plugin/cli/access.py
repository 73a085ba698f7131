"""``samtycke access-log``: the practice's access log (who viewed or exported which
client's consent data), newest first, as lines to read or as CSV."""

from __future__ import annotations

import click

from hookspecs.types import Permission, StaffContext
from samtycke_plugin import hostdb
from samtycke_plugin.cli.context import Context, pass_ctx
from samtycke_plugin.cli.staff import StaffCommand


@click.command("access-log", cls=StaffCommand, permission=Permission.VIEW_HISTORY)
@click.option("--tenant", required=True, help="The practice.")
@click.option("--client", "client", default=None, help="Only this client reference.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "csv"]), default="text", show_default=True
)
@click.option("--out", default=None, help="Output file (default: standard output).")
@pass_ctx
def access_log_command(
    ctx: Context, tenant: str, client: str | None, fmt: str, out: str | None,
    staff: StaffContext,
) -> None:
    """Who viewed or exported which client's consent data, when and how, newest first.

    Reading the log records nothing: it names staff and client references only.  Needs
    the permission the access-log page needs.
    """
    from samtycke_plugin import access_log, errors
    from samtycke_plugin.export.common import csv_safe, csv_text, get_practice, human_time, iso

    host = ctx.host
    try:
        with hostdb.unit_of_work(host) as session:  # read only: nothing to commit
            get_practice(session, tenant)
            entries = list(access_log.all_entries(host, tenant, client=client))
    except (errors.NotFound, errors.InputError) as exc:
        raise click.ClickException(str(exc)) from None
    with click.open_file(out or "-", "w", encoding="utf-8", atomic=out not in (None, "-")) as fp:
        if fmt == "csv":
            fp.write(csv_text([csv_safe(c) for c in row] for row in access_log.csv_rows(entries)))
            return
        for e in entries:
            fp.write(
                f"{human_time(iso(e.at))}  {e.actor}  {e.action}  "
                f"{'client ' + e.client if e.client else 'whole practice'}  {e.via}"
                f"{'  ' + e.detail if e.detail else ''}\n"
            )
    click.echo(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}.", err=True)

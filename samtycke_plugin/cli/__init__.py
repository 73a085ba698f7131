"""The ``samtycke`` command line (click): the ``main`` group and its commands.

Commands that only need the database take ``--database-url`` (or
``SAMTYCKE_DATABASE_URL``).  Commands that need the host's clients (names,
e-mail addresses) also take ``--host module:factory`` (or ``SAMTYCKE_HOST``): a
callable in the host platform that returns a :class:`hookspecs.host.Host`.

Two kinds of command: *staff commands* act for a staff member on a practice's personal
data or mail its clients (``request all``, ``export client``, ``export practice``,
``access-log``); they take ``--staff REF`` and check that person's permission through
the host (:mod:`samtycke_plugin.cli.staff`).  The rest are *operator commands* that keep
the database, the ledger and the mail relay running and show no client's data.

Each area keeps its commands in its own module (``db``, ``proof``, ``mail``, ``access``) and is
registered on ``main`` below, one line each.
"""

from __future__ import annotations

import secrets

import click

from samtycke_plugin.cli import access, db, mail, proof
from samtycke_plugin.cli.context import Context


@click.group()
@click.option(
    "--database-url", envvar="SAMTYCKE_DATABASE_URL", help="SQLAlchemy URL of the database."
)
@click.option(
    "--host", "host_spec", envvar="SAMTYCKE_HOST", help="module:factory returning the host."
)
@click.option(
    "--base-url",
    envvar="SAMTYCKE_BASE_URL",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="Public base URL for links when no host is given.",
)
@click.pass_context
def main(
    ctx: click.Context, database_url: str | None, host_spec: str | None, base_url: str
) -> None:
    """Samtycke: GDPR client consent for booking platforms.

    \b
    Staff commands act for a staff member on a practice's personal data or mail its
    clients: request all, export client, export practice, access-log.  They need
    --staff REF (or SAMTYCKE_STAFF) and a --host that says who that staff member is
    (staff_member()); the member needs the permission the matching page needs.
    Operator commands show no client's data and need no staff member: verify,
    check-bundle (a bundle file already in hand), rebuild-status, checkpoint, db, outbox
    send (the mail relay), secret.
    """
    ctx.obj = Context(database_url, host_spec, base_url)


@main.command("secret")
def new_secret() -> None:
    """Print a new random secret suitable for SAMTYCKE_SECRET_KEY."""
    click.echo(secrets.token_urlsafe(48))


main.add_command(db.db_group)
main.add_command(proof.verify_command)
main.add_command(proof.check_bundle_command)
main.add_command(proof.rebuild_status)
main.add_command(proof.export_group)
main.add_command(proof.checkpoint_group)
main.add_command(mail.outbox_group)
main.add_command(mail.request_group)
main.add_command(access.access_log_command)

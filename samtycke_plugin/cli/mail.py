"""E-mail from the command line: ``outbox send`` (the relay, an operator's command) and
``request all`` (consent requests to every client of a practice, a staff command that
needs the permission to send batch requests)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from hookspecs.host import Host
from hookspecs.types import Permission, StaffContext
from samtycke_plugin.cli.context import Context, pass_ctx
from samtycke_plugin.cli.staff import StaffCommand

if TYPE_CHECKING:
    from samtycke_plugin.email.batch_preview import BatchPreview


def _mail_host(ctx: Context) -> Host:
    if not ctx.host_spec:
        raise click.UsageError(
            "This command needs the host (--host module:factory or SAMTYCKE_HOST): the "
            "practices' names, the link secret and the public address come from it."
        )
    return ctx.host


@click.group("outbox")
def outbox_group() -> None:
    """The e-mail outbox: consent requests and receipts waiting to be sent."""


@outbox_group.command("send")
@click.option("--loop", is_flag=True, help="Keep running (a service): send, wait, repeat.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds to wait between rounds with --loop.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Messages per round (the database is read in rounds of this size).",
)
@click.option("--rate", type=click.FloatRange(min=0.01), help="At most this many mails a second.")
@click.option("--tenant", help="Only this practice's mail (default: every practice).")
@pass_ctx
def outbox_send(
    ctx: Context,
    loop: bool,
    interval: float,
    limit: int,
    rate: float | None,
    tenant: str | None,
) -> None:
    """Send the e-mail that is due: once (for cron) or with --loop (as a service).

    First the batch requests recorded on the batch page ("send to all") are prepared,
    in chunks, and the renewal requests and reminders that are due are queued; then
    their mail is sent with the rest.

    Mail goes through the host's deliver_email() when it delivers, otherwise through
    the built-in SMTP transport (SAMTYCKE_SMTP_HOST, _PORT, _SECURITY, _USER,
    _PASSWORD, _FROM, _TIMEOUT, _CA_FILE).  Failed mail is retried later with
    growing delays; rejected addresses are marked on the client's badge.  Exit
    status 1 when a configuration problem stopped sending.
    """
    import time

    from samtycke_plugin import errors
    from samtycke_plugin.email import relay

    host = _mail_host(ctx)
    totals = {"sent": 0, "retried": 0, "bounced": 0, "failed": 0, "cancelled": 0}
    problems: list[str] = []
    try:
        while True:
            try:
                report = relay.send_due(host, limit=limit, rate=rate, tenant=tenant)
            except (errors.SamtyckeError, ValueError) as exc:
                raise click.ClickException(str(exc)) from None
            for key in totals:
                totals[key] += getattr(report, key)
            problems.extend(p for p in report.problems if p not in problems)
            if report.jobs:
                click.echo(f"batch requests prepared: {report.jobs}")
            if report.renewals or report.reminders:
                click.echo(f"renewal requests queued: {report.renewals}, "
                           f"reminders queued: {report.reminders}")
            if report.handled and (loop or report.handled < limit):
                click.echo(
                    f"sent {report.sent}, to retry {report.retried}, bounced {report.bounced}, "
                    f"failed {report.failed}, cancelled {report.cancelled}"
                )
            if report.handled >= limit:
                continue  # a full round: more may be due now
            if not loop:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)
    for problem in problems:
        click.echo(f"Problem: {problem}", err=True)
    if not loop:
        click.echo(
            f"Done: {totals['sent']} sent, {totals['retried']} to retry later, "
            f"{totals['bounced']} bounced, {totals['failed']} failed, "
            f"{totals['cancelled']} cancelled."
        )
    if problems:
        raise SystemExit(1)


@click.group("request")
def request_group() -> None:
    """E-mail consent requests to clients."""


@request_group.command("all", cls=StaffCommand, permission=Permission.SEND_BATCH)
@click.option("--tenant", required=True, help="The practice.")
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1, max=10_000),
    default=1000,
    show_default=True,
    help="Clients per transaction (a host with a client query queues all in one).",
)
@click.option(
    "--locale", default="en", show_default=True, help="Language of the summary (sv, en)."
)
@click.option(
    "--yes", "-y", is_flag=True, help="Send without asking for confirmation after the preview."
)
@click.option(
    "--verbose", "-v", is_flag=True, help="List every client left out, with the reason."
)
@click.option(
    "--purpose", default="care", show_default=True,
    help="The purpose to ask for (its key); clients are decided for that purpose.",
)
@pass_ctx
def request_all(
    ctx: Context, tenant: str, chunk_size: int, locale: str, yes: bool,
    verbose: bool, purpose: str, staff: StaffContext,
) -> None:
    """Ask every client of a practice who lacks valid consent to a purpose, by e-mail.

    First shows who would be asked and who is left out and why (--verbose names them),
    then asks for confirmation (--yes skips it; without a terminal and without --yes
    nothing is sent).  Safe to run again (or after an interruption): clients with a
    pending request for the current text are skipped, and clients who declined or
    withdrew their consent are left out.  The mail itself is sent by `samtycke outbox
    send`.  The requests are recorded as asked by the --staff member.
    """
    import sys

    from samtycke_plugin import consent, errors
    from samtycke_plugin.email import batch as batch_requests
    from samtycke_plugin.email.batch_preview import preview_batch
    from samtycke_plugin.i18n import t, tn

    host = _mail_host(ctx)
    try:
        preview = preview_batch(host, tenant, cap=None if verbose else 0, chunk_size=chunk_size,
                                purpose=purpose)
    except (errors.SamtyckeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    _echo_preview(preview, locale, verbose=verbose)
    if not yes and not click.confirm(
        tn(locale, "Send %(n)s request?", "Send %(n)s requests?", preview.asked), default=False,
        err=True,
    ):
        click.echo(t(locale, "Nothing was sent."))
        return
    total = preview.total
    interactive = sys.stderr.isatty()
    try:
        with click.progressbar(
            length=total,
            label=f"Asking the clients of {tenant}",
            show_pos=True,
            show_percent=True,
            file=sys.stderr,
        ) as bar:

            def progress(done: int, _total: int) -> None:
                bar.update(max(0, done - bar.pos))
                if not interactive:  # not a terminal (cron, a log): one line per chunk
                    click.echo(f"  {done}/{total} clients looked at", err=True)

            result = batch_requests.request_batch(
                host,
                tenant,
                actor=consent.staff_actor(staff),
                progress=progress,
                total=total,
                chunk_size=chunk_size,
                purpose=purpose,
            )
    except (errors.SamtyckeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        t(
            locale,
            "%(asked)s asked, %(valid)s already have valid consent, %(pending)s already "
            "have a pending request, %(refused)s declined and %(withdrawn)s withdrew their "
            "consent (not asked again), %(no_email)s have no usable e-mail address, "
            "%(bad_name)s have a name that cannot go into an e-mail (batch %(batch)s).",
            asked=result.asked, valid=result.skipped_valid, pending=result.skipped_pending,
            refused=result.skipped_refused, withdrawn=result.skipped_withdrawn,
            no_email=result.skipped_no_email, bad_name=result.skipped_bad_name,
            batch=result.batch_key,
        )
    )


def _echo_preview(preview: BatchPreview, locale: str, *, verbose: bool) -> None:
    """The preview as the batch page shows it: counts per reason, and with ``verbose``
    the clients left out."""
    from samtycke_plugin.email.batch_preview import REASON_LABELS, REASONS
    from samtycke_plugin.i18n import t

    click.echo(t(locale, "Purpose: %(purpose)s", purpose=preview.purpose))
    click.echo(t(locale, "Would be asked by e-mail: %(n)s of %(total)s clients.",
                 n=preview.asked, total=preview.total))
    for reason in REASONS:
        click.echo(f"  {t(locale, REASON_LABELS[reason.value])}: {preview.counts[reason]}")
        if verbose:
            for client in preview.left_out[reason]:
                click.echo(f"    {client.name} ({client.ref})")
    if preview.mail is not None and preview.example is not None:
        click.echo(t(locale, "Subject of the e-mail: %(subject)s", subject=preview.mail.subject))
    elif preview.mail_problem:
        click.echo(t(locale, preview.mail_problem), err=True)

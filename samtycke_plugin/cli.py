"""The ``samtycke`` command line (click).

Commands that only need the database take ``--database-url`` (or
``SAMTYCKE_DATABASE_URL``).  Commands that need the host's clients (names,
e-mail addresses) also take ``--host module:factory`` (or ``SAMTYCKE_HOST``): a
callable in the host platform that returns a :class:`hookspecs.host.Host`.
"""

from __future__ import annotations

import importlib
import os
import secrets
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, NoReturn

import click
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from hookspecs.host import Host
from hookspecs.types import (
    ClientInfo,
    ClientRef,
    DeliveryResult,
    OutgoingEmail,
    PracticeInfo,
    TenantRef,
)
from samtycke_plugin import db


class StandaloneHost:
    """A host for database-only commands: no client directory, the app's own SMTP."""

    def __init__(self, engine: Engine, base_url: str) -> None:
        self._session = Session(engine, expire_on_commit=False)
        self.base_url = base_url.rstrip("/")
        secret = os.environ.get("SAMTYCKE_SECRET_KEY")
        self._secret = secret.encode() if secret else None

    def session(self) -> Session:
        return self._session

    def now(self) -> datetime:
        return datetime.now(UTC)

    def lookup_client(self, tenant: TenantRef, client: ClientRef) -> ClientInfo | None:
        return None

    def iter_clients(self, tenant: TenantRef) -> Iterable[ClientInfo]:
        raise click.UsageError(
            "This command needs the host's client list: pass --host module:factory "
            "(or set SAMTYCKE_HOST)."
        )

    def practice_info(self, tenant: TenantRef) -> PracticeInfo | None:
        return None

    def absolute_url(self, tenant: TenantRef, path: str) -> str:
        return self.base_url + path

    def app_secret(self, app: str) -> bytes:
        if self._secret is None:
            raise click.UsageError(
                "Set SAMTYCKE_SECRET_KEY (the same secret the host uses) or pass --host."
            )
        return self._secret

    def deliver_email(self, tenant: TenantRef, message: OutgoingEmail) -> DeliveryResult | None:
        return None


class Context:
    """Lazily built engine and host for the commands."""

    def __init__(self, database_url: str | None, host_spec: str | None, base_url: str) -> None:
        self.database_url = database_url
        self.host_spec = host_spec
        self.base_url = base_url
        self._engine: Engine | None = None
        self._host: Host | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            if not self.database_url:
                raise click.UsageError(
                    "No database given: pass --database-url or set SAMTYCKE_DATABASE_URL."
                )
            self._engine = db.make_engine(self.database_url)
        return self._engine

    @property
    def host(self) -> Host:
        if self._host is None:
            if self.host_spec:
                module, _, attr = self.host_spec.partition(":")
                factory: Any = getattr(importlib.import_module(module), attr or "make_host")
                self._host = factory()
            else:
                self._host = StandaloneHost(self.engine, self.base_url)
        return self._host


pass_ctx = click.make_pass_decorator(Context)


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
    """Samtycke: GDPR client consent for booking platforms."""
    ctx.obj = Context(database_url, host_spec, base_url)


@main.group("db")
def db_group() -> None:
    """The app's tables (its own migrations and version table)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_ctx
def db_upgrade(ctx: Context, revision: str) -> None:
    """Create or upgrade the app's tables (never touches host tables)."""
    db.upgrade(ctx.engine, revision)
    click.echo(f"Samtycke tables are at revision {revision}.")


@db_group.command("downgrade")
@click.argument("revision")
@pass_ctx
def db_downgrade(ctx: Context, revision: str) -> None:
    """Downgrade the app's tables to REVISION ("base" removes them all)."""
    db.downgrade(ctx.engine, revision)
    click.echo(f"Samtycke tables are at revision {revision}.")


@main.command("secret")
def new_secret() -> None:
    """Print a new random secret suitable for SAMTYCKE_SECRET_KEY."""
    click.echo(secrets.token_urlsafe(48))


# Command groups of other areas register themselves below (one line each).


# -- proof of consent: verify, export, checkpoints (issue 5) -------------------------------


def _proof_host(ctx: Context) -> Host:
    host = ctx.host
    host.session().rollback()
    return host


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def _open_out(out: str | None, binary: bool = False) -> Any:
    """The output file (``-`` or nothing: standard output, which is never closed)."""
    if binary:
        return click.open_file(out or "-", "wb", atomic=out not in (None, "-"))
    return click.open_file(out or "-", "w", encoding="utf-8", atomic=out not in (None, "-"))


@main.command("verify")
@click.option("--tenant", help="Only this practice (default: every practice).")
@click.option("--no-evidence", is_flag=True, help="Skip checking the personal evidence.")
@pass_ctx
def verify_command(ctx: Context, tenant: str | None, no_evidence: bool) -> None:
    """Recompute the hash chain of each practice; exit status 1 on any break.

    Prints the first broken event (sequence number and what is wrong: changed,
    missing, inserted, reordered, head, evidence, text, time) of every broken practice,
    then compares the stored status of every client with a replay of the ledger and
    names the first client that differs (repair: samtycke rebuild-status).
    """
    from samtycke_plugin.chain import practices_in_ledger, verify_chain
    from samtycke_plugin.integrity import check_projection

    session = _proof_host(ctx).session()
    known = practices_in_ledger(session)
    if tenant and tenant not in known:
        session.rollback()
        _fail(f"No such practice in the Samtycke ledger: {tenant}")
    tenants = [tenant] if tenant else known
    broken = 0
    for ref in tenants:
        result = verify_chain(session, ref, check_evidence=not no_evidence)
        if result.broken is not None:
            broken += 1
            b = result.broken
            click.echo(f"BROKEN  {ref}: first broken event #{b.seq} ({b.kind}): {b.detail}")
        elif (mismatch := check_projection(session, ref)) is not None:
            broken += 1
            click.echo(
                f"BROKEN  {ref}: stored status of client {mismatch.client_ref} (status): "
                f"{mismatch.detail}. Rebuild it from the ledger with: "
                f"samtycke rebuild-status --tenant {ref}"
            )
        else:
            click.echo(
                f"OK      {ref}: {result.events} events, head #{result.head_seq} {result.head_hash}"
            )
    session.rollback()
    click.echo(f"{len(tenants)} practice(s) checked, {broken} broken.")
    if broken:
        raise SystemExit(1)


@main.command("rebuild-status")
@click.option("--tenant", required=True, help="The practice.")
@pass_ctx
def rebuild_status(ctx: Context, tenant: str) -> None:
    """Rewrite a practice's stored status of every client from its ledger.

    The repair when samtycke verify reports a stored status that differs from the
    ledger.  The chain must verify first: a status rebuilt from a broken ledger would
    only copy the break.
    """
    from samtycke_plugin.chain import practices_in_ledger, verify_chain
    from samtycke_plugin.ledger import lock_practice, rebuild_projection

    session = _proof_host(ctx).session()
    try:
        if tenant not in practices_in_ledger(session):
            _fail(f"No such practice in the Samtycke ledger: {tenant}")
        lock_practice(session, tenant)  # no booking writes a status row meanwhile
        result = verify_chain(session, tenant)
        if result.broken is not None:
            b = result.broken
            _fail(
                f"The chain of practice {tenant} is broken at event #{b.seq} ({b.kind}: "
                f"{b.detail}); the status was not rebuilt. Investigate with samtycke verify."
            )
        rows = rebuild_projection(session, tenant)
        session.commit()
    finally:
        session.rollback()
    click.echo(f"Rebuilt the stored status of {rows} client(s) of practice {tenant}.")


@main.group("export")
def export_group() -> None:
    """Export proof of consent (one practice at a time)."""


@export_group.command("client")
@click.option("--tenant", required=True, help="The practice.")
@click.option("--client", "client", required=True, help="The client reference.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv", "html", "bundle"]),
    default="json",
    show_default=True,
)
@click.option("--locale", default=None, help="Language of the HTML page (sv, en).")
@click.option("--out", default=None, help="Output file (default: standard output).")
@pass_ctx
def export_client(
    ctx: Context, tenant: str, client: str, fmt: str, locale: str | None, out: str | None
) -> None:
    """One client's consent history (JSON, CSV, printable HTML) or the proof bundle (ZIP)."""
    from samtycke_plugin import errors, export

    host = _proof_host(ctx)
    try:
        if fmt == "bundle":
            if out is None:
                _fail("A proof bundle is a ZIP file: give --out FILE.zip")
            data = export.proof_bundle(host, tenant, client, locale=locale)
            with _open_out(out, binary=True) as fp:
                fp.write(data)
            click.echo(f"Proof bundle written to {out} ({len(data)} bytes).", err=True)
            return
        if fmt == "json":
            text = export.client_history_json(host, tenant, client, locale=locale)
        elif fmt == "csv":
            text = export.client_history_csv(host, tenant, client)
        else:
            text = export.client_history_html(host, tenant, client, locale=locale)
    except (errors.NotFound, errors.InputError) as exc:
        _fail(str(exc))
    finally:
        host.session().rollback()
    with _open_out(out) as fp:
        fp.write(text)


@export_group.command("practice")
@click.option("--tenant", required=True, help="The practice.")
@click.option("--locale", default=None, help="Language of the status labels (sv, en).")
@click.option("--out", default=None, help="Output file (default: standard output).")
@pass_ctx
def export_practice(ctx: Context, tenant: str, locale: str | None, out: str | None) -> None:
    """Status list of every client of a practice (CSV, streamed in bounded memory).

    With --host, every client the host lists (with name and e-mail); without, every
    client the app holds a status for.
    """
    from samtycke_plugin import errors, export

    host = _proof_host(ctx)
    from_host = ctx.host_spec is not None
    try:
        total = None if from_host else export.practice_status_count(host, tenant)
        rows = 0

        def unknown_length() -> Iterator[int]:
            yield from ()

        bar_source = click.progressbar(
            unknown_length() if total is None else None,
            length=total,
            file=sys.stderr,
            label="Exporting clients",
            show_pos=True,
        )
        with _open_out(out) as fp, bar_source as bar:

            def step(n: int) -> None:
                nonlocal rows
                rows += n
                bar.update(n)

            for chunk in export.practice_status_csv(
                host, tenant, locale=locale, from_host=from_host, progress=step
            ):
                fp.write(chunk)
    except (errors.NotFound, errors.InputError) as exc:
        _fail(str(exc))
    finally:
        host.session().rollback()
    click.echo(f"{rows} client(s) exported.", err=True)


@main.group("checkpoint")
def checkpoint_group() -> None:
    """Signed checkpoints of the chain head (Ed25519), to keep outside the database."""


@checkpoint_group.command("keygen")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the new private key (PEM); never overwritten.",
)
def checkpoint_keygen(out: str) -> None:
    """Create a new signing key; prints its key id and public key."""
    from pathlib import Path

    from samtycke_plugin import checkpoint

    key = checkpoint.generate_key()
    try:
        checkpoint.write_private_key(key, Path(out))
    except FileExistsError:
        _fail(f"{out} already exists; choose another file (keys are never overwritten).")
    click.echo(f"Private key written to {out} (key id {key.key_id}).", err=True)
    click.echo(
        f"Set {checkpoint.KEY_FILE_ENV}={out}; keep this public key with your records:", err=True
    )
    click.echo(checkpoint.public_pem(key.public).decode(), nl=False)


@checkpoint_group.command("create")
@click.option("--tenant", help="The practice (default: every practice).")
@click.option("--out", default=None, help="Output file for the JSON (default: standard output).")
@pass_ctx
def checkpoint_create(ctx: Context, tenant: str | None, out: str | None) -> None:
    """Verify the chain and sign its head; prints the checkpoint JSON to keep safe."""
    import json

    from samtycke_plugin import checkpoint, errors
    from samtycke_plugin.chain import practices_in_ledger

    try:
        key = checkpoint.load_signing_key()
    except checkpoint.CheckpointKeyError as exc:
        _fail(str(exc))
    host = _proof_host(ctx)
    session = host.session()
    tenants = [tenant] if tenant else practices_in_ledger(session)
    session.rollback()
    try:
        # one unit of work, rerun whole (bounded) if the database is busy
        docs = db.run_in_transaction(
            host.session,
            lambda s: [checkpoint.create(s, ref, key, host.now()) for ref in tenants],
        )
    except (checkpoint.ChainBroken, errors.NotFound, errors.Unavailable) as exc:
        _fail(str(exc))
    payload = docs[0] if tenant else docs
    with _open_out(out) as fp:
        fp.write(json.dumps(payload, indent=2) + "\n")
    click.echo(f"{len(docs)} checkpoint(s) signed with key {key.key_id}.", err=True)


@checkpoint_group.command("check")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--tenant", help="Only this practice.")
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A trusted public key (PEM); may be repeated (e.g. retired keys).",
)
@pass_ctx
def checkpoint_check(
    ctx: Context, files: tuple[str, ...], tenant: str | None, public_keys: tuple[str, ...]
) -> None:
    """Check checkpoints against the database; exit status 1 if any fails.

    FILES are checkpoint JSON files kept outside the database (one checkpoint or a
    list).  Without FILES, the checkpoints stored in the database are checked.
    """
    import json

    from samtycke_plugin import checkpoint, errors
    from samtycke_plugin.chain import practices_in_ledger

    try:
        keys = checkpoint.trusted_keys(public_keys)
    except checkpoint.CheckpointKeyError as exc:
        _fail(str(exc))
    if not keys:
        _fail(
            "No trusted public key: pass --public-key FILE or set "
            f"{checkpoint.KEY_FILE_ENV} / {checkpoint.TRUSTED_ENV}."
        )
    session = _proof_host(ctx).session()
    results: list[checkpoint.CheckResult] = []
    try:
        if files:
            for name in files:
                with open(name, encoding="utf-8") as fp:
                    loaded = json.load(fp)
                for doc in loaded if isinstance(loaded, list) else [loaded]:
                    if tenant and isinstance(doc, dict) and doc.get("tenant") != tenant:
                        continue
                    results.append(checkpoint.check(session, doc, keys))
        else:
            for ref in [tenant] if tenant else practices_in_ledger(session):
                results.extend(checkpoint.check_stored(session, ref, keys))
    except (errors.InputError, ValueError) as exc:
        _fail(f"Not a checkpoint file: {exc}")
    finally:
        session.rollback()
    failed = 0
    for r in results:
        if r.ok:
            click.echo(f"OK      {r.tenant}: checkpoint #{r.seq} ({r.key_id}) holds")
        else:
            failed += 1
            click.echo(
                f"FAILED  {r.tenant}: checkpoint #{r.seq} ({r.key_id}): {r.problem}: {r.detail}"
            )
    click.echo(f"{len(results)} checkpoint(s) checked, {failed} failed.")
    if failed or not results:
        raise SystemExit(1)


# -- e-mail: the outbox relay and batch requests (issue 3) ---------------------------------


def _mail_host(ctx: Context) -> Host:
    if not ctx.host_spec:
        raise click.UsageError(
            "This command needs the host (--host module:factory or SAMTYCKE_HOST): the "
            "practices' names, the link secret and the public address come from it."
        )
    return ctx.host


@main.group("outbox")
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


@main.group("request")
def request_group() -> None:
    """E-mail consent requests to clients."""


@request_group.command("all")
@click.option("--tenant", required=True, help="The practice.")
@click.option("--actor", default="cli", show_default=True, help="Recorded as who asked.")
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
@pass_ctx
def request_all(ctx: Context, tenant: str, actor: str, chunk_size: int, locale: str) -> None:
    """Ask every client of a practice who lacks valid consent, by e-mail (F7).

    Safe to run again (or after an interruption): clients with a pending request for
    the current text are skipped, and clients who declined or withdrew their consent
    are left out.  The mail itself is sent by `samtycke outbox send`.
    """
    import sys

    from samtycke_plugin import errors
    from samtycke_plugin.email import batch as batch_requests
    from samtycke_plugin.i18n import t

    host = _mail_host(ctx)
    total = batch_requests.count_clients(host, tenant)
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
                actor=f"cli:{actor}",
                progress=progress,
                total=total,
                chunk_size=chunk_size,
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

"""Proof of consent from the command line: ``verify``, ``check-bundle``,
``rebuild-status``, ``export`` and ``checkpoint`` (keygen, create, check).

``export client`` and ``export practice`` hand out clients' personal data: they are
staff commands (:mod:`samtycke_plugin.cli.staff`) that need the permission to export.
The others are the operator's: they check or repair the ledger (or a bundle) and show
no client's data.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import click

from hookspecs.host import Host
from hookspecs.types import Permission, StaffContext
from samtycke_plugin import db, hostdb
from samtycke_plugin.cli.context import Context, StandaloneHost, pass_ctx
from samtycke_plugin.cli.staff import StaffCommand

if TYPE_CHECKING:
    from samtycke_plugin.export.download import Kind


def _proof_host(ctx: Context) -> Host:
    return ctx.host


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def _open_out(out: str | None, binary: bool = False) -> Any:
    """The output file (``-`` or nothing: standard output, which is never closed)."""
    if binary:
        return click.open_file(out or "-", "wb", atomic=out not in (None, "-"))
    return click.open_file(out or "-", "w", encoding="utf-8", atomic=out not in (None, "-"))


@click.command("verify")
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

    with hostdb.unit_of_work(_proof_host(ctx)) as session:  # read only: nothing to commit
        known = practices_in_ledger(session)
        if tenant and tenant not in known:
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
                    f"OK      {ref}: {result.events} events, "
                    f"head #{result.head_seq} {result.head_hash}"
                )
    click.echo(f"{len(tenants)} practice(s) checked, {broken} broken.")
    if broken:
        raise SystemExit(1)


@click.command("check-bundle")
@click.argument("bundle", type=click.File("rb"))
def check_bundle_command(bundle: Any) -> None:
    """Check a proof bundle (ZIP) on its own, without the database; exit status 1 on any
    problem: every file against MANIFEST.sha256, each event's hash recomputed from
    history.json, and each attached scan against the SHA-256 its event recorded."""
    from samtycke_plugin.export.bundle_check import check_bundle

    problems = check_bundle(bundle.read())
    for problem in problems:
        click.echo(f"BROKEN  {problem}")
    if problems:
        raise SystemExit(1)
    click.echo("OK      the bundle's files, event hashes and attached scans check.")


@click.command("rebuild-status")
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

    with hostdb.unit_of_work(_proof_host(ctx)) as session:
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
    click.echo(f"Rebuilt the stored status of {rows} client(s) of practice {tenant}.")


#: ``--format`` of ``export client`` as the kind of download (``bundle``: the ZIP).
_KINDS: dict[str, Kind] = {"json": "json", "csv": "csv", "html": "html", "bundle": "zip"}


@click.group("export")
def export_group() -> None:
    """Export proof of consent (one practice at a time)."""


@export_group.command("client", cls=StaffCommand, permission=Permission.EXPORT)
@click.option("--tenant", required=True, help="The practice.")
@click.option("--client", "client", required=True, help="The client reference.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(_KINDS)),
    default="json",
    show_default=True,
)
@click.option("--locale", default=None, help="Language of the HTML page (sv, en).")
@click.option("--out", default=None, help="Output file (default: standard output).")
@pass_ctx
def export_client(
    ctx: Context, tenant: str, client: str, fmt: str, locale: str | None, out: str | None,
    staff: StaffContext,
) -> None:
    """One client's consent history (JSON, CSV, printable HTML) or the proof bundle (ZIP).

    Recorded in the practice's access log as done by the --staff member.
    """
    from samtycke_plugin import errors, export
    from samtycke_plugin.access_log import Viewer

    if fmt == "bundle" and out is None:
        _fail("A proof bundle is a ZIP file: give --out FILE.zip")
    host = _proof_host(ctx)
    by = Viewer.staff(staff, via="cli")
    try:
        with hostdb.unit_of_work(host):
            download = export.client_download(
                host, tenant, client, _KINDS[fmt], by=by, locale=locale)
    except (errors.NotFound, errors.InputError) as exc:
        _fail(str(exc))
    if isinstance(download.body, bytes):
        with _open_out(out, binary=True) as fp:
            fp.write(download.body)
        click.echo(f"Proof bundle written to {out} ({len(download.body)} bytes).", err=True)
        return
    with _open_out(out) as fp:
        fp.write(download.body)


@export_group.command("practice", cls=StaffCommand, permission=Permission.EXPORT)
@click.option("--tenant", required=True, help="The practice.")
@click.option("--locale", default=None, help="Language of the status labels (sv, en).")
@click.option("--out", default=None, help="Output file (default: standard output).")
@pass_ctx
def export_practice(
    ctx: Context, tenant: str, locale: str | None, out: str | None, staff: StaffContext
) -> None:
    """Status list of every client of a practice (CSV, streamed in bounded memory).

    Every client the host lists (with name and e-mail); from a host that lists no
    clients, every client the app holds a status for (references only).  Recorded in
    the practice's access log as done by the --staff member.
    """
    from samtycke_plugin import errors, export
    from samtycke_plugin.access_log import Viewer

    host = _proof_host(ctx)
    by = Viewer.staff(staff, via="cli")
    from_host = not isinstance(host, StandaloneHost)  # one that lists clients
    try:
        with hostdb.unit_of_work(host):
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
                    host, tenant, by=by, locale=locale, from_host=from_host, progress=step
                ):
                    fp.write(chunk)
    except (errors.NotFound, errors.InputError) as exc:
        _fail(str(exc))
    click.echo(f"{rows} client(s) exported.", err=True)


@click.group("checkpoint")
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

    from samtycke_plugin import checkpoint_keys

    key = checkpoint_keys.generate_key()
    try:
        checkpoint_keys.write_private_key(key, Path(out))
    except FileExistsError:
        _fail(f"{out} already exists; choose another file (keys are never overwritten).")
    click.echo(f"Private key written to {out} (key id {key.key_id}).", err=True)
    click.echo(
        f"Set {checkpoint_keys.KEY_FILE_ENV}={out}; keep this public key with your records:",
        err=True,
    )
    click.echo(checkpoint_keys.public_pem(key.public).decode(), nl=False)


@checkpoint_group.command("create")
@click.option("--tenant", help="The practice (default: every practice).")
@click.option("--out", default=None, help="Output file for the JSON (default: standard output).")
@pass_ctx
def checkpoint_create(ctx: Context, tenant: str | None, out: str | None) -> None:
    """Verify the chain and sign its head; prints the checkpoint JSON to keep safe."""
    import json

    from samtycke_plugin import checkpoint, checkpoint_keys, errors
    from samtycke_plugin.chain import practices_in_ledger

    try:
        key = checkpoint_keys.load_signing_key()
    except checkpoint_keys.CheckpointKeyError as exc:
        _fail(str(exc))
    host = _proof_host(ctx)
    with hostdb.unit_of_work(host) as session:
        tenants = [tenant] if tenant else practices_in_ledger(session)
    try:
        # one unit of work, rerun whole (bounded) if the database is busy
        docs = db.run_in_transaction(
            host,
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

    from samtycke_plugin import checkpoint, checkpoint_keys, errors
    from samtycke_plugin.chain import practices_in_ledger

    try:
        keys = checkpoint_keys.trusted_keys(public_keys)
    except checkpoint_keys.CheckpointKeyError as exc:
        _fail(str(exc))
    if not keys:
        _fail(
            "No trusted public key: pass --public-key FILE or set "
            f"{checkpoint_keys.KEY_FILE_ENV} / {checkpoint_keys.TRUSTED_ENV}."
        )
    results: list[checkpoint.CheckResult] = []
    try:
        with hostdb.unit_of_work(_proof_host(ctx)) as session:
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


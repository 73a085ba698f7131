"""Verification beyond the hash chain: a forged consent text, a stored status that no
longer matches the ledger, and an event backdated after a checkpoint are each caught
by ``samtycke verify`` or the checkpoint check, with the first broken item named; the
proof bundle says so; ``samtycke rebuild-status`` restores the status.  Each test runs
on its own fresh database (SQLite file and PostgreSQL): it switches off the database's
protections the way a database superuser could.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hostkit import TestHost, staff
from proof_support import (  # noqa: F401 - fixtures
    fhost_fixture,
    fresh_fixture,
    new_practice,
    recompute_chain,
    tampering,
)
from sqlalchemy import Connection, Engine, delete, insert, select, update

from samtycke_plugin import (
    checkpoint,
    checkpoint_keys,
    consent,
    export,
    ledger,
    practice_texts,
)
from samtycke_plugin.access_log import Viewer
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.cli import main
from samtycke_plugin.integrity import CLOCK_TOLERANCE, check_projection
from samtycke_plugin.ledger import NewEvent, append, projection, replay
from samtycke_plugin.models import ConsentEvent, ConsentStateRow, Practice, TextVersion
from samtycke_plugin.rules import State
from samtycke_plugin.text import render_html, sha256

#: Who reads in these tests (each export records an access-log row).
READER = Viewer(actor="cli:tests", via="cli")


T = ConsentEvent.__table__
TV = TextVersion.__table__
S = ConsentStateRow.__table__
TEXT_TABLE = "samtycke_text_version"
HONEST = "Vi säljer aldrig dina uppgifter."
FORGED = "Vi säljer dina uppgifter till annonsörer."


def _url(host: TestHost) -> str:
    return host.engine.url.render_as_string(hide_password=False)


def _cli(host: TestHost, *args: str) -> Any:
    host.session().rollback()
    return CliRunner().invoke(main, ["--database-url", _url(host), *args])


@contextmanager
def tampering_texts(engine: Engine) -> Iterator[Connection]:
    """A transaction in which the text table's append-only triggers do not apply."""
    if engine.dialect.name != "sqlite":
        with tampering(engine) as conn:
            yield conn
        return
    with engine.connect() as conn:
        triggers = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
            (TEXT_TABLE,),
        ).all()
        assert len(triggers) == 2
        conn.commit()
        try:
            with conn.begin():
                for name, _ in triggers:
                    conn.exec_driver_sql(f"DROP TRIGGER {name}")
                yield conn
        finally:
            with conn.begin():
                for _, sql in triggers:
                    conn.exec_driver_sql(sql)


def _history(host: TestHost) -> tuple[str, str, int]:
    """A practice whose client gave consent on text 1.0 (sv), then again on 2.0 (sv);
    returns the practice, the client and the id of text 2.0 (sv)."""
    tenant = new_practice(host)
    client = host.new_client(tenant)
    consent.record_manual(host, tenant, client, staff(), method="paper",
                          given_at=host.now() - timedelta(hours=2), note=None)
    host.session().commit()
    host.advance(days=1)
    (v2,) = practice_texts.publish_text(
        host, tenant, bodies={"sv": f"# Samtycke\n\n{HONEST}\n"}, kind="content",
        reason="ny behandling", actor="staff:s1", expected_major=1,
    )
    host.session().commit()
    host.advance(days=1)
    consent.record_manual(host, tenant, client, staff(), method="verbal",
                          given_at=host.now() - timedelta(hours=1), note=None, language="sv")
    host.session().commit()
    host.advance(hours=1)
    return tenant, client, int(v2.id)


def _broken(host: TestHost, tenant: str) -> tuple[int, str, str]:
    host.session().rollback()
    result = verify_chain(host.session(), tenant)
    host.session().rollback()
    assert result.broken is not None, "the tampering was not detected"
    return result.broken.seq, result.broken.kind, result.broken.detail


def _bundle_verification(host: TestHost, tenant: str, client: str) -> dict[str, Any]:
    data = export.proof_bundle(host, tenant, client, by=READER, locale="sv")
    host.session().rollback()
    zf = zipfile.ZipFile(io.BytesIO(data))
    verification: dict[str, Any] = json.loads(zf.read("verification.json"))
    assert "VARNING" in zf.read("README.txt").decode()
    return verification


def test_a_forged_text_is_named_by_verify_the_checkpoint_and_the_bundle(
    fhost: TestHost,
) -> None:
    tenant, client, v2 = _history(fhost)
    key = checkpoint_keys.generate_key()
    doc = checkpoint.create(fhost.session(), tenant, key, fhost.now())
    fhost.session().commit()
    assert _cli(fhost, "verify", "--tenant", tenant).exit_code == 0
    honest = dict(fhost.session().execute(select(TV).where(TV.c.id == v2)).mappings().one())
    fhost.session().rollback()
    forged = honest["body"].replace(HONEST, FORGED)
    assert forged != honest["body"]
    label = f"text 2.0 (sv, id {v2})"

    # body and HTML changed, the stored hash left alone
    with tampering_texts(fhost.engine) as conn:
        conn.execute(update(TV).where(TV.c.id == v2).values(
            body=forged, html=render_html(forged)))
    out = _cli(fhost, "verify", "--tenant", tenant)
    assert out.exit_code == 1 and f"#2 (text): the body of {label}" in out.output, out.output
    assert _broken(fhost, tenant)[:2] == (2, "text")
    result = checkpoint.check(fhost.session(), doc, {key.key_id: key.public})
    fhost.session().rollback()
    assert result.problem == "chain_broken" and label in result.detail
    verification = _bundle_verification(fhost, tenant, client)
    assert verification["chain"]["ok"] is False
    assert verification["chain"]["broken"]["kind"] == "text"
    assert verification["chain"]["broken"]["seq"] == 2
    assert label in verification["chain"]["broken"]["detail"]

    # the stored hash recomputed too: the event's own record of the hash still differs
    with tampering_texts(fhost.engine) as conn:
        conn.execute(update(TV).where(TV.c.id == v2).values(sha256=sha256(forged)))
    seq, kind, detail = _broken(fhost, tenant)
    assert (seq, kind) == (2, "text")
    assert f"{label} no longer has the SHA-256 event #2 recorded" in detail

    # only the HTML shown changed
    with tampering_texts(fhost.engine) as conn:
        conn.execute(update(TV).where(TV.c.id == v2).values(
            body=honest["body"], sha256=honest["sha256"], html=render_html(forged)))
    seq, kind, detail = _broken(fhost, tenant)
    assert (seq, kind) == (2, "text") and f"the HTML shown for {label}" in detail

    # put back: whole again
    with tampering_texts(fhost.engine) as conn:
        conn.execute(update(TV).where(TV.c.id == v2).values(html=honest["html"]))
    fhost.session().rollback()
    assert verify_chain(fhost.session(), tenant).ok
    fhost.session().rollback()

    # a text no event points at (the English 1.0) is re-hashed too
    en = fhost.session().scalar(select(TV.c.id).where(
        TV.c.tenant_ref == tenant, TV.c.language == "en"))
    fhost.session().rollback()
    with tampering_texts(fhost.engine) as conn:
        conn.execute(update(TV).where(TV.c.id == en).values(body=FORGED + "\n"))
    seq, kind, detail = _broken(fhost, tenant)
    assert (seq, kind) == (0, "text") and f"text 1.0 (en, id {en})" in detail


def _refused_client(host: TestHost, tenant: str) -> str:
    text = host.session().execute(
        select(TV).where(TV.c.tenant_ref == tenant, TV.c.language == "sv")
    ).mappings().first()
    assert text is not None
    client = host.new_client(tenant, name="Ref Usad")
    append(host.session(), [NewEvent(
        tenant_ref=tenant, client_ref=client, state=State.REFUSED, channel="online_booking",
        method="checkbox", actor="client", occurred_at=host.now(),
        text_version_id=text["id"], text_major=text["major"], text_sha256=text["sha256"],
        language="sv",
    )])
    host.session().commit()
    return client


def test_a_changed_status_row_is_named_by_verify_and_rebuilt(
    fhost: TestHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chunks of one client: the rebuilt rows are written while the replay streams (a
    # server-side cursor on PostgreSQL)
    monkeypatch.setattr(ledger, "_IN_CHUNK", 1)
    tenant, given, _ = _history(fhost)
    refused = _refused_client(fhost, tenant)
    assert _cli(fhost, "verify", "--tenant", tenant).exit_code == 0
    row = dict(fhost.session().execute(
        select(S).where(S.c.tenant_ref == tenant, S.c.client_ref == refused)
    ).mappings().one())
    fhost.session().rollback()
    assert row["state"] == "refused"

    with fhost.engine.begin() as conn:  # refused → given, as the review did
        conn.execute(update(S).where(S.c.tenant_ref == tenant, S.c.client_ref == refused)
                     .values(state="given", expires_at=fhost.now() + timedelta(days=300)))
    out = _cli(fhost, "verify", "--tenant", tenant)
    assert out.exit_code == 1, out.output
    assert f"stored status of client {refused} (status)" in out.output
    assert "samtycke rebuild-status" in out.output
    found = check_projection(fhost.session(), tenant)
    fhost.session().rollback()
    assert found is not None and found.client_ref == refused
    assert "state" in found.detail and "expiry" in found.detail
    # the client's export shows what the ledger says, and says the stored status differs
    history = export.client_history(fhost, tenant, refused, by=READER, locale="sv")
    assert history["status"]["code"] == "refused" and history["status"]["stored_differs"]
    bundle = zipfile.ZipFile(io.BytesIO(export.proof_bundle(fhost, tenant, refused, by=READER)))
    fhost.session().rollback()
    verification = json.loads(bundle.read("verification.json"))
    assert verification["status"]["ok"] is False and refused in verification["status"]["detail"]
    assert "den status som är sparad" in bundle.read("README.txt").decode()

    rebuilt = _cli(fhost, "rebuild-status", "--tenant", tenant)
    assert rebuilt.exit_code == 0 and "2 client(s)" in rebuilt.output, rebuilt.output
    assert _cli(fhost, "verify", "--tenant", tenant).exit_code == 0
    session = fhost.session()
    assert check_projection(session, tenant) is None
    assert projection(session, tenant) == replay(session, tenant)
    assert session.scalar(select(S.c.state).where(
        S.c.tenant_ref == tenant, S.c.client_ref == refused)) == "refused"
    assert session.scalar(select(S.c.last_seq).where(
        S.c.tenant_ref == tenant, S.c.client_ref == refused)) == row["last_seq"]
    session.rollback()

    # a row pointed at another event, a row removed, a row for a client with no events
    with fhost.engine.begin() as conn:
        conn.execute(update(S).where(S.c.tenant_ref == tenant, S.c.client_ref == given)
                     .values(last_seq=1))
    found = check_projection(fhost.session(), tenant)
    fhost.session().rollback()
    assert found is not None and found.client_ref == given and "last event" in found.detail
    assert _cli(fhost, "rebuild-status", "--tenant", tenant).exit_code == 0
    with fhost.engine.begin() as conn:
        conn.execute(delete(S).where(S.c.tenant_ref == tenant, S.c.client_ref == refused))
    found = check_projection(fhost.session(), tenant)
    fhost.session().rollback()
    assert found is not None and found.client_ref == refused and "no stored status" in (
        found.detail)
    assert _cli(fhost, "rebuild-status", "--tenant", tenant).exit_code == 0
    with fhost.engine.begin() as conn:
        conn.execute(insert(S).values(
            tenant_ref=tenant, client_ref="c-ghost", state="given", text_major=2,
            expires_at=None, since=fhost.now(), last_seq=1, delivery=None))
    found = check_projection(fhost.session(), tenant)
    fhost.session().rollback()
    assert found is not None and found.client_ref == "c-ghost" and "no event" in found.detail
    assert _cli(fhost, "rebuild-status", "--tenant", tenant).exit_code == 0
    assert _cli(fhost, "verify", "--tenant", tenant).exit_code == 0


def _forge_event(host: TestHost, tenant: str, occurred_at: Any) -> int:
    """Append an event behind the app's back and recompute every hash and the head."""
    head = host.session().scalar(select(Practice.head_seq).where(Practice.tenant_ref == tenant))
    last = dict(host.session().execute(
        select(T).where(T.c.tenant_ref == tenant, T.c.seq == head)).mappings().one())
    host.session().rollback()
    seq = int(head) + 1
    forged = {k: v for k, v in last.items() if k != "id"}
    forged.update(seq=seq, client_ref="c-forged", state="given", evidence_sha256=None,
                  occurred_at=occurred_at, given_at=occurred_at, booking_ref=None,
                  request_id=None, expires_at=occurred_at + timedelta(days=365))
    with tampering(host.engine) as conn:
        conn.execute(insert(T).values(forged))
        recompute_chain(conn, tenant)
    return seq


def test_a_backdated_event_after_a_checkpoint_is_refused(
    fhost: TestHost, tmp_path: Path
) -> None:
    tenant, _, _ = _history(fhost)
    key = checkpoint_keys.generate_key()
    keys = {key.key_id: key.public}
    fhost.advance(days=30)  # the checkpoint is signed well after the last event
    doc = checkpoint.create(fhost.session(), tenant, key, fhost.now())
    fhost.session().commit()
    signed_at = fhost.now()
    last_event = fhost.session().scalar(
        select(T.c.occurred_at).where(T.c.tenant_ref == tenant).order_by(T.c.seq.desc()))
    fhost.session().rollback()
    assert last_event is not None

    # dated after the last event (time does not run backwards) but before the signature
    seq = _forge_event(fhost, tenant, signed_at - timedelta(days=10))
    assert last_event < signed_at - timedelta(days=10)
    fhost.session().rollback()
    assert verify_chain(fhost.session(), tenant).ok  # the chain alone cannot tell
    result = checkpoint.check(fhost.session(), doc, keys)
    fhost.session().rollback()
    assert result.problem == "backdated" and f"event #{seq} comes after" in result.detail
    pem = tmp_path / "trusted.pem"
    pem.write_bytes(checkpoint_keys.public_pem(key.public))
    out = _cli(fhost, "checkpoint", "check", "--tenant", tenant, "--public-key", str(pem))
    assert out.exit_code == 1 and "backdated" in out.output, out.output

    # within the clock tolerance of the signature: accepted
    with tampering(fhost.engine) as conn:
        conn.execute(update(T).where(T.c.tenant_ref == tenant, T.c.seq == seq).values(
            occurred_at=signed_at - CLOCK_TOLERANCE + timedelta(seconds=1)))
        recompute_chain(conn, tenant)
    assert checkpoint.check(fhost.session(), doc, keys).ok
    fhost.session().rollback()


def test_time_never_runs_backwards_along_the_chain(fhost: TestHost) -> None:
    tenant, _, _ = _history(fhost)
    key = checkpoint_keys.generate_key()
    doc = checkpoint.create(fhost.session(), tenant, key, fhost.now())
    fhost.session().commit()
    seq = _forge_event(fhost, tenant, fhost.now() - timedelta(days=60))
    out = _cli(fhost, "verify", "--tenant", tenant)
    assert out.exit_code == 1 and f"#{seq} (time): event #{seq} (client c-forged)" in (
        out.output), out.output
    result = checkpoint.check(fhost.session(), doc, {key.key_id: key.public})
    fhost.session().rollback()
    assert result.problem == "backdated" and f"event #{seq}" in result.detail
    # a few minutes out of order (two servers, two writers): within the tolerance
    with tampering(fhost.engine) as conn:
        conn.execute(update(T).where(T.c.tenant_ref == tenant, T.c.seq == seq).values(
            occurred_at=fhost.now() - CLOCK_TOLERANCE + timedelta(seconds=1)))
        recompute_chain(conn, tenant)
    fhost.session().rollback()
    assert verify_chain(fhost.session(), tenant).ok  # (its status row is missing: see above)
    fhost.session().rollback()
    # a manual record keeps the client's own date in given_at: occurred_at is "now"
    client = fhost.new_client(tenant)
    consent.record_manual(fhost, tenant, client, staff(), method="paper",
                          given_at=fhost.now() - timedelta(days=3000), note=None)
    fhost.session().commit()
    assert verify_chain(fhost.session(), tenant).ok
    fhost.session().rollback()

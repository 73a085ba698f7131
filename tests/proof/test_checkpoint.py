"""Signed checkpoints (F17): Ed25519 over a practice's chain head, exported as JSON and
checked later against trusted public keys; keys from a file or the environment;
rotation keeps old checkpoints checkable; the CLI round trip."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from hostkit import TestHost
from proof_support import (  # noqa: F401 - fixtures
    every_kind_history,
    fhost_fixture,
    fresh_fixture,
    new_practice,
    recompute_chain,
    tampering,
)
from sqlalchemy import update

from samtycke_plugin import checkpoint, checkpoint_keys
from samtycke_plugin.cli import main
from samtycke_plugin.errors import InputError, NotFound
from samtycke_plugin.models import Checkpoint, ConsentEvent
from samtycke_plugin.rules import State

T = ConsentEvent.__table__


def _url(host: TestHost) -> str:
    return host.engine.url.render_as_string(hide_password=False)


def test_create_export_and_check(host: TestHost) -> None:
    key = checkpoint_keys.generate_key()
    keys = {key.key_id: key.public}
    tenant = new_practice(host)
    every_kind_history(host, tenant)
    doc = checkpoint.create(host.session(), tenant, key, host.now())
    host.session().commit()
    assert doc["format"] == "samtycke-checkpoint/1"
    assert doc["tenant"] == tenant and doc["seq"] == len(State) + 1
    assert doc["key_id"] == key.key_id and len(doc["key_id"]) == 16
    assert doc["algorithm"] == "Ed25519"
    # Stored too, and signing the same head again is idempotent.
    again = checkpoint.create(host.session(), tenant, key, host.now())
    host.session().commit()
    assert again == doc
    assert checkpoint.latest(host.session(), tenant) == {
        k: v for k, v in doc.items() if k != "public_key"
    }
    # A round trip through JSON text, as kept outside the database.
    kept = json.loads(json.dumps(doc))
    result = checkpoint.check(host.session(), kept, keys)
    host.session().rollback()
    assert result.ok and result.problem is None and result.chain is not None
    assert [r.ok for r in checkpoint.check_stored(host.session(), tenant, keys)] == [True]
    host.session().rollback()


def test_forged_untrusted_and_foreign_checkpoints_fail(host: TestHost) -> None:
    key = checkpoint_keys.generate_key()
    keys = {key.key_id: key.public}
    tenant = new_practice(host)
    every_kind_history(host, tenant)
    doc = checkpoint.create(host.session(), tenant, key, host.now())
    host.session().commit()
    session = host.session()

    assert checkpoint.check(session, {**doc, "seq": doc["seq"] - 1}, keys).problem == (
        "bad_signature"
    )
    assert checkpoint.check(session, {**doc, "head_hash": "a" * 64}, keys).problem == (
        "bad_signature"
    )
    # A forger signing with their own key (and shipping its public key) is not trusted.
    mallory = checkpoint_keys.generate_key()
    forged = checkpoint.create(session, tenant, mallory, host.now())
    session.rollback()
    assert checkpoint.check(session, forged, keys).problem == "untrusted_key"
    assert checkpoint.check(session, doc, keys, tenant="t-other").problem == "wrong_practice"
    for bad in ({}, {**doc, "format": "x"}, {**doc, "seq": -1}, {**doc, "head_hash": "XYZ"},
                {**doc, "created_at": "yesterday"}, {**doc, "algorithm": "RSA"}):
        with pytest.raises(InputError):
            checkpoint.check(session, bad, keys)
    session.rollback()


def test_truncated_ledger_and_refusal_to_sign_a_broken_chain(fhost: TestHost) -> None:
    host, engine = fhost, fhost.engine
    key = checkpoint_keys.generate_key()
    keys = {key.key_id: key.public}
    tenant = new_practice(host)
    events = every_kind_history(host, tenant)
    doc = checkpoint.create(host.session(), tenant, key, host.now())
    host.session().commit()
    with tampering(engine) as conn:  # the newest events removed, head moved back
        conn.execute(T.delete().where(T.c.tenant_ref == tenant, T.c.seq >= doc["seq"] - 1))
        recompute_chain(conn, tenant)
    result = checkpoint.check(host.session(), doc, keys)
    host.session().rollback()
    assert result.problem == "missing" and f"#{doc['seq']}" in result.detail

    other = new_practice(host)
    hist = every_kind_history(host, other)
    with tampering(engine) as conn:
        conn.execute(update(T).where(T.c.id == hist[State.GIVEN].id).values(actor="x"))
    with pytest.raises(checkpoint.ChainBroken, match=f"#{hist[State.GIVEN].seq}"):
        checkpoint.create(host.session(), other, key, host.now())
    host.session().rollback()
    with pytest.raises(NotFound):
        checkpoint.create(host.session(), "t-never", key, host.now())
    host.session().rollback()
    assert events


def test_key_from_file_or_environment_and_rotation(host: TestHost, tmp_path: Path) -> None:
    old = checkpoint_keys.generate_key()
    old_path = tmp_path / "old.pem"
    checkpoint_keys.write_private_key(old, old_path)
    assert stat.S_IMODE(os.stat(old_path).st_mode) == 0o600
    with pytest.raises(FileExistsError):
        checkpoint_keys.write_private_key(old, old_path)
    assert checkpoint_keys.load_signing_key({checkpoint_keys.KEY_FILE_ENV: str(old_path)}).key_id == (
        old.key_id
    )
    pem_text = old_path.read_text()
    assert checkpoint_keys.load_signing_key({checkpoint_keys.KEY_ENV: pem_text}).key_id == old.key_id
    with pytest.raises(checkpoint_keys.CheckpointKeyError, match="keygen"):
        checkpoint_keys.load_signing_key({})
    with pytest.raises(checkpoint_keys.CheckpointKeyError, match="not a readable"):
        checkpoint_keys.load_signing_key({checkpoint_keys.KEY_ENV: "not a key"})
    with pytest.raises(checkpoint_keys.CheckpointKeyError, match="Cannot read"):
        checkpoint_keys.load_signing_key({checkpoint_keys.KEY_FILE_ENV: str(tmp_path / "missing.pem")})

    tenant = new_practice(host)
    every_kind_history(host, tenant)
    early = checkpoint.create(host.session(), tenant, old, host.now())
    host.session().commit()

    # Rotation: a new key signs from now on; the retired public key stays trusted.
    new = checkpoint_keys.generate_key()
    new_path = tmp_path / "new.pem"
    checkpoint_keys.write_private_key(new, new_path)
    retired = tmp_path / "retired.pub"
    retired.write_bytes(checkpoint_keys.public_pem(old.public))
    env = {checkpoint_keys.KEY_FILE_ENV: str(new_path), checkpoint_keys.TRUSTED_ENV: str(retired)}
    keys = checkpoint_keys.trusted_keys(environ=env)
    assert set(keys) == {old.key_id, new.key_id}
    host.advance(days=1)
    late = checkpoint.create(host.session(), tenant, checkpoint_keys.load_signing_key(env), host.now())
    host.session().commit()
    assert late["key_id"] == new.key_id
    assert checkpoint.check(host.session(), early, keys).ok
    assert checkpoint.check(host.session(), late, keys).ok
    without_retired = checkpoint_keys.trusted_keys(environ={checkpoint_keys.KEY_FILE_ENV: str(new_path)})
    assert checkpoint.check(host.session(), early, without_retired).problem == "untrusted_key"
    host.session().rollback()
    # Several public keys in one file.
    both = tmp_path / "both.pub"
    both.write_bytes(checkpoint_keys.public_pem(old.public) + checkpoint_keys.public_pem(new.public))
    assert set(checkpoint_keys.load_public_keys([both])) == {old.key_id, new.key_id}


def test_cli_keygen_create_check(host: TestHost, tmp_path: Path) -> None:
    runner = CliRunner()
    key_path = tmp_path / "cp.pem"
    gen = runner.invoke(main, ["checkpoint", "keygen", "--out", str(key_path)])
    assert gen.exit_code == 0, gen.output
    assert "BEGIN PUBLIC KEY" in gen.stdout
    again = runner.invoke(main, ["checkpoint", "keygen", "--out", str(key_path)])
    assert again.exit_code != 0 and "already exists" in again.output
    pub = tmp_path / "cp.pub"
    pub.write_text(gen.stdout)

    tenant = new_practice(host)
    events = every_kind_history(host, tenant)
    host.session().rollback()
    url = _url(host)
    env = {checkpoint_keys.KEY_FILE_ENV: str(key_path)}
    out = tmp_path / "checkpoint.json"
    made = runner.invoke(
        main, ["--database-url", url, "checkpoint", "create", "--tenant", tenant,
               "--out", str(out)], env=env,
    )
    assert made.exit_code == 0, made.output
    doc = json.loads(out.read_text())
    assert doc["tenant"] == tenant and doc["seq"] == events[State.ERASED].seq + 1

    # Checked with only the public key (no private key in the environment).
    ok = runner.invoke(
        main, ["--database-url", url, "checkpoint", "check", str(out), "--public-key", str(pub)],
        env={checkpoint_keys.KEY_FILE_ENV: ""},
    )
    assert ok.exit_code == 0, ok.output
    assert f"OK      {tenant}: checkpoint #{doc['seq']}" in ok.output
    stored = runner.invoke(
        main, ["--database-url", url, "checkpoint", "check", "--tenant", tenant], env=env
    )
    assert stored.exit_code == 0, stored.output

    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps({**doc, "seq": doc["seq"] - 1}))
    bad = runner.invoke(
        main, ["--database-url", url, "checkpoint", "check", str(tampered)], env=env
    )
    assert bad.exit_code == 1 and "bad_signature" in bad.output
    nokey = runner.invoke(
        main, ["--database-url", url, "checkpoint", "create", "--tenant", tenant],
        env={checkpoint_keys.KEY_FILE_ENV: "", checkpoint_keys.KEY_ENV: ""},
    )
    assert nokey.exit_code != 0 and "SAMTYCKE_CHECKPOINT_KEY_FILE" in nokey.output
    host.session().rollback()
    rows = host.session().query(Checkpoint).filter(Checkpoint.tenant_ref == tenant).count()
    host.session().rollback()
    assert rows == 1

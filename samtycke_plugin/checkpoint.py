"""Signed checkpoints of a practice's hash chain.

The hash chain shows that no event was changed, removed or inserted *unless* someone
with write access to the database recomputed every hash after the change.  A
checkpoint closes that gap: an Ed25519 signature over the chain head (practice,
sequence number, head hash, time) made with a key that is *not* in the database.
Kept outside the database (a file in the practice's own storage, an e-mail, a printout
in the proof bundle), an old checkpoint catches any later rewrite of the events up to
its sequence number, however carefully the hashes were recomputed: the event at that
number no longer has the signed hash.

Checking
    A checkpoint is checked against *trusted* public keys only; the keys, where they
    come from and how to rotate them are in :mod:`samtycke_plugin.checkpoint_keys`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import rfc8785
from attrs import frozen
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from samtycke_plugin.chain import VerifyResult, verify_chain
from samtycke_plugin.checkpoint_keys import SigningKey, key_id, raw_public_key
from samtycke_plugin.errors import InputError, NotFound, SamtyckeError
from samtycke_plugin.integrity import backdated_after
from samtycke_plugin.models import GENESIS_HASH, Checkpoint, ConsentEvent, Practice

CHECKPOINT_FORMAT = "samtycke-checkpoint/1"
ALGORITHM = "Ed25519"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Problem = Literal[
    "untrusted_key", "bad_signature", "rewritten", "missing", "backdated", "chain_broken",
    "wrong_practice",
]


class ChainBroken(SamtyckeError):
    """Refused to sign: the chain does not verify (signing it would vouch for a break)."""

    def __init__(self, result: VerifyResult) -> None:
        self.result = result
        broken = result.broken
        assert broken is not None
        super().__init__(
            f"The chain of practice {result.tenant_ref} is broken at event #{broken.seq} "
            f"({broken.kind}: {broken.detail}); no checkpoint was made. Investigate the break "
            "first (samtycke verify)."
        )


# -- statements ---------------------------------------------------------------------------


@frozen(kw_only=True)
class Statement:
    """What a checkpoint signs."""

    tenant: str
    seq: int
    head_hash: str
    created_at: datetime
    key_id: str

    def payload(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "tenant": self.tenant,
            "seq": self.seq,
            "head_hash": self.head_hash,
            "created_at": _iso(self.created_at),
            "key_id": self.key_id,
        }

    def signed_bytes(self) -> bytes:
        """RFC 8785 canonical JSON of :meth:`payload` (what the signature covers)."""
        data: bytes = rfc8785.dumps(self.payload())
        return data


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def export(row: Checkpoint, public_key: Ed25519PublicKey | None = None) -> dict[str, Any]:
    """A stored checkpoint as the JSON document to keep outside the database."""
    statement = Statement(
        tenant=row.tenant_ref, seq=int(row.seq), head_hash=row.head_hash,
        created_at=row.created_at, key_id=row.key_id,
    )
    doc: dict[str, Any] = {
        **statement.payload(), "algorithm": ALGORITHM, "signature": row.signature
    }
    if public_key is not None and key_id(public_key) == row.key_id:
        doc["public_key"] = _b64(raw_public_key(public_key))
    return doc


def parse(doc: Mapping[str, Any]) -> tuple[Statement, bytes]:
    """A checkpoint document → (statement, signature); :class:`InputError` if malformed."""
    if not isinstance(doc, Mapping):
        raise InputError("checkpoint", "must be a JSON object")
    if doc.get("format") != CHECKPOINT_FORMAT:
        raise InputError("checkpoint.format", f"must be {CHECKPOINT_FORMAT!r}")
    if doc.get("algorithm", ALGORITHM) != ALGORITHM:
        raise InputError("checkpoint.algorithm", f"must be {ALGORITHM!r}")
    tenant, seq, head, created, kid, sig = (
        doc.get(k) for k in ("tenant", "seq", "head_hash", "created_at", "key_id", "signature")
    )
    if not isinstance(tenant, str) or not tenant:
        raise InputError("checkpoint.tenant", "must be the practice reference")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise InputError("checkpoint.seq", "must be a whole number ≥ 0")
    if not isinstance(head, str) or not _HEX64.match(head):
        raise InputError("checkpoint.head_hash", "must be 64 lowercase hex digits")
    if not isinstance(kid, str) or not kid:
        raise InputError("checkpoint.key_id", "must be the signing key's id")
    if not isinstance(created, str):
        raise InputError("checkpoint.created_at", "must be an ISO 8601 UTC time")
    try:
        created_at = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        raise InputError("checkpoint.created_at", "must be an ISO 8601 UTC time") from None
    if created_at.tzinfo is None:
        raise InputError("checkpoint.created_at", "must include the time zone (Z)")
    if not isinstance(sig, str):
        raise InputError("checkpoint.signature", "must be base64url text")
    try:
        signature = _unb64(sig)
    except ValueError:
        raise InputError("checkpoint.signature", "must be base64url text") from None
    statement = Statement(
        tenant=tenant, seq=seq, head_hash=head, created_at=created_at, key_id=kid
    )
    return statement, signature


# -- create and check ---------------------------------------------------------------------


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def create(session: Session, tenant: str, key: SigningKey, now: datetime) -> dict[str, Any]:
    """Verify the practice's chain and sign its head; stores the checkpoint and returns
    its JSON document (keep a copy outside the database).  Idempotent: signing the same
    head with the same key again returns the stored checkpoint.  Nothing is committed.

    Raises :class:`ChainBroken` (nothing signed) when the chain does not verify, and
    :class:`NotFound` for a practice that never activated the app.
    """
    practice = session.get(Practice, tenant)
    if practice is None:
        raise NotFound(f"Practice {tenant!r} has no Samtycke ledger.")
    result = verify_chain(session, tenant)
    if result.broken is not None:
        raise ChainBroken(result)
    statement = Statement(
        tenant=tenant, seq=result.head_seq, head_hash=result.head_hash,
        created_at=now.astimezone(UTC), key_id=key.key_id,
    )
    signature = _b64(key.private.sign(statement.signed_bytes()))
    session.execute(
        _insert(session)(Checkpoint)
        .values(
            tenant_ref=tenant, seq=statement.seq, head_hash=statement.head_hash,
            created_at=statement.created_at, key_id=key.key_id, signature=signature,
        )
        .on_conflict_do_nothing(index_elements=["tenant_ref", "seq", "key_id"])
    )
    row = session.scalars(
        select(Checkpoint).where(
            Checkpoint.tenant_ref == tenant,
            Checkpoint.seq == statement.seq,
            Checkpoint.key_id == key.key_id,
        )
    ).one()
    return export(row, key.public)


@frozen(kw_only=True)
class CheckResult:
    """The outcome of checking one checkpoint against the database."""

    tenant: str
    seq: int
    key_id: str
    created_at: datetime
    problem: Problem | None
    detail: str
    chain: VerifyResult | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def check(
    session: Session,
    doc: Mapping[str, Any],
    keys: Mapping[str, Ed25519PublicKey],
    *,
    tenant: str | None = None,
) -> CheckResult:
    """Check a checkpoint document against trusted ``keys`` and the database now.

    In order: the key must be trusted, the signature valid, the practice's chain must
    verify today, and the event at the checkpoint's sequence number must still carry the
    signed hash (so nothing up to it was rewritten, even with recomputed hashes), and no
    event after it may be older than the checkpoint's signing time (less
    :data:`~samtycke_plugin.integrity.CLOCK_TOLERANCE`: an event appended later cannot
    have happened before).  ``tenant``, when given, must be the checkpoint's practice.
    """
    statement, signature = parse(doc)

    def result(problem: Problem | None, detail: str, chain: VerifyResult | None) -> CheckResult:
        return CheckResult(
            tenant=statement.tenant, seq=statement.seq, key_id=statement.key_id,
            created_at=statement.created_at, problem=problem, detail=detail, chain=chain,
        )

    if tenant is not None and statement.tenant != tenant:
        return result(
            "wrong_practice", f"the checkpoint is for practice {statement.tenant}, not {tenant}",
            None,
        )
    public = keys.get(statement.key_id)
    if public is None:
        return result(
            "untrusted_key",
            f"the checkpoint was signed with key {statement.key_id}, which is not among the "
            "trusted public keys",
            None,
        )
    try:
        public.verify(signature, statement.signed_bytes())
    except InvalidSignature:
        return result(
            "bad_signature", "the signature does not match the checkpoint's contents", None
        )
    chain = verify_chain(session, statement.tenant)
    if statement.seq == 0:
        if statement.head_hash != GENESIS_HASH:
            return result("rewritten", "an empty chain must have the genesis hash", chain)
    else:
        stored = session.scalar(
            select(ConsentEvent.row_hash).where(
                ConsentEvent.tenant_ref == statement.tenant, ConsentEvent.seq == statement.seq
            )
        )
        if stored is None:
            return result(
                "missing",
                f"event #{statement.seq}, signed at {_iso(statement.created_at)}, is no longer "
                "in the ledger",
                chain,
            )
        if stored != statement.head_hash:
            return result(
                "rewritten",
                f"event #{statement.seq} no longer has the hash signed at "
                f"{_iso(statement.created_at)}: the ledger up to it was rewritten since",
                chain,
            )
    late = backdated_after(session, statement.tenant, statement.seq, statement.created_at)
    if late is not None:
        return result("backdated", late, chain)
    if chain.broken is not None:
        return result(
            "chain_broken",
            f"the chain is broken at event #{chain.broken.seq} ({chain.broken.kind}: "
            f"{chain.broken.detail})",
            chain,
        )
    if chain.head_seq < statement.seq:  # pragma: no cover - implied by the checks above
        return result("missing", "the ledger is shorter than at the checkpoint", chain)
    return result(None, "the ledger still contains the signed head and verifies", chain)


def stored(session: Session, tenant: str) -> list[Checkpoint]:
    """The checkpoints stored for a practice, newest first."""
    return list(
        session.scalars(
            select(Checkpoint)
            .where(Checkpoint.tenant_ref == tenant)
            .order_by(Checkpoint.seq.desc(), Checkpoint.created_at.desc(), Checkpoint.id.desc())
        )
    )


def check_stored(
    session: Session, tenant: str, keys: Mapping[str, Ed25519PublicKey]
) -> list[CheckResult]:
    """Check every checkpoint stored in the database for a practice (newest first).

    Weaker than checking an exported copy: someone with database access can delete
    stored checkpoints (but cannot forge one without the private key).
    """
    return [check(session, export(row), keys, tenant=tenant) for row in stored(session, tenant)]


def latest(session: Session, tenant: str) -> dict[str, Any] | None:
    """The newest stored checkpoint of a practice as a document, or ``None``."""
    rows = stored(session, tenant)
    return export(rows[0]) if rows else None


__all__ = [
    "ALGORITHM",
    "CHECKPOINT_FORMAT",
    "ChainBroken",
    "CheckResult",
    "Statement",
    "check",
    "check_stored",
    "create",
    "export",
    "latest",
    "parse",
    "stored",
]

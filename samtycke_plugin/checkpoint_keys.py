"""The Ed25519 keys that sign and check checkpoints (see :mod:`samtycke_plugin.checkpoint`).

Keys
    The signing key is an Ed25519 private key in PEM (PKCS#8) form.  It is read from
    the file named by ``SAMTYCKE_CHECKPOINT_KEY_FILE`` or from the PEM text in
    ``SAMTYCKE_CHECKPOINT_KEY``.  ``samtycke checkpoint keygen`` creates one.  The key id
    is the first 16 hex digits of the SHA-256 of the raw public key.

Trusted keys
    A checkpoint is checked against *trusted* public keys only: the public half of the
    current signing key and the PEM public keys in the files named by
    ``SAMTYCKE_CHECKPOINT_PUBLIC_KEYS`` (``os.pathsep``-separated) or given on the command
    line.  The public key inside an exported checkpoint is for convenience and is never
    trusted by itself (a forger would put their own there).

Rotation
    Generate a new key, append the *old* public key to the trusted-keys file, point
    ``SAMTYCKE_CHECKPOINT_KEY_FILE`` at the new key and make a fresh checkpoint.  Old
    checkpoints stay checkable with the retired public key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from attrs import frozen
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from samtycke_plugin.errors import SamtyckeError

KEY_FILE_ENV = "SAMTYCKE_CHECKPOINT_KEY_FILE"
KEY_ENV = "SAMTYCKE_CHECKPOINT_KEY"
TRUSTED_ENV = "SAMTYCKE_CHECKPOINT_PUBLIC_KEYS"


class CheckpointKeyError(SamtyckeError):
    """No usable checkpoint key (the message says where to put one)."""



def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key."""
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()[:16]


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@frozen
class SigningKey:
    """The private key that signs checkpoints, with its id."""

    private: Ed25519PrivateKey
    key_id: str

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @classmethod
    def of(cls, private: Ed25519PrivateKey) -> SigningKey:
        return cls(private, key_id(private.public_key()))


def generate_key() -> SigningKey:
    return SigningKey.of(Ed25519PrivateKey.generate())


def private_pem(key: SigningKey) -> bytes:
    return key.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_private_key(key: SigningKey, path: Path) -> None:
    """Write the private key as PEM, readable by the owner only; never overwrites."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fp:
        fp.write(private_pem(key))


def _load_private(data: bytes, where: str) -> SigningKey:
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CheckpointKeyError(
            f"The checkpoint key in {where} is not a readable, unencrypted PEM private key "
            f"({exc}). Create one with: samtycke checkpoint keygen --out FILE"
        ) from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise CheckpointKeyError(
            f"The checkpoint key in {where} is not an Ed25519 key. "
            "Create one with: samtycke checkpoint keygen --out FILE"
        )
    return SigningKey.of(loaded)


def load_signing_key(environ: Mapping[str, str] | None = None) -> SigningKey:
    """The signing key from ``SAMTYCKE_CHECKPOINT_KEY_FILE`` or ``SAMTYCKE_CHECKPOINT_KEY``."""
    env = os.environ if environ is None else environ
    path = env.get(KEY_FILE_ENV)
    if path:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CheckpointKeyError(
                f"Cannot read the checkpoint key file {path} ({exc.strerror}). "
                f"Check {KEY_FILE_ENV}."
            ) from None
        return _load_private(data, path)
    text = env.get(KEY_ENV)
    if text:
        return _load_private(text.encode("ascii", "replace"), KEY_ENV)
    raise CheckpointKeyError(
        f"No checkpoint key: set {KEY_FILE_ENV} to the path of an Ed25519 PEM key "
        f"(or {KEY_ENV} to its PEM text). Create one with: samtycke checkpoint keygen --out FILE"
    )


def load_public_keys(paths: Iterable[str | Path]) -> dict[str, Ed25519PublicKey]:
    """Trusted public keys from PEM files (a file may hold several keys)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CheckpointKeyError(
                f"Cannot read the public key file {path} ({exc.strerror})."
            ) from None
        marker = b"-----END PUBLIC KEY-----"
        blocks = [b + marker for b in data.split(marker) if b.strip()]
        if not blocks:
            raise CheckpointKeyError(f"No PEM public key found in {path}.")
        for block in blocks:
            try:
                loaded = serialization.load_pem_public_key(block.strip() + b"\n")
            except ValueError as exc:
                raise CheckpointKeyError(
                    f"{path} holds something that is not a PEM public key ({exc})."
                ) from None
            if not isinstance(loaded, Ed25519PublicKey):
                raise CheckpointKeyError(f"{path} holds a public key that is not Ed25519.")
            keys[key_id(loaded)] = loaded
    return keys


def trusted_keys(
    extra_paths: Iterable[str | Path] = (), environ: Mapping[str, str] | None = None
) -> dict[str, Ed25519PublicKey]:
    """The keys checkpoints are checked against: the current signing key's public half
    (when configured), ``SAMTYCKE_CHECKPOINT_PUBLIC_KEYS`` files and ``extra_paths``."""
    env = os.environ if environ is None else environ
    keys: dict[str, Ed25519PublicKey] = {}
    if env.get(KEY_FILE_ENV) or env.get(KEY_ENV):
        signing = load_signing_key(env)
        keys[signing.key_id] = signing.public
    listed = [p for p in env.get(TRUSTED_ENV, "").split(os.pathsep) if p]
    keys.update(load_public_keys([*listed, *extra_paths]))
    return keys


__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "TRUSTED_ENV",
    "CheckpointKeyError",
    "SigningKey",
    "generate_key",
    "key_id",
    "load_public_keys",
    "load_signing_key",
    "private_pem",
    "public_pem",
    "raw_public_key",
    "trusted_keys",
    "write_private_key",
]

"""Link tokens: what a consent or withdrawal link carries and how it is checked.

A link carries a 256-bit token ``base64url(HMAC-SHA256(K, binding))`` where ``K`` is
derived from ``host.app_secret("samtycke")`` and ``binding`` names the practice, the
client, the purpose (``consent``, ``withdraw`` or ``confirm``), the text version and a
random per-request nonce.  The database stores the nonce and ``sha256(token)`` only, never the
token: the relay derives it again when it renders the mail, so a resend after a crash
carries the same link, and a link is found by its hash and then checked again by
recomputing the HMAC from the row.  Rotating the host's secret invalidates every
outstanding link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import TYPE_CHECKING, Any

from hookspecs.types import TenantRef
from samtycke_plugin import common
from samtycke_plugin.models import (
    ConsentRequest,
)

if TYPE_CHECKING:
    from hookspecs.host import Host


PURPOSE_CONSENT = "consent"


PURPOSE_WITHDRAW = "withdraw"


#: A link asking the client to confirm consent ticked in an online booking on their
#: behalf (see :mod:`samtycke_plugin.email.confirm`).
PURPOSE_CONFIRM = "confirm"


PURPOSES = (PURPOSE_CONSENT, PURPOSE_WITHDRAW, PURPOSE_CONFIRM)


#: Path segment of each purpose's public page (below :data:`common.MOUNT_PREFIX`).
LINK_PATHS = {PURPOSE_CONSENT: "c", PURPOSE_WITHDRAW: "w", PURPOSE_CONFIRM: "v"}


#: A token is exactly 43 base64url characters (256 bits, no padding).
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def link_key(host: Host) -> bytes:
    """The key link tokens are derived with (a sub-key of the host's app secret)."""
    secret = host.app_secret(common.APP_KEY)
    if not isinstance(secret, bytes) or len(secret) < 32:
        raise RuntimeError("host.app_secret('samtycke') must return at least 32 bytes")
    return hmac.new(secret, b"samtycke/link-key/v1", hashlib.sha256).digest()


def derive_token(
    key: bytes,
    *,
    tenant: str,
    client: str,
    purpose: str,
    text_version_id: int | None,
    nonce: str,
) -> str:
    """The link token bound to practice, client, purpose, text version and nonce."""
    binding = "\x1f".join(
        ("link", "v1", tenant, client, purpose, str(text_version_id or 0), nonce)
    )
    mac = hmac.new(key, binding.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def token_hash(token: str) -> str:
    """What the database stores: the SHA-256 of the token."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def token_for(key: bytes, req: ConsentRequest | Any) -> str:
    """The token of a stored request (derived again from its nonce)."""
    return derive_token(
        key, tenant=req.tenant_ref, client=req.client_ref, purpose=req.purpose,
        text_version_id=req.text_version_id, nonce=req.nonce,
    )


def link_path(purpose: str, token: str) -> str:
    return f"{common.MOUNT_PREFIX}/{LINK_PATHS[purpose]}/{token}"


def link_url(host: Host, req: ConsentRequest, *, key: bytes | None = None) -> str:
    """The absolute URL of a request's public page (scheme and host from the host's
    configuration, never from a request)."""
    token = token_for(key or link_key(host), req)
    return host.absolute_url(TenantRef(req.tenant_ref), link_path(req.purpose, token))

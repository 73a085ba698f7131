"""An event's personal evidence (IP prefix, user agent, note): minimised, salted, and
covered by the chain only through its salted hash, so that it can be erased."""

from __future__ import annotations

import ipaddress
import re
import secrets
from typing import Any

from samtycke_plugin.canonical import evidence_hash


def truncate_ip(ip: str | None) -> str | None:
    """Keep only the network part: /24 for IPv4, /48 for IPv6 (data minimisation)."""
    if not ip or not isinstance(ip, str):
        return None
    ip = ip.strip()
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 24 if isinstance(addr, ipaddress.IPv4Address) else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def clean_user_agent(value: str | None) -> str | None:
    """The user agent as evidence: control characters (NUL included, which PostgreSQL
    refuses) dropped, unencodable lone surrogates replaced, at most 512 characters."""
    if not value or not isinstance(value, str):
        return None
    kept = _SURROGATE.sub("\ufffd", _CONTROL.sub("", value))
    return kept[:512] or None


_CONTROL = re.compile("[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def evidence_of(
    tenant_ref: str, client_ref: str, ip_address: str | None, user_agent: str | None,
    note: str | None,
) -> dict[str, Any] | None:
    """The event's personal evidence, minimised, with a fresh salt and its salted hash
    (the only part of it the chain covers), or ``None`` when there is none."""
    ip_prefix = truncate_ip(ip_address)
    user_agent = clean_user_agent(user_agent)
    if not (ip_prefix or user_agent or note):
        return None
    salt = secrets.token_hex(16)
    return {
        "tenant_ref": tenant_ref,
        "client_ref": client_ref,
        "salt": salt,
        "ip_prefix": ip_prefix,
        "user_agent": user_agent,
        "note": note,
        "sha256": evidence_hash(salt, ip_prefix, user_agent, note),
    }

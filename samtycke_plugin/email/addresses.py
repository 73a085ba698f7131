"""Addresses and names that go into a mail: checked and normalised before anything is
queued, so that a mail never fails later for what could be seen at once.
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from hookspecs.types import TenantRef
from samtycke_plugin.errors import InputError
from samtycke_plugin.i18n import N_

if TYPE_CHECKING:
    from hookspecs.host import Host


#: Line breaks (``str.splitlines`` ones) and other control characters: never in an
#: address, and never in a header (where DEL is refused too).
_ADDRESS_FORBIDDEN = re.compile("[\x00-\x1f\x85\u2028\u2029]")


_HEADER_FORBIDDEN = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


NO_ADDRESS = N_(
    "The client has no e-mail address. Add one to the client's details, or record "
    "consent the client gave in another way."
)


BAD_ADDRESS = N_(
    "The client's e-mail address is not valid. Correct it in the client's details and "
    "send the request again."
)


NON_ASCII_ADDRESS = N_(
    "The client's e-mail address has a letter other than a to z before the @ (such as ñ "
    "or å), and mail to such an address cannot be delivered from here. Ask the client for "
    "another address and correct it in the client's details."
)


BAD_CLIENT_NAME = N_(
    "The client's name contains a line break or another control character, which cannot "
    "be used in an e-mail. Correct the name in the client's details and try again."
)


BAD_PRACTICE_NAME = N_(
    "The practice's name contains a line break or another control character, which cannot "
    "be used in an e-mail. Correct the practice's name in its settings and try again."
)


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"


_PLAIN_ADDRESS = re.compile(rf"({_ATOM}(?:\.{_ATOM})*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})")


#: The domain is, or is under, a special-use domain name (``local``, ``test``, …).
_SPECIAL_SUFFIX = re.compile(
    r"(?:\A|\.)(?:" + "|".join(re.escape(d) for d in sorted(SPECIAL_USE_DOMAIN_NAMES)) + r")\Z"
)


_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


def _plain_address(address: str) -> str | None:
    """The normalised form of a plain ASCII address, or ``None`` for anything else.

    It exists because the batch page checks every address of a practice while the
    practitioner waits, and email-validator's full parse is much slower per address.
    It accepts only dot-atom local parts at ordinary ASCII host names, which
    email-validator accepts too and normalises the same way (domain lower-cased);
    everything else — Unicode, quoting, IDNA, special-use domains, role names it
    lower-cases — goes to email-validator.  A property test holds the two equal.
    """
    match = _PLAIN_ADDRESS.fullmatch(address)
    if match is None:
        return None
    local, domain = match.group(1), match.group(2).lower()
    if len(local) > 64 or len(domain) > 253 or len(address) > 254:
        return None
    if local.lower() in _CASE_INSENSITIVE or not _ordinary_domain(domain):
        return None
    return f"{local}@{domain}"


@functools.lru_cache(maxsize=1024)
def _ordinary_domain(domain: str) -> bool:
    """A lower-cased host name email-validator takes as it is: no IDNA (``--``) label and
    not a special-use name.  Cached: a practice's addresses share a few domains."""
    return "--" not in domain and _SPECIAL_SUFFIX.search(domain) is None


def normalise_address(raw: str | None) -> str:
    """A syntactically valid, normalised address (no DNS lookups), else :class:`InputError`."""
    if raw is None or not raw.strip():
        raise InputError("email", NO_ADDRESS)
    if len(raw) > 320 or _ADDRESS_FORBIDDEN.search(raw):
        raise InputError("email", BAD_ADDRESS)
    address = raw.strip()
    plain = _plain_address(address)
    if plain is not None:
        return plain
    try:
        # Without SMTPUTF8 (neither the built-in transport nor a host's mailer is known
        # to offer it) a non-ASCII local part cannot be delivered: refused here, with
        # the reason, instead of queued to fail later.
        valid = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        if not address.rpartition("@")[0].isascii():
            raise InputError("email", NON_ASCII_ADDRESS) from None
        raise InputError("email", BAD_ADDRESS) from None
    return str(valid.normalized)


def header_safe(value: str) -> bool:
    """True when ``value`` can go into a mail header (no line breaks or control characters)."""
    return _HEADER_FORBIDDEN.search(value) is None


def check_client_name(name: str) -> str:
    if not header_safe(name):
        raise InputError("name", BAD_CLIENT_NAME)
    return name.strip()


def practice_name(host: Host, tenant: str) -> str:
    """The practice's display name for mails (checked for header injection)."""
    info = host.practice_info(TenantRef(tenant))
    name = info.name if info is not None and info.name else tenant
    if not header_safe(name):
        raise InputError("practice_name", BAD_PRACTICE_NAME)
    return name.strip()


def mail_domain(host: Host, tenant: str) -> str:
    """The host's public domain, for Message-IDs."""
    domain = urlsplit(host.absolute_url(TenantRef(tenant), "/")).hostname or ""
    return re.sub(r"[^A-Za-z0-9.-]", "", domain) or "samtycke.invalid"


def message_id(domain: str) -> str:
    """A new, globally unique Message-ID: the time in nanoseconds, then 64 random bits.

    The time first keeps the outbox's unique index on Message-IDs growing at its end
    (a batch writes thousands of rows at once, and an all-random key lands each one on
    a different page of the index); the random part makes it unique across processes.
    """
    return f"<samtycke.{time.time_ns():x}.{secrets.token_hex(8)}@{domain}>"

"""E-mailed consent links: tokens, single and batch requests,
receipts, and what the public link pages do with a link.

Tokens
------
A link carries a 256-bit token ``base64url(HMAC-SHA256(K, binding))`` where ``K`` is
derived from ``host.app_secret("samtycke")`` and ``binding`` names the practice, the
client, the purpose (``consent`` or ``withdraw``), the text version and a random
per-request nonce (``secrets.token_urlsafe(32)``).  The database stores the nonce and
``sha256(token)`` only, never the token:

* the outbox never holds a token; the relay derives it again when it renders the mail,
  so a resend after a crash carries the *same* link;
* a link is found by its hash and then checked again by recomputing the HMAC from the
  row (``hmac.compare_digest``): a token minted for another practice, client, purpose
  or text version, a mutated token, or a row written without the key, never matches;
* a link works once: the page's POST claims it with ``UPDATE … SET used_at = now
  WHERE used_at IS NULL AND revoked_at IS NULL`` (and ``expires_at > now`` for a consent
  link) and writes the ledger event only when exactly one row changed, in the same
  transaction;
* consent links expire (``request_link_days``, 14 days by default) and work only while
  the practice has the app active; a newer link of the same purpose replaces (revokes)
  the older one;
* withdrawal links (in receipts) have no expiry and work whatever the practice does with
  the app or its settings: withdrawal is possible at any time (GDPR Art. 7(3)), so such a
  link lives as long as the consent it ends.  Only a newer receipt's link replaces it
  (the older mail may sit in a mailbox the client no longer reads), and its page then
  says so and where to withdraw instead.

**Key rotation.** Rotating the host's secret invalidates every outstanding link (the
recomputed HMAC no longer matches): clients who open an old link are told to ask the
practice for a new one, and the practice sends new requests (e.g. the batch request).
Mail still waiting in the outbox is not sent with a dead link: the relay marks it
``failed`` ("send the client a new request"); the same happens if the relay runs with
a different secret than the web pages, so that misconfiguration shows at once.

A link never signs anyone in and GET/HEAD never change anything (mail scanners open
links): only a POST from the page, after a person pressed a button, records an answer.

Transactions
------------
:func:`send_request`, :func:`request_if_needed`, :func:`queue_receipt` and the link
actions work in ``host.session()`` and never commit (the caller's unit of work does).
:func:`request_batch` commits after every chunk of clients (see its docstring).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from attrs import field, frozen
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from sqlalchemy import (
    Select,
    String,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    distinct,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hookspecs.host import ClientQuery
from hookspecs.types import BookingSubmission, ClientCreated, ClientInfo, ClientRef, TenantRef
from samtycke_plugin import common, consent, practices, store
from samtycke_plugin.db import run_in_transaction
from samtycke_plugin.errors import Conflict, InputError, NotActive, NotFound
from samtycke_plugin.i18n import N_, lang
from samtycke_plugin.inputs import whole_number
from samtycke_plugin.ledger import load_snapshot, load_snapshots
from samtycke_plugin.models import (
    KIND_REQUEST,
    WAITING_REQUEST,
    ConsentEvent,
    ConsentRequest,
    ConsentStateRow,
    OutboxMessage,
    Practice,
    TextVersion,
)
from samtycke_plugin.rules import VALID_STATES, State, Status, status

if TYPE_CHECKING:
    from hookspecs.host import Host

log = logging.getLogger("samtycke.requests")

PURPOSE_CONSENT = "consent"
PURPOSE_WITHDRAW = "withdraw"
PURPOSES = (PURPOSE_CONSENT, PURPOSE_WITHDRAW)

KIND_RECEIPT = "receipt"

#: Path segment of each purpose's public page (below :data:`common.MOUNT_PREFIX`).
LINK_PATHS = {PURPOSE_CONSENT: "c", PURPOSE_WITHDRAW: "w"}

#: A token is exactly 43 base64url characters (256 bits, no padding).
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")

#: The ``expires_at`` stored for a withdrawal link: it has none (see the module's doc).
#: Links are never compared with it, so rows with an older, finite value work alike.
WITHDRAW_LINK_NEVER_EXPIRES = datetime(9999, 1, 1, tzinfo=UTC)
#: A second single request for the same client, address and text within this window
#: returns the first (a double click sends one mail, not two).
RESEND_WINDOW = timedelta(seconds=60)
#: Clients per chunk (and per commit) in :func:`request_batch`.
BATCH_CHUNK = 5000
_IN_CHUNK = 900

#: Delivery states of a request (``ConsentRequest.delivery``) and of outbox rows.
QUEUED, SENDING, SENT, RETRY, BOUNCED, FAILED, CANCELLED = (
    "queued", "sending", "sent", "retry", "bounced", "failed", "cancelled",
)

_PENDING = text("used_at IS NULL AND revoked_at IS NULL")
# Bulk writes go through Core on the tables (no ORM bookkeeping per row).
_REQUESTS: Any = ConsentRequest.__table__
_OUTBOX: Any = OutboxMessage.__table__
_REQUEST_KEYS = (
    "tenant_ref", "client_ref", "purpose", "text_version_id", "text_major", "token_hash",
    "nonce", "created_at", "expires_at", "used_at", "revoked_at", "created_by", "delivery",
    "batch_key",
)
_OUTBOX_KEYS = (
    "tenant_ref", "client_ref", "request_id", "kind", "message_id", "to_addr", "locale",
    "payload", "status", "attempts", "next_attempt_at", "created_at", "sent_at", "last_error",
)


def _insert_pending_statement(dialect: str) -> Any:
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_REQUESTS)
    return ins.on_conflict_do_nothing(
        index_elements=["tenant_ref", "client_ref", "purpose"], index_where=_PENDING
    ).returning(_REQUESTS.c.client_ref, _REQUESTS.c.id)


# Statements built once here, the upserts with each dialect's own ``insert`` (pick one
# with :func:`_for_dialect`).
_INSERT_ONE_PENDING = {
    name: _insert_pending_statement(name) for name in ("postgresql", "sqlite")
}
_INSERT_ONE_OUTBOX = insert(_OUTBOX)
#: A batch row waiting for its link, unless one already waits for the client (the rows
#: inserted are returned, to be counted).
_INSERT_WAITING = {
    name: (postgresql.insert if name == "postgresql" else sqlite.insert)(_OUTBOX)
    .on_conflict_do_nothing(
        index_elements=["tenant_ref", "client_ref"], index_where=text(WAITING_REQUEST)
    )
    .returning(_OUTBOX.c.id)
    for name in ("postgresql", "sqlite")
}
_STATE: Any = ConsentStateRow.__table__
_INSERT_MANY_PENDING = {
    name: (postgresql.insert if name == "postgresql" else sqlite.insert)(_REQUESTS)
    .on_conflict_do_nothing(
        index_elements=["tenant_ref", "client_ref", "purpose"], index_where=_PENDING
    )
    for name in ("postgresql", "sqlite")
}
#: The client's pending link of a purpose (the partial unique index allows one).
_PENDING_LINK = select(_REQUESTS.c.id).where(
    _REQUESTS.c.tenant_ref == bindparam("tenant"),
    _REQUESTS.c.client_ref == bindparam("client"),
    _REQUESTS.c.purpose == bindparam("purpose"),
    _REQUESTS.c.used_at.is_(None),
    _REQUESTS.c.revoked_at.is_(None),
)
def _for_dialect(session: Session, statements: dict[str, Any]) -> Any:
    """The statement written for the session's database."""
    return statements[session.get_bind().dialect.name]


def _inserted_rows(session: Session, statement: Any, rows: list[dict[str, Any]]) -> int:
    """Run an ``INSERT … ON CONFLICT DO NOTHING … RETURNING`` for every row (SQLAlchemy
    sends them in batches); the number of rows inserted (the skipped ones return none).
    The drivers' row count after an ``executemany`` is not reliable across backends."""
    if not rows:
        return 0
    return len(session.execute(statement, rows).all())


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
NO_SUCH_CLIENT = N_("No such client in this practice.")


# -- tokens ------------------------------------------------------------------------------------


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


# -- addresses and names -----------------------------------------------------------------------


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

    A fast path for batch work (email-validator costs ~0.1 ms an address): it accepts
    only dot-atom local parts at ordinary ASCII host names, which email-validator
    accepts too and normalises the same way (domain lower-cased); everything else —
    Unicode, quoting, IDNA, special-use domains, role names it lower-cases — goes to
    email-validator.  A property test holds the two equal.
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


# -- shared plumbing ---------------------------------------------------------------------------


def _new_request_values(
    key: bytes,
    *,
    tenant: str,
    client: str,
    purpose: str,
    text: TextVersion | None,
    text_version_id: int | None = None,
    text_major: int | None = None,
    now: datetime,
    expires_at: datetime,
    actor: str,
    batch_key: str | None,
) -> dict[str, Any]:
    version_id = text.id if text is not None else text_version_id
    nonce = secrets.token_urlsafe(32)
    token = derive_token(
        key, tenant=tenant, client=client, purpose=purpose, text_version_id=version_id,
        nonce=nonce,
    )
    return {
        "tenant_ref": tenant,
        "client_ref": client,
        "purpose": purpose,
        "text_version_id": version_id,
        "text_major": text.major if text is not None else text_major,
        "token_hash": token_hash(token),
        "nonce": nonce,
        "created_at": now,
        "expires_at": expires_at,
        "used_at": None,
        "revoked_at": None,
        "created_by": actor[:160],
        "delivery": QUEUED,
        "batch_key": batch_key,
    }


def _insert_pending(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert requests unless the client already has a pending one of that purpose
    (the partial unique index decides, also under concurrency).  Returns
    ``{client_ref: id}`` of the rows actually inserted."""
    if not rows:
        return {}
    if len(rows) == 1:
        row = session.execute(_for_dialect(session, _INSERT_ONE_PENDING), rows[0]).first()
        return {} if row is None else {str(row.client_ref): int(row.id)}
    # executemany without RETURNING (SQLite would run it row by row), then the ids of
    # the rows that went in, by their unique token hashes.
    session.execute(_for_dialect(session, _INSERT_MANY_PENDING), rows)
    found: dict[str, int] = {}
    hashes = [row["token_hash"] for row in rows]
    for start in range(0, len(hashes), _IN_CHUNK):
        for client, id_ in session.execute(
            select(_REQUESTS.c.client_ref, _REQUESTS.c.id).where(
                _REQUESTS.c.token_hash.in_(hashes[start : start + _IN_CHUNK])
            )
        ):
            found[str(client)] = int(id_)
    return found


def _pending_links(
    session: Session, tenant: str, clients: Sequence[str], purpose: str = PURPOSE_CONSENT
) -> dict[str, tuple[int, tuple[datetime, int | None]]]:
    """``{client: (request id, (expires_at, text_major))}`` of the clients' pending links."""
    found: dict[str, tuple[int, tuple[datetime, int | None]]] = {}
    for start in range(0, len(clients), _IN_CHUNK):
        part = list(clients[start : start + _IN_CHUNK])
        for client, id_, expires_at, major in session.execute(
            select(
                ConsentRequest.client_ref, ConsentRequest.id, ConsentRequest.expires_at,
                ConsentRequest.text_major,
            ).where(
                ConsentRequest.tenant_ref == tenant,
                ConsentRequest.client_ref.in_(part),
                ConsentRequest.purpose == purpose,
                ConsentRequest.used_at.is_(None),
                ConsentRequest.revoked_at.is_(None),
            )
        ):
            found[client] = (int(id_), (expires_at, major))
    return found


def _revoke_ids(session: Session, tenant: str, ids: Sequence[int], now: datetime) -> None:
    """Revoke links and cancel their mail that has not gone out yet."""
    for start in range(0, len(ids), _IN_CHUNK):
        part = list(ids[start : start + _IN_CHUNK])
        session.execute(
            update(ConsentRequest)
            .where(
                ConsentRequest.tenant_ref == tenant,
                ConsentRequest.id.in_(part),
                ConsentRequest.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.tenant_ref == tenant,
                OutboxMessage.request_id.in_(part),
                OutboxMessage.status.in_((QUEUED, RETRY)),
            )
            .values(status=CANCELLED, last_error="a newer link replaced this one")
        )


def _revoke_pending(
    session: Session, tenant: str, clients: Sequence[str], purpose: str, now: datetime
) -> None:
    """Revoke every pending link of ``purpose`` of the clients (a newer one is coming)."""
    links = _pending_links(session, tenant, clients, purpose)
    _revoke_ids(session, tenant, [id_ for id_, _ in links.values()], now)


def _outbox_values(
    domain: str,
    *,
    tenant: str,
    client: str,
    request_id: int | None,
    kind: str,
    to_addr: str | None,
    locale: str,
    payload: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    return {
        "tenant_ref": tenant,
        "client_ref": client,
        "request_id": request_id,
        "kind": kind,
        "message_id": message_id(domain),
        "to_addr": to_addr,
        "locale": lang(locale),
        "payload": payload,
        "status": QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "sent_at": None,
        "last_error": None,
    }


class _Texts:
    """The practice's current text per language (looked up once per chunk)."""

    def __init__(self, session: Session, practice: Practice) -> None:
        self.session = session
        self.practice = practice
        self._by_lang: dict[str, TextVersion] = {}

    def for_locale(self, locale: str | None) -> TextVersion:
        key = lang(locale)
        found = self._by_lang.get(key)
        if found is None:
            found = practices.current_text(self.session, self.practice, key)
            self._by_lang[key] = found
        return found


# -- single request ----------------------------------------------------------------------------


def send_request(host: Host, tenant: str, client: str, *, actor: str) -> ConsentRequest:
    """E-mail a consent request to one client (the profile's "send a request").

    Looks the client up in the host (:class:`NotFound` if unknown in this practice),
    validates and normalises the address (:class:`InputError`, field ``email``) and the
    names that go into headers (field ``name`` / ``practice_name``), revokes the
    client's older pending consent link (its unsent mail is cancelled), and writes the
    request, a ``requested`` ledger event and the outbox row in the caller's
    transaction.  Nothing is queued when a check fails.  A repeat within
    :data:`RESEND_WINDOW` for the same address and text returns the first request.
    """
    session = host.session()
    practice = practices.require_practice(session, tenant)
    session.refresh(practice)  # the current text version, not a cached one
    tenant = practice.tenant_ref
    client = common.check_ref("client", client)
    info = host.lookup_client(TenantRef(tenant), ClientRef(client))
    if info is None:
        raise NotFound(NO_SUCH_CLIENT)
    address = normalise_address(info.email)
    name = check_client_name(info.name or "")
    practice_name(host, tenant)
    now = common.now_utc(host)
    text_version = practices.current_text(session, practice, info.locale)

    recent = _recent_request(session, tenant, client, address, text_version.major, now)
    if recent is not None:
        return recent
    _revoke_pending(session, tenant, [client], PURPOSE_CONSENT, now)
    key = link_key(host)
    days = practices.settings_of(practice).request_link_days
    values = _new_request_values(
        key, tenant=tenant, client=client, purpose=PURPOSE_CONSENT, text=text_version,
        now=now, expires_at=now + timedelta(days=days), actor=actor, batch_key=None,
    )
    inserted = _insert_pending(session, [values])
    if client not in inserted:
        # Someone else created a pending request for this client at the same moment.
        existing = session.scalars(
            select(ConsentRequest).where(
                ConsentRequest.tenant_ref == tenant,
                ConsentRequest.client_ref == client,
                ConsentRequest.purpose == PURPOSE_CONSENT,
                ConsentRequest.used_at.is_(None),
                ConsentRequest.revoked_at.is_(None),
            )
        ).first()
        if existing is None:  # pragma: no cover - the conflicting row was rolled back
            raise Conflict(N_("Another request was being sent at the same time. Try again."))
        return existing
    request_id = inserted[client]
    consent.request(session, tenant, [consent.Asked(client=client, text=text_version,
                                                      request_id=request_id)],
                    actor=actor, now=now)
    session.execute(
        insert(OutboxMessage).values(
            **_outbox_values(
                mail_domain(host, tenant), tenant=tenant, client=client, request_id=request_id,
                kind=KIND_REQUEST, to_addr=address, locale=info.locale, payload={"name": name},
                now=now,
            )
        )
    )
    req = session.get(ConsentRequest, request_id)
    assert req is not None
    return req


def _recent_request(
    session: Session, tenant: str, client: str, address: str, major: int, now: datetime
) -> ConsentRequest | None:
    row = session.execute(
        select(ConsentRequest, OutboxMessage.to_addr)
        .join(OutboxMessage, OutboxMessage.request_id == ConsentRequest.id)
        .where(
            ConsentRequest.tenant_ref == tenant,
            ConsentRequest.client_ref == client,
            ConsentRequest.purpose == PURPOSE_CONSENT,
            ConsentRequest.used_at.is_(None),
            ConsentRequest.revoked_at.is_(None),
            ConsentRequest.text_major == major,
            ConsentRequest.created_at > now - RESEND_WINDOW,
            ConsentRequest.expires_at > now,
            ConsentRequest.delivery.notin_((BOUNCED, FAILED)),
            OutboxMessage.kind == KIND_REQUEST,
        )
        .order_by(ConsentRequest.id.desc())
        .limit(1)
    ).first()
    if row is None or row[1] != address:
        return None
    return row[0]


# -- batch request and triggers ----------------------------------------------------------------


@frozen(kw_only=True)
class BatchResult:
    """What a batch request did."""

    #: Requests queued (one outbox row each; the relay mints the link and records the
    #: ``requested`` event when it sends the mail).
    asked: int
    #: Clients who already have valid consent.
    skipped_valid: int
    #: Clients who already have a pending, unexpired request for the current text, or
    #: one queued by an earlier batch and not sent yet.
    skipped_pending: int
    #: Clients without a usable e-mail address (missing or invalid).
    skipped_no_email: int
    #: Clients whose name cannot go into a mail header (line breaks).
    skipped_bad_name: int = 0
    #: Given client refs the host does not know in this practice.
    skipped_unknown: int = 0
    #: Clients who withdrew their consent: a batch does not ask them again (the
    #: practitioner can still ask one of them from the client's profile).
    skipped_withdrawn: int = 0
    #: Clients who declined to consent: left out as the ones who withdrew.
    skipped_refused: int = 0
    #: The key stored on every request of this run.
    batch_key: str = ""

    @property
    def total(self) -> int:
        return (
            self.asked + self.skipped_valid + self.skipped_pending + self.skipped_no_email
            + self.skipped_bad_name + self.skipped_unknown + self.skipped_withdrawn
            + self.skipped_refused
        )


@frozen(kw_only=True)
class _ChunkCounts:
    asked: int = 0
    valid: int = 0
    pending: int = 0
    no_email: int = 0
    bad_name: int = 0
    withdrawn: int = 0
    refused: int = 0
    #: ``{client: request id}`` of the clients asked.
    links: dict[str, int] = field(factory=dict)
    #: ``{client: why}`` of the clients not asked.
    reasons: dict[str, str] = field(factory=dict)


_WHY_VALID = "not asked: the client has valid consent now"
_WHY_PENDING = "not asked: the client already has a pending request"
_WHY_NO_EMAIL = "not asked: the client has no usable e-mail address"
_WHY_BAD_NAME = "not asked: the client's name cannot go into an e-mail"
_WHY_WITHDRAWN = "not asked: the client withdrew their consent"
_WHY_REFUSED = "not asked: the client declined to consent"

#: The clients' own "no": a batch request or an automatic trigger does not ask them
#: again (only a practitioner's single request from the profile does).
_SAID_NO = {Status.WITHDRAWN: _WHY_WITHDRAWN, Status.REFUSED: _WHY_REFUSED}
_SAID_NO_STATES = (State.WITHDRAWN.value, State.REFUSED.value)


@frozen
class _NotMailable:
    why: str


_NO_EMAIL = _NotMailable(_WHY_NO_EMAIL)
_BAD_NAME = _NotMailable(_WHY_BAD_NAME)


def _mail_address(email: str | None, name: str | None) -> str | _NotMailable:
    """The normalised address of a client a request can be mailed to, or why not: no
    usable address, or a name that cannot go into a header."""
    try:
        address = normalise_address(email)
    except InputError:
        return _NO_EMAIL
    return address if header_safe(name or "") else _BAD_NAME


def _ask_chunk(
    host: Host,
    session: Session,
    tenant: str,
    infos: Sequence[ClientInfo],
    *,
    actor: str,
    batch_key: str | None,
    queue_mail: bool = True,
) -> _ChunkCounts:
    """Ask every client of ``infos`` without valid consent, who has not withdrawn or
    declined, and without a pending request for the current text.  Writes requests,
    ``requested`` events and (``queue_mail``) outbox rows; does not commit."""
    practice = practices.require_practice(session, tenant)
    session.refresh(practice)
    now = common.now_utc(host)
    unique = list({info.ref: info for info in infos}.values())
    snaps = load_snapshots(session, tenant, [str(info.ref) for info in unique])

    valid = pending = 0
    unmailable: Counter[str] = Counter()
    reasons: dict[str, str] = {}
    candidates: list[ClientInfo] = []
    for info in unique:
        current = status(snaps.get(info.ref), practice.current_major, now)
        if current is Status.VALID:
            valid += 1
            reasons[info.ref] = _WHY_VALID
        elif current in _SAID_NO:
            unmailable[_SAID_NO[current]] += 1
            reasons[info.ref] = _SAID_NO[current]
        else:
            candidates.append(info)
    # Pending links: expired ones and ones for an outdated text are replaced, the rest
    # mean "already asked" (checked here in one query so a re-run is cheap; the unique
    # index below still decides under concurrency).
    open_links = _pending_links(session, tenant, [str(i.ref) for i in candidates])
    stale = [
        id_ for id_, (expires_at, major) in open_links.values()
        if expires_at <= now or major is None or major < practice.current_major
    ]
    _revoke_ids(session, tenant, stale, now)
    stale_set = set(stale)
    eligible: list[tuple[ClientInfo, str, str]] = []
    for info in candidates:
        found = open_links.get(info.ref)
        if found is not None and found[0] not in stale_set:
            pending += 1
            reasons[info.ref] = _WHY_PENDING
            continue
        address = _mail_address(info.email, info.name)
        if isinstance(address, _NotMailable):
            unmailable[address.why] += 1
            reasons[info.ref] = address.why
            continue
        eligible.append((info, address, (info.name or "").strip()))
    no_email, bad_name = unmailable[_WHY_NO_EMAIL], unmailable[_WHY_BAD_NAME]
    withdrawn, refused = unmailable[_WHY_WITHDRAWN], unmailable[_WHY_REFUSED]
    if not eligible:
        return _ChunkCounts(valid=valid, pending=pending, no_email=no_email, bad_name=bad_name,
                            withdrawn=withdrawn, refused=refused, reasons=reasons)
    practice_name(host, tenant)

    key = link_key(host)
    texts = _Texts(session, practice)
    expires = now + timedelta(days=practices.settings_of(practice).request_link_days)
    rows = []
    chosen: dict[str, TextVersion] = {}
    for info, _address, _name in eligible:
        version = texts.for_locale(info.locale)
        chosen[info.ref] = version
        rows.append(
            _new_request_values(
                key, tenant=tenant, client=info.ref, purpose=PURPOSE_CONSENT, text=version,
                now=now, expires_at=expires, actor=actor, batch_key=batch_key,
            )
        )
    inserted = _insert_pending(session, rows)
    if inserted:
        asked = [(info, a, n) for info, a, n in eligible if info.ref in inserted]
        consent.request(
            session, tenant,
            [consent.Asked(client=info.ref, text=chosen[info.ref], request_id=inserted[info.ref])
             for info, _a, _n in asked],
            actor=actor, now=now,
        )
        if queue_mail:
            domain = mail_domain(host, tenant)
            session.execute(
                _INSERT_ONE_OUTBOX,
                [
                    _outbox_values(
                        domain, tenant=tenant, client=info.ref, request_id=inserted[info.ref],
                        kind=KIND_REQUEST, to_addr=address, locale=info.locale,
                        payload={"name": name}, now=now,
                    )
                    for info, address, name in asked
                ],
            )
    for info, _a, _n in eligible:
        if info.ref not in inserted:  # a concurrent request got there first
            reasons[info.ref] = _WHY_PENDING
    return _ChunkCounts(
        asked=len(inserted), valid=valid, pending=pending + len(eligible) - len(inserted),
        no_email=no_email, bad_name=bad_name, withdrawn=withdrawn, refused=refused,
        links=dict(inserted), reasons=reasons,
    )


def _one_of(column: Any, dialect: str) -> Any:
    """``column`` is one of the strings of the ``refs`` parameter: one bound array
    (PostgreSQL) or JSON text (SQLite), so a chunk's query is compiled once however
    many clients it names."""
    if dialect == "postgresql":
        return column == any_(bindparam("refs", type_=postgresql.ARRAY(String())))
    values: Any = select(literal_column("value")).select_from(func.json_each(bindparam("refs")))
    return column.in_(values)


#: Why :func:`_already_settled` leaves a client out, most decisive first.
_SETTLED_ORDER = {"valid": 0, State.WITHDRAWN.value: 1, State.REFUSED.value: 1, "pending": 2}


def _already_settled(
    session: Session, tenant: str, clients: Sequence[str], current_major: int, now: datetime
) -> dict[str, str]:
    """Why each client of ``clients`` that a batch leaves out is left out: ``"valid"``
    (valid consent), ``"withdrawn"`` or ``"refused"`` (the client's own "no"), or
    ``"pending"`` (an unexpired pending link for the current text).  One query.  (A row
    already waiting for its link is found by the insert's ``ON CONFLICT``: a query on
    the outbox, which grows during the batch, would be planned on stale statistics.)"""
    if not clients:
        return {}
    dialect = session.get_bind().dialect.name
    query = union_all(
        select(_STATE.c.client_ref, literal("valid").label("why")).where(
            _STATE.c.tenant_ref == tenant, _one_of(_STATE.c.client_ref, dialect),
            store.valid_condition(current_major, now),
        ),
        select(_STATE.c.client_ref, _STATE.c.state).where(
            _STATE.c.tenant_ref == tenant, _one_of(_STATE.c.client_ref, dialect),
            _STATE.c.state.in_(_SAID_NO_STATES),
        ),
        select(_REQUESTS.c.client_ref, literal("pending")).where(
            _REQUESTS.c.tenant_ref == tenant, _one_of(_REQUESTS.c.client_ref, dialect),
            _REQUESTS.c.purpose == PURPOSE_CONSENT, _PENDING,
            _REQUESTS.c.expires_at > now, _REQUESTS.c.text_major == current_major,
        ),
    )
    refs: Any = list(clients) if dialect == "postgresql" else json.dumps(list(clients))
    found: dict[str, str] = {}
    for client, why in session.execute(query, {"refs": refs}):
        known = found.get(client)
        if known is None or _SETTLED_ORDER[why] < _SETTLED_ORDER[known]:
            found[client] = why
    return found


def _queue_chunk(
    host: Host,
    session: Session,
    tenant: str,
    infos: Sequence[ClientInfo],
    *,
    actor: str,
    batch_key: str,
) -> _ChunkCounts:
    """A batch request for the clients of ``infos``: one waiting outbox row for each
    client without valid consent, who has not withdrawn or declined, without a pending
    link for the current text and without a row already waiting, whose address and
    name can go into a mail.  The relay mints the link, records the ``requested`` event
    and fills the row in when it claims it (:func:`complete_requests`).  Does not
    commit."""
    practice = practices.require_practice(session, tenant)
    session.refresh(practice)
    now = common.now_utc(host)
    unique = {str(info.ref): info for info in infos}
    settled = _already_settled(session, tenant, list(unique), practice.current_major, now)
    left_out: Counter[str] = Counter()
    unmailable: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    domain: str | None = None
    payload = {"actor": actor[:160], "batch_key": batch_key}  # one object: converted once
    for ref, info in unique.items():
        known = settled.get(ref)
        if known is not None:
            left_out[known] += 1
            continue
        address = _mail_address(info.email, info.name)
        if isinstance(address, _NotMailable):
            unmailable[address.why] += 1
            continue
        if domain is None:
            practice_name(host, tenant)  # a name unusable in mail stops the batch here
            domain = mail_domain(host, tenant)
        rows.append(_outbox_values(
            domain, tenant=tenant, client=ref, request_id=None, kind=KIND_REQUEST,
            to_addr=address, locale=info.locale, payload=payload, now=now,
        ))
    asked = _inserted_rows(session, _for_dialect(session, _INSERT_WAITING), rows)
    return _ChunkCounts(
        asked=asked, valid=left_out["valid"], pending=left_out["pending"] + len(rows) - asked,
        no_email=unmailable[_WHY_NO_EMAIL], bad_name=unmailable[_WHY_BAD_NAME],
        withdrawn=left_out[State.WITHDRAWN.value], refused=left_out[State.REFUSED.value],
    )


def count_clients(host: Host, tenant: str) -> int:
    """The number of clients of the practice: one ``count(*)`` on the host's
    :meth:`~hookspecs.host.ClientQuery.client_query`, else by streaming
    :meth:`~hookspecs.host.Host.iter_clients` (never all loaded at once)."""
    if isinstance(host, ClientQuery):
        return _count_listed(host.session(), host.client_query(TenantRef(tenant)).subquery())
    return sum(1 for _ in host.iter_clients(TenantRef(tenant)))


def _not_among(ref: Any, refs: Select[Any], column: Any, dialect: str) -> Any:
    """``ref`` is not one of the ``column`` values ``refs`` selects (a NOT NULL column).

    SQLite runs ``NOT IN`` on the list built once (a correlated ``NOT EXISTS`` probes an
    index per client, three times slower); PostgreSQL plans ``NOT EXISTS`` as an anti-join
    (its ``NOT IN`` hashes the list only when it fits in ``work_mem`` and otherwise
    rescans it for every client)."""
    if dialect == "postgresql":
        return ~refs.where(column == ref).exists()
    return ref.not_in(refs)


def _queue_everyone(
    host: Host, session: Session, tenant: str, clients: Select[Any], *, actor: str,
    batch_key: str,
) -> tuple[int, _ChunkCounts]:
    """A batch request for every client of ``clients`` (the host's
    :meth:`~hookspecs.host.ClientQuery.client_query`), set-based: the number of clients
    and what was done, decided and counted as :func:`_queue_chunk` does per chunk.

    One ``INSERT … SELECT`` queues a waiting outbox row for each client
    without valid consent, who has not withdrawn or declined, and without a pending
    link for the current text (``ON CONFLICT DO NOTHING`` skips those already
    waiting); the new rows' clients are then read with their addresses and names, and
    the rows that cannot be mailed are deleted again.  The clients already waiting are
    read first, as the streamed batch checks their addresses too.  Counted: the clients
    (each ref once), those who withdrew or declined, those with a pending link, and
    those with valid consent: on SQLite the rest (the unit holds the write lock, so
    nothing changes between the statements), on PostgreSQL by a query of its own (a
    second run at the same moment may take clients between the statements: they count
    as already asked, as in the streamed batch).  Does not commit.
    """
    practice = practices.require_practice(session, tenant)
    session.refresh(practice)
    now = common.now_utc(host)
    major = practice.current_major
    dialect = session.get_bind().dialect.name
    listed = clients.subquery("samtycke_batch_clients")
    ref = listed.c.ref
    valid = select(_STATE.c.client_ref).where(
        _STATE.c.tenant_ref == tenant, store.valid_condition(major, now)
    )
    # Left out before anything else: valid consent, or the client's own "no".
    settled = select(_STATE.c.client_ref).where(
        _STATE.c.tenant_ref == tenant,
        or_(store.valid_condition(major, now), _STATE.c.state.in_(_SAID_NO_STATES)),
    )
    linked = select(_REQUESTS.c.client_ref).where(
        _REQUESTS.c.tenant_ref == tenant, _REQUESTS.c.purpose == PURPOSE_CONSENT, _PENDING,
        _REQUESTS.c.expires_at > now, _REQUESTS.c.text_major == major,
    )
    waiting_rows = and_(_OUTBOX.c.tenant_ref == tenant, text(WAITING_REQUEST))
    unsettled = _not_among(ref, settled, _STATE.c.client_ref, dialect)
    unlinked = _not_among(ref, linked, _REQUESTS.c.client_ref, dialect)
    total = _count_listed(session, listed)
    said_no: Counter[str] = Counter()
    for state, count in session.execute(
        select(_STATE.c.state, func.count()).where(
            _STATE.c.tenant_ref == tenant, _STATE.c.state.in_(_SAID_NO_STATES),
            _STATE.c.client_ref.in_(select(ref).where(ref.is_not(None))),
        ).group_by(_STATE.c.state)
    ):
        said_no[state] = int(count)
    n_said_no = said_no.total()
    n_linked = _count_listed(session, listed, ref.in_(linked), unsettled)
    unmailable: Counter[str] = Counter()
    # The clients waiting in the outbox, with their addresses and names: a semi-join on
    # the host's query, which need not have an index on its ``ref`` (a join could rescan
    # it for every row).
    waiting_clients = select(ref, listed.c.email, listed.c.name).where(
        ref.in_(select(_OUTBOX.c.client_ref).where(waiting_rows))
    )
    # Those already waiting (usually none): not queued again, but an address or name
    # that cannot be mailed counts as such, as in the streamed batch.
    earlier = _mail_checks(session.execute(waiting_clients.where(unsettled, unlinked)))
    unmailable.update(why for why in earlier.values() if why is not None)
    # One Message-ID per row: a stem unique to this run (as message_id()), then the row's
    # number in the run.  The address, language and name are filled in when the relay
    # claims the row (complete_requests), as for a row queued by _queue_chunk.
    stem = f"<samtycke.{time.time_ns():x}.{secrets.token_hex(8)}."
    domain = mail_domain(host, tenant)
    payload = {"actor": actor[:160], "batch_key": batch_key}
    rows = select(
        literal(tenant), ref, null(), literal(KIND_REQUEST),
        literal(stem) + cast(func.row_number().over(), String) + literal(f"@{domain}>"),
        null(), literal(lang(None)), literal(payload, _OUTBOX.c.payload.type), literal(QUEUED),
        literal(0), literal(now, _OUTBOX.c.created_at.type),
        literal(now, _OUTBOX.c.created_at.type),
    ).where(ref.is_not(None), unsettled, unlinked)
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_OUTBOX)
    insert_rows = ins.from_select(
        ["tenant_ref", "client_ref", "request_id", "kind", "message_id", "to_addr",
         "locale", "payload", "status", "attempts", "next_attempt_at", "created_at"],
        rows,
    ).on_conflict_do_nothing(
        index_elements=["tenant_ref", "client_ref"], index_where=text(WAITING_REQUEST)
    )
    queued: set[str] | None = None
    before: set[str] = set()
    if dialect == "postgresql":
        # Another run may queue clients at the same moment: ours are the rows returned.
        queued = set(session.scalars(insert_rows.returning(_OUTBOX.c.client_ref)))
    else:
        # The unit holds SQLite's write lock: every row waiting now and not before is
        # ours (RETURNING would make SQLite's insert twice as slow).
        before = set(session.scalars(select(_OUTBOX.c.client_ref).where(waiting_rows)))
        session.execute(insert_rows)
    ours = {
        client: why
        for client, why in _mail_checks(session.execute(waiting_clients)).items()
        if (client in queued if queued is not None else client not in before)
    }
    unmailable.update(why for why in ours.values() if why is not None)
    gone = [client for client, why in ours.items() if why is not None]
    for start in range(0, len(gone), _IN_CHUNK):  # a client has one waiting row: ours
        part = gone[start : start + _IN_CHUNK]
        session.execute(delete(_OUTBOX).where(waiting_rows, _OUTBOX.c.client_ref.in_(part)))
    if len(ours) > len(gone) or None in earlier.values():
        practice_name(host, tenant)  # a name unusable in mail stops the batch here
    asked = len(ours) - len(gone)
    if dialect == "postgresql":
        n_valid = _count_listed(session, listed, ref.in_(valid))
    else:
        n_valid = total - len(ours) - n_linked - len(earlier) - n_said_no
    no_email, bad_name = unmailable[_WHY_NO_EMAIL], unmailable[_WHY_BAD_NAME]
    return total, _ChunkCounts(
        asked=asked, valid=n_valid, no_email=no_email, bad_name=bad_name,
        withdrawn=said_no[State.WITHDRAWN.value], refused=said_no[State.REFUSED.value],
        pending=max(0, total - n_valid - asked - no_email - bad_name - n_said_no),
    )


def _count_listed(session: Session, listed: Any, *where: Any) -> int:
    """How many distinct clients of the host's query (a subquery) meet ``where``."""
    query = select(func.count(distinct(listed.c.ref))).where(listed.c.ref.is_not(None), *where)
    return int(session.scalar(query) or 0)


def _mail_checks(rows: Iterable[Any]) -> dict[str, str | None]:
    """``{client: why it cannot be mailed, or None}`` of (ref, email, name) rows; a ref
    the host's query lists twice is looked at once."""
    out: dict[str, str | None] = {}
    for client, email, name in rows:
        if client not in out:
            address = _mail_address(email, name)
            out[client] = address.why if isinstance(address, _NotMailable) else None
    return out


def _chunk_job(
    host: Host, tenant: str, chunk: Sequence[ClientInfo], *, actor: str, batch_key: str
) -> Callable[[Session], _ChunkCounts]:
    def job(session: Session) -> _ChunkCounts:
        return _queue_chunk(host, session, tenant, chunk, actor=actor, batch_key=batch_key)

    return job


def complete_requests(
    host: Host, session: Session, rows: Sequence[OutboxMessage]
) -> dict[int, str | None]:
    """Give requests queued by a batch (:func:`request_batch`) their links, ``requested``
    events, addresses, names and languages (in the caller's transaction: the relay's
    claim; the rows of one claim are done together, per practice).  The clients are
    looked at again now: one who has given consent, been asked another way, been
    erased or lost a usable address in the meantime is not asked.  Returns
    ``{row id: None}`` for each row made ready to send, ``{row id: why}`` for the others.
    """
    out: dict[int, str | None] = {}
    groups: dict[tuple[str, str, str | None], list[tuple[OutboxMessage, ClientInfo]]] = {}
    for row in rows:
        client = row.client_ref
        info = (
            host.lookup_client(TenantRef(row.tenant_ref), ClientRef(client)) if client else None
        )
        if info is None:
            out[row.id] = "not asked: the client no longer exists in this practice"
            continue
        payload = row.payload if isinstance(row.payload, dict) else {}
        actor, batch_key = payload.get("actor"), payload.get("batch_key")
        key = (
            row.tenant_ref,
            actor if isinstance(actor, str) and actor else "system:batch",
            batch_key if isinstance(batch_key, str) else None,
        )
        groups.setdefault(key, []).append((row, info))
    for (tenant, actor, batch_key), members in groups.items():
        try:
            counts = _ask_chunk(host, session, tenant, [info for _r, info in members],
                                actor=actor, batch_key=batch_key, queue_mail=False)
        except (InputError, NotActive) as exc:
            for row, _info in members:
                out[row.id] = f"not asked: {exc}"
            continue
        for row, info in members:
            request_id = counts.links.get(info.ref)
            if request_id is None:
                out[row.id] = counts.reasons.get(info.ref, _WHY_PENDING)
                continue
            row.request_id = request_id
            row.to_addr = normalise_address(info.email)
            row.locale = lang(info.locale)
            row.payload = {"name": (info.name or "").strip()}
            out[row.id] = None
    session.flush()
    return out


def _chunks(items: Iterable[ClientInfo], size: int) -> Iterator[list[ClientInfo]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def request_batch(
    host: Host,
    tenant: str,
    *,
    actor: str,
    clients: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    total: int | None = None,
    chunk_size: int = BATCH_CHUNK,
    batch_key: str | None = None,
) -> BatchResult:
    """E-mail a consent request to every client of the practice without valid consent
    (``clients=None``), or to the given client refs.  Clients who withdrew their consent
    or declined it are left out (counted in the result): a batch never answers a
    client's "no" with another mail; the practitioner can still ask one of them from the
    client's profile (:func:`send_request`).

    When the host implements :class:`~hookspecs.host.ClientQuery`, the whole practice
    is queued in one transaction by a few set-based statements on its query
    (:func:`_queue_everyone`; ``chunk_size`` does not apply, ``progress`` is called
    once).  Otherwise the clients are streamed from ``host.iter_clients``, set-based
    and cheap per client: for each chunk, one query finds the clients with
    valid consent, a pending link or a queued request, and one ``executemany`` writes
    an outbox row for each of the others (whose address and name can go into a mail).
    Minting the link, recording the ``requested`` event and revoking an expired or
    outdated link happen when the relay claims the row (:func:`complete_requests`), with
    the client looked at again then; a practice of 100,000 clients is queued in
    seconds.

    Idempotent: a client who already has a pending, unexpired request for the current
    text, or a queued one, is skipped (a partial unique index on queued rows decides,
    with ``INSERT … ON CONFLICT DO NOTHING``, so a double click or two concurrent runs
    queue each client once).

    **Transactions:** with a client query, one transaction on ``host.session()``,
    committed at the end; the clients are never loaded into Python, only the refs,
    addresses and names of those queued are read back.  On SQLite it holds the write
    lock throughout (longer the more clients and the more addresses that need
    email-validator), so bookings wait that long.
    Streamed, the work is done in chunks of ``chunk_size`` clients and each chunk is
    committed on ``host.session()`` (a 100k-client practice is never held in memory or
    in one transaction).  A run that stops half-way (crash, timeout) can simply be run
    again: clients already asked are skipped.  Because of these commits,
    ``host.iter_clients`` must not hold a cursor on ``host.session()`` across them
    (page through the client table, or read it on another connection).

    ``progress(done, total)`` is called after each chunk (with a client query once, at
    the end): ``done`` is the number of clients looked at so far, ``total`` the number
    expected (``len(clients)``, the ``total`` argument, or 0 when unknown).
    """
    session = host.session()
    practice = practices.require_practice(session, tenant)
    tenant = practice.tenant_ref
    batch_key = batch_key or uuid.uuid4().hex
    unknown = 0
    if clients is None and isinstance(host, ClientQuery):
        key = batch_key
        query = host.client_query(TenantRef(tenant))
        done, counts = run_in_transaction(
            host.session,
            lambda s: _queue_everyone(host, s, tenant, query, actor=actor, batch_key=key),
        )
        if progress is not None:
            progress(done, done)
        return _batch_result(counts, unknown=0, batch_key=batch_key, tenant=tenant)
    if clients is not None:
        refs = [common.check_ref("client", c) for c in clients]
        expected = len(refs)

        def looked_up() -> Iterator[ClientInfo]:
            nonlocal unknown
            for ref in refs:
                info = host.lookup_client(TenantRef(tenant), ClientRef(ref))
                if info is None:
                    unknown += 1
                else:
                    yield info

        source: Iterable[ClientInfo] = looked_up()
    else:
        expected = total or 0
        source = host.iter_clients(TenantRef(tenant))

    asked = valid = pending = no_email = bad_name = withdrawn = refused = done = 0
    for chunk in _chunks(source, max(1, chunk_size)):
        counts = run_in_transaction(
            host.session, _chunk_job(host, tenant, chunk, actor=actor, batch_key=batch_key)
        )
        asked += counts.asked
        valid += counts.valid
        pending += counts.pending
        no_email += counts.no_email
        bad_name += counts.bad_name
        withdrawn += counts.withdrawn
        refused += counts.refused
        done += len(chunk)
        if progress is not None:
            progress(done + (unknown if clients is not None else 0), expected)
    if clients is not None and progress is not None and done == 0:
        progress(unknown, expected)
    return _batch_result(
        _ChunkCounts(asked=asked, valid=valid, pending=pending, no_email=no_email,
                     bad_name=bad_name, withdrawn=withdrawn, refused=refused),
        unknown=unknown, batch_key=batch_key, tenant=tenant,
    )


def _batch_result(
    counts: _ChunkCounts, *, unknown: int, batch_key: str, tenant: str
) -> BatchResult:
    result = BatchResult(
        asked=counts.asked, skipped_valid=counts.valid, skipped_pending=counts.pending,
        skipped_no_email=counts.no_email, skipped_bad_name=counts.bad_name,
        skipped_unknown=unknown, skipped_withdrawn=counts.withdrawn,
        skipped_refused=counts.refused, batch_key=batch_key,
    )
    log.info(
        "batch request %s for practice %s: %d asked, %d valid, %d pending, %d without "
        "address, %d bad name, %d unknown, %d withdrawn, %d declined",
        batch_key, tenant, result.asked, result.skipped_valid, result.skipped_pending,
        result.skipped_no_email, result.skipped_bad_name, unknown, result.skipped_withdrawn,
        result.skipped_refused,
    )
    return result


def request_if_needed(host: Host, tenant: str, client: str, *, actor: str) -> int | None:
    """Ask one client by e-mail unless they have valid consent, withdrew or declined it,
    have a pending request for the current text, or no usable address.  In the caller's
    transaction (for the triggers inside the host's booking and client-creation
    transactions); never raises for a missing or bad address.  Returns the new request
    id, or ``None``."""
    session = host.session()
    practice = practices.get_practice(session, tenant)
    if not practices.is_operational(practice):
        return None
    assert practice is not None
    info = host.lookup_client(TenantRef(practice.tenant_ref), ClientRef(client))
    if info is None:
        return None
    try:
        counts = _ask_chunk(host, session, practice.tenant_ref, [info], actor=actor,
                            batch_key=None)
    except InputError:
        log.warning("practice %s: consent request not queued (practice name unusable in mail)",
                    practice.tenant_ref)
        return None
    return next(iter(counts.links.values()), None)


def on_client_created(host: Host, created: ClientCreated) -> int | None:
    """Trigger: a client created by staff gets a request when the practice chose so."""
    if created.created_by != "staff":
        return None
    practice = practices.get_practice(host.session(), created.tenant)
    if not practices.is_operational(practice):
        return None
    assert practice is not None
    if not practices.settings_of(practice).email_request_to_new_clients:
        return None
    return request_if_needed(host, created.tenant, created.client, actor="system:new_client")


def _receipt_placeholder(
    host: Host, tenant: str, client: str, payload: dict[str, Any], locale: str
) -> dict[str, Any]:
    return _outbox_values(
        "receipt.invalid", tenant=tenant, client=client, request_id=None, kind=KIND_RECEIPT,
        to_addr=None, locale=locale, payload=payload, now=common.now_utc(host),
    )


def after_booking(
    host: Host, submission: BookingSubmission, client: str, event: ConsentEvent | None
) -> None:
    """After the booking's record step, in the host's transaction: the receipt of a
    consent given online, or the e-mail request after a staff booking.

    The receipt is one outbox row naming the event by its sequence number, completed by
    the relay (:func:`complete_receipt`): the transactional outbox guarantees a receipt
    exactly when the consent commits, while looking the client up, checking the address
    and minting the withdrawal link happen off the booking path, with the address the
    client has when the mail goes out.
    """
    if event is not None and State(event.state) in VALID_STATES:
        host.session().execute(_INSERT_ONE_OUTBOX, _receipt_placeholder(
            host, event.tenant_ref, event.client_ref, {"event_seq": event.seq},
            submission.locale))
        return
    if submission.channel != "staff":
        return
    practice = practices.get_practice(host.session(), submission.tenant)
    if not practices.is_operational(practice):
        return
    assert practice is not None
    if practices.settings_of(practice).email_request_after_staff_booking:
        request_if_needed(host, practice.tenant_ref, client, actor="system:staff_booking")


# -- receipts ----------------------------------------------------------------------------------


@frozen(kw_only=True)
class _ReceiptLink:
    request_id: int
    address: str
    name: str
    locale: str


def _receipt_link(
    host: Host, session: Session, tenant: str, client: str, text_version_id: int | None,
    text_major: int | None,
) -> _ReceiptLink | str:
    """The withdrawal link a receipt carries: a new ``withdraw`` request (the client's
    older pending one is revoked and its unsent mail cancelled).  Returns why there is
    none instead (the client is gone or has no usable address or name)."""
    info = host.lookup_client(TenantRef(tenant), ClientRef(client))
    if info is None:
        return "the client no longer exists in this practice"
    try:
        address = normalise_address(info.email)
        name = check_client_name(info.name or "")
        practice_name(host, tenant)
    except InputError as exc:
        return f"no receipt: unusable {exc.field}"
    now = common.now_utc(host)
    older = session.execute(
        _PENDING_LINK, {"tenant": tenant, "client": client, "purpose": PURPOSE_WITHDRAW}
    ).one_or_none()
    if older is not None:
        _revoke_ids(session, tenant, [int(older.id)], now)
    values = _new_request_values(
        link_key(host), tenant=tenant, client=client, purpose=PURPOSE_WITHDRAW, text=None,
        text_version_id=text_version_id, text_major=text_major, now=now,
        expires_at=WITHDRAW_LINK_NEVER_EXPIRES, actor="client", batch_key=None,
    )
    inserted = _insert_pending(session, [values])
    if client not in inserted:  # pragma: no cover - a concurrent receipt won the race
        return "a newer receipt replaced this one"
    return _ReceiptLink(request_id=inserted[client], address=address, name=name,
                        locale=lang(info.locale))


def queue_receipt(host: Host, event: ConsentEvent) -> int | None:
    """Queue the receipt for a consent event: what was agreed, when, and a withdrawal
    link (a new ``withdraw`` request; the client's older one is revoked).  Skipped
    (``None``) when the client has no usable address.  In the caller's transaction."""
    session = host.session()
    tenant, client = event.tenant_ref, event.client_ref
    link = _receipt_link(host, session, tenant, client, event.text_version_id, event.text_major)
    if isinstance(link, str):
        log.info("practice %s: no receipt queued (%s)", tenant, link)
        return None
    session.execute(
        _INSERT_ONE_OUTBOX,
        _outbox_values(
            mail_domain(host, tenant), tenant=tenant, client=client,
            request_id=link.request_id, kind=KIND_RECEIPT, to_addr=link.address,
            locale=link.locale, payload={"name": link.name, "event_id": event.id},
            now=common.now_utc(host),
        ),
    )
    return link.request_id


def complete_receipt(host: Host, session: Session, row: OutboxMessage) -> str | None:
    """Give a receipt queued at booking (:func:`after_booking`) its withdrawal
    link, address, name, language and Message-ID (in the caller's transaction: the
    relay's claim).  Returns why it cannot be sent instead (client gone, no usable
    address)."""
    payload = row.payload if isinstance(row.payload, dict) else {}
    seq = payload.get("event_seq")
    event = session.scalars(
        select(ConsentEvent).where(
            ConsentEvent.tenant_ref == row.tenant_ref, ConsentEvent.seq == seq
        )
    ).one_or_none() if isinstance(seq, int) else None
    if event is None or event.tenant_ref != row.tenant_ref or row.client_ref is None \
            or event.client_ref != row.client_ref:
        return "the consent event of this receipt no longer exists"
    link = _receipt_link(host, session, row.tenant_ref, row.client_ref,
                         event.text_version_id, event.text_major)
    if isinstance(link, str):
        return link
    row.request_id = link.request_id
    row.to_addr = link.address
    row.locale = link.locale
    row.payload = {"name": link.name, "event_id": event.id}
    row.message_id = message_id(mail_domain(host, row.tenant_ref))
    session.flush()
    return None


# -- the public link pages ---------------------------------------------------------------------


class LinkProblem(Exception):
    """A link that cannot be used.  ``kind`` is

    * ``unknown``: the token matches no link (malformed, forged, guessed, or its client
      was erased) — the only kind the pages' rate limit counts;
    * ``invalid``: a real link that cannot be used (an expired or replaced consent link,
      a consent link of a practice that deactivated the app, the wrong page for its
      purpose) — the page says the same as for ``unknown``;
    * ``used``: already used (the page names the practice);
    * ``replaced``: a withdrawal link a newer receipt replaced (the page says where to
      withdraw instead).
    """

    def __init__(self, kind: str, tenant: str | None = None, client: str | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        #: The link's practice and client (not for ``unknown`` and ``invalid``: their
        #: page names nobody).
        self.tenant = tenant
        self.client = client


@frozen(kw_only=True)
class Link:
    """A usable link: the request row, its practice and the client (as the host knows it)."""

    request: ConsentRequest
    practice: Practice
    client: ClientInfo | None
    token_hash: str


def open_link(host: Host, token: str, purpose: str) -> Link:
    """Find a usable link (read only).  Raises :class:`LinkProblem`.

    A withdrawal link works whatever the practice does with the app: neither
    deactivation, nor its settings, nor the link's age end it (withdrawal is possible at
    any time).  A consent link needs the practice to have the app active: a practice
    that switched the app off is not collecting consent."""
    if purpose not in PURPOSES or not isinstance(token, str) or not TOKEN_RE.match(token):
        raise LinkProblem("unknown")
    session = host.session()
    digest = token_hash(token)
    # populate_existing: a long-lived host session must not answer from stale objects.
    req = session.scalars(
        select(ConsentRequest)
        .where(ConsentRequest.token_hash == digest)
        .execution_options(populate_existing=True)
    ).first()
    if req is None:
        raise LinkProblem("unknown")
    # Only the mailed token has this hash: from here on it is a real link, not a guess.
    if req.purpose != purpose or not hmac.compare_digest(token_for(link_key(host), req), token):
        raise LinkProblem("invalid")
    practice = session.get(Practice, req.tenant_ref, populate_existing=True)
    if practice is None:
        raise LinkProblem("invalid")
    if req.used_at is not None:
        raise LinkProblem("used", req.tenant_ref, req.client_ref)
    if purpose == PURPOSE_WITHDRAW:
        if req.revoked_at is not None:
            raise LinkProblem("replaced", req.tenant_ref, req.client_ref)
    elif not practice.active or req.revoked_at is not None \
            or req.expires_at <= common.now_utc(host):
        raise LinkProblem("invalid")
    client = host.lookup_client(TenantRef(req.tenant_ref), ClientRef(req.client_ref))
    return Link(request=req, practice=practice, client=client, token_hash=digest)


def _claim(host: Host, link: Link) -> None:
    """Use the link once, in the caller's transaction (else :class:`LinkProblem`)."""
    now = common.now_utc(host)
    req = link.request
    usable = [
        ConsentRequest.id == req.id,
        ConsentRequest.tenant_ref == req.tenant_ref,
        ConsentRequest.used_at.is_(None),
        ConsentRequest.revoked_at.is_(None),
    ]
    if req.purpose != PURPOSE_WITHDRAW:  # a withdrawal link has no expiry
        usable.append(ConsentRequest.expires_at > now)
    claimed = host.session().execute(
        update(ConsentRequest).where(*usable).values(used_at=now)
    ).rowcount  # type: ignore[attr-defined]
    if claimed != 1:
        host.session().expire(req)
        if req.used_at is not None:
            raise LinkProblem("used", req.tenant_ref, req.client_ref)
        if req.purpose == PURPOSE_WITHDRAW and req.revoked_at is not None:
            raise LinkProblem("replaced", req.tenant_ref, req.client_ref)
        raise LinkProblem("invalid")


class TextChanged(Exception):
    """The practice changed the content of its text after the page was shown."""


def shown_text(host: Host, link: Link, raw: str | None) -> TextVersion:
    """The text version the page showed (posted back); another practice's or an unknown
    id is :class:`InputError` (nothing is written), an outdated one :class:`TextChanged`."""
    text_id = whole_number(raw)  # ASCII digits only: "²" and "٣" are isdigit() too
    if text_id is None:
        raise InputError("text", "the form did not say which text was shown")
    version = host.session().get(TextVersion, text_id)
    if version is None or version.tenant_ref != link.practice.tenant_ref:
        raise InputError("text", "the form named a text of another practice")
    if version.major != link.practice.current_major:
        raise TextChanged()
    return version


def answer(
    host: Host,
    link: Link,
    *,
    accept: bool,
    shown: TextVersion,
    ip_address: str | None,
    user_agent: str | None,
) -> ConsentEvent:
    """Record the client's answer on the consent page (POST): ``given``/``renewed`` or
    ``refused`` for the text version shown, using the link once.  Accepting queues a
    receipt with a withdrawal link.  In the caller's transaction."""
    _claim(host, link)
    session = host.session()
    req = link.request
    how = consent.How(channel="email_link", method="button", actor="client",
                      request_id=req.id, ip_address=ip_address, user_agent=user_agent)
    now = common.now_utc(host)
    if not accept:
        return consent.refuse(session, req.tenant_ref, req.client_ref, shown, how, now=now)
    event = consent.grant(
        session, req.tenant_ref, req.client_ref, shown, how, now=now,
        validity_days=practices.settings_of(link.practice).validity_days,
    )
    queue_receipt(host, event)
    return event


def has_valid_consent(host: Host, link: Link) -> bool:
    return consent_given(host, link.request.tenant_ref, link.request.client_ref)


def consent_given(host: Host, tenant: str, client: str) -> bool:
    """Whether the client's consent stands (given or renewed, not yet ended)."""
    snap = load_snapshot(host.session(), tenant, client)
    return snap is not None and snap.state in VALID_STATES


def consented_event(host: Host, link: Link) -> ConsentEvent | None:
    """The client's latest given/renewed event (what a withdrawal page describes)."""
    return host.session().scalars(
        select(ConsentEvent)
        .where(
            ConsentEvent.tenant_ref == link.request.tenant_ref,
            ConsentEvent.client_ref == link.request.client_ref,
            ConsentEvent.state.in_([s.value for s in VALID_STATES]),
        )
        .order_by(ConsentEvent.seq.desc())
        .limit(1)
    ).first()


def withdraw(
    host: Host, link: Link, *, ip_address: str | None, user_agent: str | None
) -> ConsentEvent:
    """Record the client's withdrawal from the receipt link (POST), using the link once,
    also when the practice has deactivated the app.
    :class:`~samtycke_plugin.errors.Conflict` when there is no given consent to withdraw."""
    _claim(host, link)
    return consent.withdraw(
        host, link.request.tenant_ref, link.request.client_ref, actor="client",
        channel="email_link", method="button", by_client=True, request_id=link.request.id,
        ip_address=ip_address, user_agent=user_agent, even_if_inactive=True,
    )


__all__ = [
    "BatchResult",
    "Link",
    "LinkProblem",
    "TextChanged",
    "after_booking",
    "answer",
    "complete_receipt",
    "derive_token",
    "link_url",
    "normalise_address",
    "on_client_created",
    "open_link",
    "queue_receipt",
    "request_batch",
    "request_if_needed",
    "send_request",
    "token_hash",
    "withdraw",
]

"""The rows behind every mail: link requests (``samtycke_consent_request``) and outbox
messages (``samtycke_outbox``), written in the caller's transaction, so that a mail is
queued exactly when what it tells commits (the transactional outbox).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    bindparam,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from samtycke_plugin import practice_texts
from samtycke_plugin.email.addresses import message_id
from samtycke_plugin.email.tokens import PURPOSE_CONSENT, derive_token, token_hash
from samtycke_plugin.i18n import N_, lang
from samtycke_plugin.models import (
    WAITING_REQUEST,
    ConsentRequest,
    ConsentStateRow,
    OutboxMessage,
    Practice,
    TextVersion,
)

KIND_RECEIPT = "receipt"


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
    "batch_key", "purpose_majors",
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


NO_SUCH_CLIENT = N_("No such client in this practice.")


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
    purpose_majors: dict[str, int] | None = None,
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
        "purpose_majors": purpose_majors,
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
            found = practice_texts.current_text(self.session, self.practice, key)
            self._by_lang[key] = found
        return found

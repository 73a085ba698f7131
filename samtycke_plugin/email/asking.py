"""Who is asked by e-mail, and the writes for those who are: clients with valid consent,
a pending link, or their own "no" (withdrawn, declined) are left out, and so are those
without a usable address; each left-out client is counted with the reason.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from attrs import field, frozen
from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    any_,
    bindparam,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from hookspecs.types import ClientInfo, ClientRef, TenantRef
from samtycke_plugin import common, consent, practice_texts, practices, store
from samtycke_plugin.email.addresses import (
    header_safe,
    mail_domain,
    normalise_address,
    practice_name,
)
from samtycke_plugin.email.outbox import (
    _INSERT_ONE_OUTBOX,
    _PENDING,
    _REQUESTS,
    _STATE,
    _insert_pending,
    _new_request_values,
    _outbox_values,
    _pending_links,
    _revoke_ids,
)
from samtycke_plugin.email.tokens import PURPOSE_CONSENT, link_key
from samtycke_plugin.errors import InputError, NotActive, NotFound
from samtycke_plugin.i18n import lang
from samtycke_plugin.ledger import load_snapshots
from samtycke_plugin.models import (
    KIND_REQUEST,
    OutboxMessage,
    Practice,
    TextVersion,
)
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.rules import State, Status, paused, status
from samtycke_plugin.settings import PracticeSettings

if TYPE_CHECKING:
    from hookspecs.host import Host




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


#: The clients' own "no": within the practice's pause a batch request or an automatic
#: trigger does not ask them again (a practitioner's single request from the profile
#: still does).
_SAID_NO = {Status.WITHDRAWN: _WHY_WITHDRAWN, Status.REFUSED: _WHY_REFUSED}


_SAID_NO_STATES = (State.WITHDRAWN.value, State.REFUSED.value)


def said_no_in_pause(
    settings: PracticeSettings, now: datetime, purpose: str = DEFAULT_PURPOSE
) -> ColumnElement[bool]:
    """The status rows of clients who declined or withdrew ``purpose`` within the
    practice's pause (:func:`samtycke_plugin.rules.paused` as SQL)."""
    if settings.pause_days == 0:
        return false()
    return and_(_STATE.c.purpose_key == purpose, _STATE.c.state.in_(_SAID_NO_STATES),
                _STATE.c.since > now - timedelta(days=settings.pause_days))


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


def _link_majors(session: Session, tenant: str, clients: Sequence[str]
                 ) -> dict[str, tuple[int, datetime, dict[str, int]]]:
    """``{client: (request id, expires_at, {purpose: content version asked})}`` of the
    clients' pending consent links (a link from before purposes asked the default one)."""
    found: dict[str, tuple[int, datetime, dict[str, int]]] = {}
    for client, (id_, (expires_at, major)) in _pending_links(session, tenant, clients).items():
        found[client] = (id_, expires_at, {DEFAULT_PURPOSE: major} if major is not None else {})
    ids = {v[0]: c for c, v in found.items()}
    for start in range(0, len(ids), 900):
        part = list(ids)[start : start + 900]
        for id_, majors in session.execute(
            select(_REQUESTS.c.id, _REQUESTS.c.purpose_majors).where(_REQUESTS.c.id.in_(part))
        ):
            if isinstance(majors, dict):
                client = ids[id_]
                found[client] = (id_, found[client][1], {str(k): int(v) for k, v in majors.items()})
    return found


def _ask_chunk(
    host: Host,
    session: Session,
    tenant: str,
    infos: Sequence[ClientInfo],
    *,
    actor: str,
    batch_key: str | None,
    queue_mail: bool = True,
    purposes: Sequence[str] = (DEFAULT_PURPOSE,),
    renewing: bool = False,
) -> _ChunkCounts:
    """Ask every client of ``infos`` for each purpose of ``purposes`` they have no valid
    consent to (``renewing``: valid consent too, the caller has checked that it expires
    soon; the mail says it is a renewal), have not withdrawn or declined within the
    pause, and are not asked about by a pending link for the current text.  One link per
    client asks for all their purposes (a pending link that misses one is replaced by
    one asking for both).  Writes requests, ``requested`` events (one per purpose) and
    (``queue_mail``) outbox rows; does not commit."""
    practice = practices.require_practice(session, tenant)
    session.refresh(practice)
    now = common.now_utc(host)
    unique = list({info.ref: info for info in infos}.values())
    refs = [str(info.ref) for info in unique]
    keys = list(dict.fromkeys(purposes))
    majors = {p: practices.purpose_major(session, practice, p) for p in keys}
    snaps = {p: load_snapshots(session, tenant, refs, p) for p in keys}

    valid = pending = 0
    unmailable: Counter[str] = Counter()
    reasons: dict[str, str] = {}
    candidates: list[tuple[ClientInfo, list[str]]] = []
    settings = practices.settings_of(practice)
    for info in unique:
        needed: list[str] = []
        said_no: str | None = None
        for p in keys:
            snap = snaps[p].get(info.ref)
            current = status(snap, majors[p], now)
            if current is Status.VALID and not renewing:
                continue
            if current in _SAID_NO and paused(snap, settings, now):
                said_no = said_no or _SAID_NO[current]
                continue
            needed.append(p)
        if needed:
            candidates.append((info, needed))
        elif said_no is not None:
            unmailable[said_no] += 1
            reasons[info.ref] = said_no
        else:
            valid += 1
            reasons[info.ref] = _WHY_VALID
    # Pending links: expired ones, ones for an outdated text and ones that miss a purpose
    # asked now are replaced, the rest mean "already asked" (checked here in one query
    # so a re-run is cheap; the unique index below still decides under concurrency).
    open_links = _link_majors(session, tenant, [str(i.ref) for i, _n in candidates])
    stale: list[int] = []
    eligible: list[tuple[ClientInfo, str, dict[str, int]]] = []
    for info, needed in candidates:
        found = open_links.get(info.ref)
        ask = {p: majors[p] for p in needed}
        if found is not None:
            id_, expires_at, asked_majors = found
            if expires_at > now and all(asked_majors.get(p) == m for p, m in ask.items()):
                pending += 1
                reasons[info.ref] = _WHY_PENDING
                continue
            stale.append(id_)
            # The replaced link's other purposes, still at their current text, stay asked.
            for p, m in asked_majors.items():
                if p not in ask and expires_at > now and _major_or_none(session, practice, p) == m:
                    ask[p] = m
        address = _mail_address(info.email, info.name)
        if isinstance(address, _NotMailable):
            unmailable[address.why] += 1
            reasons[info.ref] = address.why
            continue
        eligible.append((info, address, ask))
    _revoke_ids(session, tenant, stale, now)
    no_email, bad_name = unmailable[_WHY_NO_EMAIL], unmailable[_WHY_BAD_NAME]
    withdrawn, refused = unmailable[_WHY_WITHDRAWN], unmailable[_WHY_REFUSED]
    if not eligible:
        return _ChunkCounts(valid=valid, pending=pending, no_email=no_email, bad_name=bad_name,
                            withdrawn=withdrawn, refused=refused, reasons=reasons)
    practice_name(host, tenant)

    key = link_key(host)
    texts: dict[tuple[str, str], TextVersion] = {}

    def text_of(p: str, locale: str | None) -> TextVersion:
        found = texts.get((p, lang(locale)))
        if found is None:
            found = texts[(p, lang(locale))] = practice_texts.current_text(
                session, practice, lang(locale), p)
        return found

    expires = now + timedelta(days=practices.settings_of(practice).request_link_days)
    rows = []
    for info, _address, ask in eligible:
        rows.append(
            _new_request_values(
                key, tenant=tenant, client=info.ref, purpose=PURPOSE_CONSENT,
                text=text_of(next(iter(ask)), info.locale), now=now, expires_at=expires,
                actor=actor, batch_key=batch_key, purpose_majors=ask,
            )
        )
    inserted = _insert_pending(session, rows)
    if inserted:
        asked = [(info, a, ask) for info, a, ask in eligible if info.ref in inserted]
        consent.request(
            session, tenant,
            [consent.Asked(client=info.ref, text=text_of(p, info.locale),
                           request_id=inserted[info.ref], purpose=p)
             for info, _a, ask in asked for p in ask],
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
                        payload={"name": (info.name or "").strip(),
                                 **({"occasion": "renewal"} if renewing else {})},
                        now=now,
                    )
                    for info, address, _ask in asked
                ],
            )
    for info, _a, _ask in eligible:
        if info.ref not in inserted:  # a concurrent request got there first
            reasons[info.ref] = _WHY_PENDING
    return _ChunkCounts(
        asked=len(inserted), valid=valid, pending=pending + len(eligible) - len(inserted),
        no_email=no_email, bad_name=bad_name, withdrawn=withdrawn, refused=refused,
        links=dict(inserted), reasons=reasons,
    )


def _major_or_none(session: Session, practice: Practice, purpose: str) -> int | None:
    try:
        return practices.purpose_major(session, practice, purpose)
    except NotFound:  # archived since: no longer asked
        return None


def asks_about(purpose: str, major: int) -> ColumnElement[bool]:
    """The consent link rows that ask about ``purpose`` at content version ``major``
    (a row from before purposes asked the default purpose at its ``text_major``)."""
    named = _REQUESTS.c.purpose_majors[purpose].as_integer() == major
    if purpose != DEFAULT_PURPOSE:
        return named  # type: ignore[no-any-return]
    return or_(named, and_(_REQUESTS.c.purpose_majors.is_(None),
                           _REQUESTS.c.text_major == major))


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
    session: Session, tenant: str, clients: Sequence[str], current_major: int, now: datetime,
    settings: PracticeSettings, purpose: str = DEFAULT_PURPOSE,
) -> dict[str, str]:
    """Why each client of ``clients`` that a batch leaves out is left out: ``"valid"``
    (valid consent), ``"withdrawn"`` or ``"refused"`` (the client's own "no", within the
    practice's pause), or
    ``"pending"`` (an unexpired pending link for the current text).  One query.  (A row
    already waiting for its link is found by the insert's ``ON CONFLICT``: a query on
    the outbox, which grows during the batch, would be planned on stale statistics.)"""
    if not clients:
        return {}
    dialect = session.get_bind().dialect.name
    query = union_all(
        select(_STATE.c.client_ref, literal("valid").label("why")).where(
            _STATE.c.tenant_ref == tenant, _one_of(_STATE.c.client_ref, dialect),
            store.valid_condition(current_major, now, purpose),
        ),
        select(_STATE.c.client_ref, _STATE.c.state).where(
            _STATE.c.tenant_ref == tenant, _one_of(_STATE.c.client_ref, dialect),
            said_no_in_pause(settings, now, purpose),
        ),
        select(_REQUESTS.c.client_ref, literal("pending")).where(
            _REQUESTS.c.tenant_ref == tenant, _one_of(_REQUESTS.c.client_ref, dialect),
            _REQUESTS.c.purpose == PURPOSE_CONSENT, _PENDING,
            _REQUESTS.c.expires_at > now, asks_about(purpose, current_major),
        ),
    )
    refs: Any = list(clients) if dialect == "postgresql" else json.dumps(list(clients))
    found: dict[str, str] = {}
    for client, why in session.execute(query, {"refs": refs}):
        known = found.get(client)
        if known is None or _SETTLED_ORDER[why] < _SETTLED_ORDER[known]:
            found[client] = why
    return found


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
    groups: dict[tuple[str, str, str | None, tuple[str, ...]],
                 list[tuple[OutboxMessage, ClientInfo]]] = {}
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
        asked = payload.get("purposes")
        key = (
            row.tenant_ref,
            actor if isinstance(actor, str) and actor else "system:batch",
            batch_key if isinstance(batch_key, str) else None,
            tuple(str(p) for p in asked) if isinstance(asked, list) and asked
            else (DEFAULT_PURPOSE,),
        )
        groups.setdefault(key, []).append((row, info))
    for (tenant, actor, batch_key, purposes), members in groups.items():
        try:
            counts = _ask_chunk(host, session, tenant, [info for _r, info in members],
                                actor=actor, batch_key=batch_key, queue_mail=False,
                                purposes=purposes)
        except (InputError, NotActive, NotFound) as exc:
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

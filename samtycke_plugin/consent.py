"""Consent state changes: the one domain API through which everything is recorded.

Online booking, the manual record, the consent and withdrawal links, the staff's
withdrawal, e-mail requests (single and batch), the relay's delivery outcomes and
erasure all call these functions; each builds the ledger event(s) and hands them to
:func:`samtycke_plugin.ledger.append`, the only writer of the ledger and of the status
projection.  They work in the caller's transaction and never commit.  Validation of
what a person typed (refs, notes, dates) happens before, at the edge that received it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from attrs import frozen
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hookspecs.types import Permission, StaffContext
from samtycke_plugin import hostdb, ledger, roles
from samtycke_plugin.common import check_ref, clean_note, now_utc, version_label
from samtycke_plugin.errors import Conflict, InputError, NotFound
from samtycke_plugin.i18n import N_
from samtycke_plugin.ledger import NewEvent, load_snapshot, lock_practice
from samtycke_plugin.models import (
    ConsentEvent,
    ConsentRequest,
    ConsentStateRow,
    Evidence,
    Practice,
    TextVersion,
)
from samtycke_plugin.practice_texts import change_note, current_text
from samtycke_plugin.practices import (
    get_practice,
    purpose_major,
    purpose_validity,
    require_practice,
)
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.rules import (
    VALID_STATES,
    Snapshot,
    State,
    Status,
    grant_state,
    status,
)

if TYPE_CHECKING:
    from hookspecs.host import Host


class ShownText(Protocol):
    """The text version a client was shown (a stored ``TextVersion`` fits)."""

    @property
    def id(self) -> int: ...
    @property
    def major(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def language(self) -> str: ...


@frozen(kw_only=True)
class How:
    """How, where and by whom a change was made, with its evidence."""

    channel: str
    actor: str
    method: str | None = None
    booking_ref: str | None = None
    request_id: int | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    note: str | None = None


class _Unread:
    """Marks a projection the caller has not read (it is then read under the lock)."""


UNREAD = _Unread()


@frozen(kw_only=True)
class Asked:
    """One client asked by e-mail: the request row and the text it asks about."""

    client: str
    text: ShownText
    request_id: int
    purpose: str = DEFAULT_PURPOSE


def expiry(validity_days: int | None, given_at: datetime) -> datetime | None:
    """When a consent given at ``given_at`` lapses (``None``: it does not)."""
    return given_at + timedelta(days=validity_days) if validity_days else None


def _previous(
    session: Session, tenant: str, client: str, previous: Snapshot | _Unread | None,
    purpose: str,
) -> Snapshot | None:
    if isinstance(previous, _Unread):
        lock_practice(session, tenant)  # decide and append under the practice's lock
        return load_snapshot(session, tenant, client, purpose)
    return previous


def _event(
    tenant: str, client: str, state: State, how: How, now: datetime, *,
    text: ShownText | None = None, given_at: datetime | None = None,
    expires_at: datetime | None = None, text_major: int | None = None,
    text_version_id: int | None = None, text_sha256: str | None = None,
    language: str | None = None, purpose: str = DEFAULT_PURPOSE,
    change_note_sha256: str | None = None,
) -> NewEvent:
    return NewEvent(
        purpose_key=purpose, change_note_sha256=change_note_sha256,
        tenant_ref=tenant, client_ref=client, state=state, channel=how.channel,
        method=how.method, actor=how.actor[:160], occurred_at=now, given_at=given_at,
        expires_at=expires_at,
        text_version_id=text.id if text is not None else text_version_id,
        text_major=text.major if text is not None else text_major,
        text_sha256=text.sha256 if text is not None else text_sha256,
        language=text.language if text is not None else language,
        booking_ref=how.booking_ref, request_id=how.request_id,
        ip_address=how.ip_address, user_agent=how.user_agent, note=how.note,
    )


def grant_event(
    tenant: str, client: str, text: ShownText, how: How, now: datetime, *,
    previous: Snapshot | None, validity_days: int | None, given_at: datetime | None = None,
    purpose: str = DEFAULT_PURPOSE, change_note_sha256: str | None = None,
) -> NewEvent:
    """The event of consent given to ``text``, to append: ``given``, or ``renewed`` after
    an earlier grant (``previous``); valid from ``given_at`` (or ``now``)."""
    given = given_at or now
    return _event(tenant, client, grant_state(previous), how, now, text=text, given_at=given,
                  expires_at=expiry(validity_days, given), purpose=purpose,
                  change_note_sha256=change_note_sha256)


def refuse_event(
    tenant: str, client: str, text: ShownText, how: How, now: datetime, *,
    purpose: str = DEFAULT_PURPOSE, change_note_sha256: str | None = None,
) -> NewEvent:
    """The event of the client declining the consent ``text`` asked for, to append."""
    return _event(tenant, client, State.REFUSED, how, now, text=text, purpose=purpose,
                  change_note_sha256=change_note_sha256)


def unconfirmed_event(
    tenant: str, client: str, text: ShownText, how: How, now: datetime, *,
    purpose: str = DEFAULT_PURPOSE, change_note_sha256: str | None = None,
) -> NewEvent:
    """The event of consent ticked online that the client is still to confirm (it does
    not count as given until they do), to append."""
    return _event(tenant, client, State.UNCONFIRMED, how, now, text=text, purpose=purpose,
                  change_note_sha256=change_note_sha256)


def grant(
    session: Session, tenant: str, client: str, text: ShownText, how: How, *,
    now: datetime, validity_days: int | None, given_at: datetime | None = None,
    previous: Snapshot | _Unread | None = UNREAD, head: ledger.Head | None = None,
    purpose: str = DEFAULT_PURPOSE, change_note_sha256: str | None = None,
) -> ConsentEvent:
    """Record consent given to ``text``: ``given``, or ``renewed`` when the client had
    given consent before.  ``given_at`` is when the client gave it (a manual record may
    name an earlier day); the validity runs from then.  ``previous`` and ``head``: what
    the caller read under the practice's lock in this transaction (see
    :func:`samtycke_plugin.ledger.append`).  ``change_note_sha256``: the hash of the
    "what has changed" note the client was shown with the text, if any."""
    before = _previous(session, tenant, client, previous, purpose)
    new = grant_event(tenant, client, text, how, now, previous=before,
                      validity_days=validity_days, given_at=given_at, purpose=purpose,
                      change_note_sha256=change_note_sha256)
    return ledger.append(session, [new], previous={(client, purpose): before}, head=head)[0]


def refuse(
    session: Session, tenant: str, client: str, text: ShownText, how: How, *,
    now: datetime, previous: Snapshot | _Unread | None = UNREAD,
    head: ledger.Head | None = None, purpose: str = DEFAULT_PURPOSE,
    change_note_sha256: str | None = None,
) -> ConsentEvent:
    """Record that the client declined the consent ``text`` asked for."""
    new = refuse_event(tenant, client, text, how, now, purpose=purpose,
                       change_note_sha256=change_note_sha256)
    known = {} if isinstance(previous, _Unread) else {(client, purpose): previous}
    return ledger.append(session, [new], previous=known, head=head)[0]


def latest_given(
    session: Session, tenant: str, client: str, purpose: str = DEFAULT_PURPOSE
) -> ConsentEvent | None:
    """The client's latest ``given``/``renewed`` event for a purpose: the consent a
    withdrawal ends."""
    return session.scalars(
        select(ConsentEvent)
        .where(
            ConsentEvent.tenant_ref == tenant,
            ConsentEvent.client_ref == client,
            ConsentEvent.purpose_key == purpose,
            ConsentEvent.state.in_([s.value for s in VALID_STATES]),
        )
        .order_by(ConsentEvent.seq.desc())
        .limit(1)
    ).first()


def change_note_for(
    session: Session, practice: Practice, client: str | None, purpose: str = DEFAULT_PURPOSE
) -> str | None:
    """The practitioner's note on the current change of content ("what has changed")
    when ``client`` consented to an earlier content version and is asked again, else
    ``None`` (a new client, or one who never consented, was never given the old text)."""
    if client is None:
        return None
    note = change_note(session, practice, purpose)
    if note is None:
        return None
    given = latest_given(session, practice.tenant_ref, client, purpose)
    major = purpose_major(session, practice, purpose)
    if given is None or given.text_major is None or given.text_major >= major:
        return None
    return note


def end(
    session: Session, tenant: str, client: str, how: How, *, now: datetime, by_client: bool,
    purpose: str = DEFAULT_PURPOSE,
) -> ConsentEvent:
    """End a given consent: ``withdrawn`` (the client's decision, also when staff record
    it for them) or ``revoked`` (the practice ended it).  The event names the text
    version of the consent it ends.  :class:`Conflict` when there is none to end."""
    lock_practice(session, tenant)  # two withdrawals at once: one event
    before = load_snapshot(session, tenant, client, purpose)
    if before is None or before.state not in VALID_STATES:
        raise Conflict(N_("There is no given consent to withdraw for this client."))
    given = latest_given(session, tenant, client, purpose)
    new = _event(
        tenant, client, State.WITHDRAWN if by_client else State.REVOKED, how, now,
        text_version_id=given.text_version_id if given else None,
        text_major=given.text_major if given else None,
        text_sha256=given.text_sha256 if given else None,
        language=given.language if given else None, purpose=purpose,
    )
    return ledger.append(session, [new], previous={(client, purpose): before})[0]


def request(
    session: Session, tenant: str, asked: Sequence[Asked], *, actor: str, now: datetime
) -> list[ConsentEvent]:
    """Record that clients were asked by e-mail (``requested``; a consent still given for
    the same or a newer text stays valid)."""
    return ledger.append(session, [
        _event(tenant, a.client, State.REQUESTED,
               How(channel="email", method="link", actor=actor, request_id=a.request_id),
               now, text=a.text, purpose=a.purpose)
        for a in asked
    ])


def erase(session: Session, tenant: str, client: str, how: How, *, now: datetime) -> ConsentEvent:
    """Record that the client's personal data was erased (the pseudonymous proof stays):
    an ``erased`` event for the default purpose and for every other purpose the client
    has a status for, so that no purpose's consent outlives the erasure.  Returns the
    last of them."""
    others = session.scalars(
        select(ConsentStateRow.purpose_key).where(
            ConsentStateRow.tenant_ref == tenant, ConsentStateRow.client_ref == client,
            ConsentStateRow.purpose_key != DEFAULT_PURPOSE,
            ConsentStateRow.state != State.ERASED.value,
        ).order_by(ConsentStateRow.purpose_key)
    ).all()
    events = [_event(tenant, client, State.ERASED, how, now, purpose=key)
              for key in (DEFAULT_PURPOSE, *others)]
    return ledger.append(session, events)[-1]


def delivery(
    session: Session, tenant: str, client: str, request_id: int, outcome: str
) -> None:
    """Show how the mail of the client's open request fared (``bounced``, ``failed``, …)
    on their status for each purpose the request asks for (a request from before
    purposes asks for the default one)."""
    majors = session.scalar(
        select(ConsentRequest.purpose_majors).where(
            ConsentRequest.id == request_id, ConsentRequest.tenant_ref == tenant)
    )
    asked = [str(k) for k in majors] if isinstance(majors, dict) and majors \
        else [DEFAULT_PURPOSE]
    for purpose in asked:
        ledger.note_delivery(session, tenant, client, request_id, outcome, purpose=purpose)


MANUAL_METHODS = ("paper", "verbal", "other_system", "other")


@frozen(kw_only=True)
class ClientStatus:
    status: Status
    snapshot: Snapshot | None
    current_major: int

    @property
    def valid(self) -> bool:
        """Valid consent now (the booking check and the filters agree)."""
        return self.status is Status.VALID

    @property
    def withdrawable(self) -> bool:
        """Consent is given (perhaps for an older text, or lapsed): it can be withdrawn."""
        return self.snapshot is not None and self.snapshot.state in VALID_STATES


def client_status(
    host: Host, tenant: str, client: str, purpose: str = DEFAULT_PURPOSE
) -> ClientStatus:
    with hostdb.session(host) as session:
        practice = require_practice(session, tenant)
        major = purpose_major(session, practice, purpose)
        snap = load_snapshot(session, practice.tenant_ref, check_ref("client", client), purpose)
        return ClientStatus(
            status=status(snap, major, now_utc(host)), snapshot=snap, current_major=major,
        )


def staff_actor(staff: StaffContext) -> str:
    return f"staff:{check_ref('staff', staff.ref)}"


def record_manual(
    host: Host,
    tenant: str,
    client: str,
    staff: StaffContext,
    *,
    method: str,
    given_at: datetime,
    note: str | None,
    language: str | None = None,
    purpose: str = DEFAULT_PURPOSE,
) -> ConsentEvent:
    """Record consent the client gave outside the app (paper, verbal, other system), and
    queue its receipt (with a withdrawal link and the link to the client's own page)
    when the client has a usable address."""
    from samtycke_plugin.email.receipts import queue_receipt

    roles.require(staff, Permission.RECORD_CONSENT)
    with hostdb.session(host) as session:
        practice = require_practice(session, tenant)
        client = check_ref("client", client)
        info = host.lookup_client(practice.tenant_ref, client)  # type: ignore[arg-type]
        if info is None:
            raise NotFound(N_("No such client in this practice."))
        if method not in MANUAL_METHODS:
            raise InputError("method", "must be one of " + ", ".join(MANUAL_METHODS))
        now = now_utc(host)
        if given_at.tzinfo is None:
            raise InputError("given_at", "must include a time zone")
        given_at = given_at.astimezone(UTC)
        if given_at > now + timedelta(minutes=5):
            raise InputError("given_at", "cannot be in the future")
        if given_at < now - timedelta(days=3650):
            raise InputError("given_at", "is more than ten years ago")
        note = clean_note(note)
        text = current_text(session, practice, language or info.locale, purpose)
        event = grant(
            session, practice.tenant_ref, client, text,
            How(channel="manual", method=method, actor=staff_actor(staff), note=note),
            now=now, given_at=given_at, purpose=purpose,
            validity_days=purpose_validity(session, practice, purpose),
        )
        queue_receipt(host, event)
        return event


def client_seq(session: Session, tenant: str, client: str) -> int:
    """The sequence number of the client's latest ledger event (0: none yet).  A form
    carries it, so a form posted twice (double click) can be recognised."""
    latest = session.scalar(  # the latest over the client's purposes
        select(func.max(ConsentStateRow.last_seq)).where(
            ConsentStateRow.tenant_ref == check_ref("tenant", tenant),
            ConsentStateRow.client_ref == check_ref("client", client),
        )
    )
    return int(latest or 0)


def client_changed_since(host: Host, tenant: str, client: str, seen_seq: int) -> bool:
    """Has anything been recorded for the client since the form showing ``seen_seq``
    was rendered?  Takes the practice's write lock first, so two simultaneous posts of
    one form are decided one after the other and only the first one records."""
    with hostdb.session(host) as session:
        lock_practice(session, check_ref("tenant", tenant))
        return client_seq(session, tenant, client) != seen_seq


def withdraw(
    host: Host,
    tenant: str,
    client: str,
    *,
    actor: str,
    channel: str,
    method: str | None,
    by_client: bool,
    note: str | None = None,
    request_id: int | None = None,
    ip_address: str | None = None,
    user_agent: str | None = None,
    even_if_inactive: bool = False,
    purpose: str = DEFAULT_PURPOSE,
) -> ConsentEvent:
    """End a consent. ``by_client`` → ``withdrawn`` (the client's decision, also when
    staff record it for them); otherwise ``revoked`` (the practice ended it).
    ``even_if_inactive``: the client withdraws through a link, which deactivating the
    app must not stop (withdrawal is possible at any time)."""
    with hostdb.session(host) as session:
        found = get_practice(session, tenant) if even_if_inactive else None
        practice = found or require_practice(session, tenant)
        return end(
            session, practice.tenant_ref, check_ref("client", client),
            How(channel=channel, method=method, actor=actor, note=clean_note(note),
                        request_id=request_id, ip_address=ip_address, user_agent=user_agent),
            now=now_utc(host), by_client=by_client, purpose=purpose,
        )


@frozen(kw_only=True)
class HistoryEntry:
    seq: int
    state: str
    occurred_at: datetime
    given_at: datetime | None
    channel: str
    method: str | None
    actor: str
    text_version: str
    text_sha256: str | None
    language: str | None
    booking_ref: str | None
    ip_prefix: str | None
    user_agent: str | None
    note: str | None
    row_hash: str
    #: The exact text version shown (for a link to its full text), if any.
    text_version_id: int | None = None
    #: The purpose the event concerns.
    purpose: str = DEFAULT_PURPOSE

    @property
    def consents(self) -> bool:
        """The event gives consent (``given`` or ``renewed``)."""
        return State(self.state) in VALID_STATES


def history(host: Host, tenant: str, client: str) -> list[HistoryEntry]:
    """Every event of one client, oldest first, with text version and evidence."""
    with hostdb.session(host) as session:
        practice = get_practice(session, tenant)
        if practice is None:
            raise NotFound(N_("No such client in this practice."))
        client = check_ref("client", client)
        rows = session.execute(
            select(ConsentEvent, TextVersion.minor, Evidence)
            .outerjoin(TextVersion, TextVersion.id == ConsentEvent.text_version_id)
            .outerjoin(Evidence, Evidence.event_id == ConsentEvent.id)
            .where(ConsentEvent.tenant_ref == practice.tenant_ref,
                   ConsentEvent.client_ref == client)
            .order_by(ConsentEvent.seq)
        ).all()
        return [
            HistoryEntry(
                seq=ev.seq, state=ev.state, occurred_at=ev.occurred_at, given_at=ev.given_at,
                channel=ev.channel, method=ev.method, actor=ev.actor,
                text_version=version_label(ev.text_major, minor), text_sha256=ev.text_sha256,
                language=ev.language, booking_ref=ev.booking_ref,
                ip_prefix=evd.ip_prefix if evd else None,
                user_agent=evd.user_agent if evd else None,
                note=evd.note if evd else None, row_hash=ev.row_hash,
                text_version_id=ev.text_version_id, purpose=ev.purpose_key,
            )
            for ev, minor, evd in rows
        ]

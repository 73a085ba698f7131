"""Consent operations: activation, texts, booking check and record, manual
recording, withdrawal, status, badges, list filters and history.

Every function works in the host's session (``host.session()``) and never
commits: the caller's unit of work (the host's booking transaction, a page
handler, the CLI) commits or rolls back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from attrs import frozen
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hookspecs.types import (
    BookingFormContext,
    BookingSubmission,
    FilterClause,
    FormFragment,
    ListFilter,
    ProfilePanel,
    RowBadge,
    StaffContext,
    Veto,
)
from samtycke_plugin import consent, status_text
from samtycke_plugin.errors import Conflict, InputError, NotActive, NotFound, PermissionDenied
from samtycke_plugin.i18n import N_, lang, t
from samtycke_plugin.inputs import check_text, whole_number
from samtycke_plugin.ledger import Head, load_snapshot, lock_head, lock_practice, snapshot_of
from samtycke_plugin.models import (
    GENESIS_HASH,
    ConsentEvent,
    ConsentStateRow,
    Evidence,
    Practice,
    TextVersion,
)
from samtycke_plugin.render import render, trusted_html
from samtycke_plugin.rules import (
    VALID_STATES,
    GateOutcome,
    Snapshot,
    Status,
    gate,
    should_ask,
    status,
)
from samtycke_plugin.settings import (
    PracticeSettings,
    structure_settings,
    unstructure_settings,
)
from samtycke_plugin.text import (
    LANGUAGES,
    MAX_TEXT_LENGTH,
    DiffLine,
    default_text,
    diff,
    normalise_body,
    render_html,
    sha256,
)

if TYPE_CHECKING:
    from hookspecs.host import Host

APP_KEY = "samtycke"
MOUNT_PREFIX = "/apps/samtycke"
FIELD_CONSENT = "samtycke_consent"
FIELD_TEXT = "samtycke_text"
FILTER_VALID = "samtycke.valid"
FILTER_NOT_VALID = "samtycke.not_valid"
MANUAL_METHODS = ("paper", "verbal", "other_system", "other")
MAX_NOTE = 2000

TEXT_CHANGED_MEANWHILE = N_(
    "The consent text was changed by someone else meanwhile. "
    "Reload the page, check the current text and make your change again."
)

_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")


# -- small helpers ----------------------------------------------------------------------


def check_ref(field: str, value: object) -> str:
    """A tenant/client/booking reference: a short string of safe characters."""
    if not isinstance(value, str) or not _REF.fullmatch(value):  # "$" would allow "ref\n"
        raise InputError(
            field, "must be 1-64 letters, digits or . _ : @ - (got " + repr(value)[:80] + ")"
        )
    return value


def now_utc(host: Host) -> datetime:
    now = host.now()
    if now.tzinfo is None:
        raise InputError("host.now", "must return a timezone-aware datetime")
    return now.astimezone(UTC)


def storable(field: str, value: str) -> str:
    """Refuse text no database can store: lone surrogates (a host's JSON API can hand
    them over, e.g. ``json.loads('"\\ud800"')``) fail inside the driver otherwise."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            field, "contains characters that cannot be stored (a broken encoding); retype it"
        ) from None
    return value


def clean_note(note: str | None, field: str = "note") -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise InputError(field, "must be text")
    # NUL, other control characters and a broken encoding are refused, not removed: the
    # note is evidence, kept as the practitioner wrote it (only CR of CRLF is dropped).
    note = check_text(field, note).replace("\r", "").strip()
    if len(note) > MAX_NOTE:
        raise InputError(field, f"is too long ({len(note)} characters; at most {MAX_NOTE})")
    return note or None


def version_label(major: int | None, minor: int | None = None) -> str:
    if major is None:
        return ""
    return f"{major}.{minor}" if minor is not None else f"{major}"


def _dialect_insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


# -- practices ---------------------------------------------------------------------------


def get_practice(session: Session, tenant: str) -> Practice | None:
    return session.get(Practice, check_ref("tenant", tenant))


def require_practice(session: Session, tenant: str) -> Practice:
    """The practice, which must have activated the app (else :class:`NotActive`)."""
    practice = get_practice(session, tenant)
    if practice is None or not practice.active:
        raise NotActive(
            N_("Samtycke is not active for this practice. Activate it in the app menu first.")
        )
    return practice


def settings_of(practice: Practice) -> PracticeSettings:
    return settings_from(practice.settings)


def settings_from(data: Mapping[str, object]) -> PracticeSettings:
    """Structured settings from the stored JSON value (:class:`SettingsError` names what
    is wrong with it)."""
    return structure_settings(data)


def is_operational(practice: Practice | None) -> bool:
    """Active and through the activation wizard: only then are clients asked."""
    return practice is not None and practice.active and practice.setup_complete


def activate(host: Host, tenant: str, settings: Mapping[str, object]) -> Practice:
    """Activate (or reactivate) the app for a practice. Idempotent.

    A first activation stores the settings (defaults if empty) and publishes the
    default texts (Swedish and English, version 1.0).  Reactivation resumes with
    everything kept; non-empty ``settings`` replace the stored ones.
    """
    tenant = check_ref("tenant", tenant)
    parsed = structure_settings(settings) if settings else None
    session = host.session()
    now = now_utc(host)
    info = host.practice_info(tenant)  # type: ignore[arg-type]
    default_language = lang(info.locale if info else None)
    inserted = session.execute(
        _dialect_insert(session)(Practice)
        .values(
            tenant_ref=tenant,
            active=True,
            setup_complete=parsed is not None,
            settings=unstructure_settings(parsed or PracticeSettings()),
            current_major=1,
            default_language=default_language,
            head_seq=0,
            head_hash=GENESIS_HASH,
            activated_at=now,
            deactivated_at=None,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["tenant_ref"])
        .returning(Practice.tenant_ref)
    ).scalar_one_or_none()
    if inserted is not None:
        name = info.name if info else tenant
        contact = ", ".join(x for x in (info.email, info.phone) if x) if info else ""
        for language in LANGUAGES:
            body = normalise_body(
                default_text(language, practice_name=name, practice_contact=contact or name)
            )
            session.add(
                TextVersion(
                    tenant_ref=tenant, language=language, major=1, minor=0, body=body,
                    html=render_html(body), sha256=sha256(body), change_kind="initial",
                    reason=None, created_by="system", created_at=now,
                )
            )
        session.flush()
    else:
        values: dict[str, Any] = {"active": True, "deactivated_at": None, "updated_at": now}
        if parsed is not None:
            values |= {"settings": unstructure_settings(parsed), "setup_complete": True}
        session.execute(update(Practice).where(Practice.tenant_ref == tenant).values(**values))
    practice = session.get(Practice, tenant, populate_existing=True)
    assert practice is not None
    return practice


def complete_setup(host: Host, tenant: str, settings: Mapping[str, object]) -> Practice:
    """The wizard's last step: store the chosen settings and start asking clients."""
    parsed = structure_settings(settings)
    practice = require_practice(host.session(), tenant)
    practice.settings = unstructure_settings(parsed)
    practice.setup_complete = True
    practice.updated_at = now_utc(host)
    host.session().flush()
    return practice


def deactivate(host: Host, tenant: str) -> None:
    """Deactivate for a practice: nothing is deleted; reactivation resumes."""
    session = host.session()
    now = now_utc(host)
    session.execute(
        update(Practice)
        .where(Practice.tenant_ref == check_ref("tenant", tenant))
        .values(active=False, deactivated_at=now, updated_at=now)
    )


# -- texts -----------------------------------------------------------------------------------


def current_text(session: Session, practice: Practice, language: str | None) -> TextVersion:
    """The newest version of the practice's current content in ``language`` (with fallbacks)."""
    wanted = lang(language)
    rows = session.scalars(
        select(TextVersion)
        .where(
            TextVersion.tenant_ref == practice.tenant_ref,
            TextVersion.major == practice.current_major,
        )
        .order_by(TextVersion.minor.desc())
    ).all()
    for choice in (wanted, practice.default_language):
        for row in rows:
            if row.language == choice:
                return row
    if not rows:
        raise NotFound(N_("This practice has no consent text yet."))
    return rows[0]


def text_languages(session: Session, practice: Practice) -> list[str]:
    return sorted(
        session.scalars(
            select(TextVersion.language)
            .where(
                TextVersion.tenant_ref == practice.tenant_ref,
                TextVersion.major == practice.current_major,
            )
            .distinct()
        ).all()
    )


def text_by_id(session: Session, tenant: str, text_id: int) -> TextVersion:
    """One text version of this practice (another practice's id: :class:`NotFound`)."""
    text = session.get(TextVersion, text_id)
    if text is None or text.tenant_ref != check_ref("tenant", tenant):
        raise NotFound(N_("No such text version in this practice."))
    return text


def text_versions(session: Session, tenant: str) -> list[TextVersion]:
    """Every version of the practice's consent text, newest first."""
    return list(
        session.scalars(
            select(TextVersion)
            .where(TextVersion.tenant_ref == check_ref("tenant", tenant))
            .order_by(
                TextVersion.major.desc(), TextVersion.minor.desc(), TextVersion.language
            )
        )
    )


def current_texts(session: Session, practice: Practice) -> dict[str, TextVersion]:
    """The newest version of the current content in each language that has one."""
    rows = session.scalars(
        select(TextVersion)
        .where(
            TextVersion.tenant_ref == practice.tenant_ref,
            TextVersion.major == practice.current_major,
        )
        .order_by(TextVersion.language, TextVersion.minor.desc())
    ).all()
    found: dict[str, TextVersion] = {}
    for row in rows:
        found.setdefault(row.language, row)
    return found


def _valid_condition(tenant: str, current_major: int, now: datetime) -> ColumnElement[bool]:
    return and_(_S.tenant_ref == tenant, valid_condition(current_major, now))


def count_valid(session: Session, practice: Practice, now: datetime) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(ConsentStateRow)
            .where(_valid_condition(practice.tenant_ref, practice.current_major, now))
        )
        or 0
    )


@frozen(kw_only=True)
class TextPreview:
    """What a text change would do, shown before saving."""

    language: str
    kind: str  # "correction" or "content"
    old: TextVersion
    new_major: int
    new_minor: int
    diff: list[DiffLine]
    #: Clients whose consent would become outdated (0 for a correction).
    affected: int
    unchanged: bool


def _validate_body(body: object, language: str) -> str:
    if not isinstance(body, str):
        raise InputError(f"text_{language}", "must be text")
    body = normalise_body(storable(f"text_{language}", body))
    if len(body.strip()) < 20:
        raise InputError(f"text_{language}", "is too short to be a consent text")
    if len(body) > MAX_TEXT_LENGTH:
        raise InputError(
            f"text_{language}", f"is too long ({len(body)} characters; at most {MAX_TEXT_LENGTH})"
        )
    return body


def _check_kind(kind: str) -> str:
    if kind not in ("correction", "content"):
        raise InputError("kind", "must be 'correction' or 'content'")
    return kind


def preview_text_change(
    host: Host, tenant: str, *, language: str, body: str, kind: str
) -> TextPreview:
    """Diff and number of clients who would need to consent again, before saving."""
    session = host.session()
    practice = require_practice(session, tenant)
    kind = _check_kind(kind)
    language = lang(language)
    new_body = _validate_body(body, language)
    old = current_text(session, practice, language)
    if kind == "content":
        new_major, new_minor = practice.current_major + 1, 0
        affected = count_valid(session, practice, now_utc(host))
    else:
        new_major, new_minor = practice.current_major, _next_minor(session, practice, language)
        affected = 0
    return TextPreview(
        language=language, kind=kind, old=old, new_major=new_major, new_minor=new_minor,
        diff=diff(old.body, new_body), affected=affected, unchanged=old.body == new_body,
    )


def _next_minor(session: Session, practice: Practice, language: str) -> int:
    current = session.scalar(
        select(func.max(TextVersion.minor)).where(
            TextVersion.tenant_ref == practice.tenant_ref,
            TextVersion.major == practice.current_major,
            TextVersion.language == language,
        )
    )
    return 0 if current is None else int(current) + 1


def publish_text(
    host: Host,
    tenant: str,
    *,
    bodies: Mapping[str, str],
    kind: str,
    reason: str | None,
    actor: str,
    expected_major: int,
) -> list[TextVersion]:
    """Save an edited text.

    ``kind="correction"``: a new minor version per given language; existing consents
    stay valid.  ``kind="content"``: a new major version (the given languages only);
    every earlier consent is outdated at once by changing one row (the practice's
    current major), and clients are asked again at their next online booking.
    ``expected_major`` is the major the editor saw: if someone else changed the text
    meanwhile, :class:`Conflict` is raised and nothing is saved.
    """
    session = host.session()
    kind = _check_kind(kind)
    if not bodies:
        raise InputError("text", "give the text in at least one language")
    clean = {lang(k): _validate_body(v, lang(k)) for k, v in bodies.items()}
    reason = clean_note(reason, "reason")
    now = now_utc(host)
    practice = require_practice(session, tenant)
    lock_practice(session, practice.tenant_ref)  # concurrent edits: no duplicate minor
    if kind == "content":
        new_major = expected_major + 1
        moved = session.execute(
            update(Practice)
            .where(
                Practice.tenant_ref == practice.tenant_ref,
                Practice.current_major == expected_major,
            )
            .values(current_major=new_major, updated_at=now)
        ).rowcount  # type: ignore[attr-defined]
        if moved != 1:
            raise Conflict(TEXT_CHANGED_MEANWHILE)
        session.refresh(practice)
        versions = [
            TextVersion(
                tenant_ref=practice.tenant_ref, language=language, major=new_major, minor=0,
                body=body, html=render_html(body), sha256=sha256(body), change_kind="content",
                reason=reason, created_by=actor, created_at=now,
            )
            for language, body in sorted(clean.items())
        ]
    else:
        if practice.current_major != expected_major:
            raise Conflict(TEXT_CHANGED_MEANWHILE)
        versions = []
        for language, body in sorted(clean.items()):
            versions.append(
                TextVersion(
                    tenant_ref=practice.tenant_ref, language=language, major=practice.current_major,
                    minor=_next_minor(session, practice, language), body=body,
                    html=render_html(body), sha256=sha256(body), change_kind="correction",
                    reason=reason, created_by=actor, created_at=now,
                )
            )
    session.add_all(versions)
    session.flush()
    return versions


# -- status -----------------------------------------------------------------------------------


@frozen(kw_only=True)
class ClientStatus:
    status: Status
    snapshot: Snapshot | None
    current_major: int


def client_status(host: Host, tenant: str, client: str) -> ClientStatus:
    session = host.session()
    practice = require_practice(session, tenant)
    snap = load_snapshot(session, practice.tenant_ref, check_ref("client", client))
    return ClientStatus(
        status=status(snap, practice.current_major, now_utc(host)),
        snapshot=snap,
        current_major=practice.current_major,
    )


# -- online booking ------------------------------------------------------------------------------


def form_fragment(host: Host, form: BookingFormContext) -> FormFragment | None:
    """The consent block of the booking form, when this client is to be asked."""
    session = host.session()
    practice = get_practice(session, form.tenant)
    if not is_operational(practice):
        return None
    assert practice is not None
    settings = settings_of(practice)
    now = now_utc(host)
    snap = (
        load_snapshot(session, practice.tenant_ref, check_ref("client", form.client))
        if form.client
        else None
    )
    current = status(snap, practice.current_major, now)
    if not should_ask(settings, current, is_new_client=form.client is None):
        return None
    text = current_text(session, practice, form.locale)
    html = render(
        "form_fragment.html", form.locale,
        text_html=trusted_html(text.html), text_id=text.id, text_lang=text.language,
        required=settings.require_consent_for_online_booking,
        field_consent=FIELD_CONSENT, field_text=FIELD_TEXT,
        outdated=current is Status.OUTDATED,
    )
    return FormFragment(
        key="samtycke.consent", html=html, field_names=(FIELD_CONSENT, FIELD_TEXT),
        required=settings.require_consent_for_online_booking, order=900,
    )


_P = Practice.__table__.c
_S = ConsentStateRow.__table__.c
_T = TextVersion.__table__.c

#: The booking gate and the profile panel in one indexed query, built once: the
#: practice's switches and the client's projection row (primary key lookup; may be absent).
_GATE_COLUMNS = (
    _P.active, _P.setup_complete, _P.current_major, _P.settings,
    _S.state, _S.text_major, _S.expires_at, _S.since, _S.delivery,
)
# Join conditions on the parameters rather than on the practice's columns: the same
# rows, and less for PostgreSQL's planner to consider (it plans on every request).
_GATE_FROM = Practice.__table__.outerjoin(
    ConsentStateRow.__table__,
    and_(_S.tenant_ref == bindparam("tenant"), _S.client_ref == bindparam("client")),
)
_GATE = select(*_GATE_COLUMNS).select_from(_GATE_FROM).where(_P.tenant_ref == bindparam("tenant"))
#: The same with the text version the booking form showed (when one was posted back).
_GATE_SHOWN = (
    select(
        *_GATE_COLUMNS,
        _T.id.label("shown_id"), _T.major.label("shown_major"),
        _T.sha256.label("shown_sha256"), _T.language.label("shown_language"),
    )
    .select_from(
        _GATE_FROM.outerjoin(
            TextVersion.__table__,
            and_(_T.id == bindparam("text_id"), _T.tenant_ref == bindparam("tenant")),
        )
    )
    .where(_P.tenant_ref == bindparam("tenant"))
)
_PRACTICE_SWITCHES = select(_P.active, _P.current_major).where(
    _P.tenant_ref == bindparam("tenant")
)
_VALID_VALUES = sorted(s.value for s in VALID_STATES)


def _gate_row(session: Session, tenant: str, client: str | None, text_id: int | None) -> Any:
    statement, params = _gate_step(tenant, client, text_id)
    return session.execute(statement, params).one_or_none()


@frozen(kw_only=True)
class _ShownText:
    """The text version the booking form showed (posted back in ``samtycke_text``)."""

    id: int
    major: int
    sha256: str
    language: str


@frozen(kw_only=True)
class _Decision:
    outcome: GateOutcome
    previous: Snapshot | None = None
    settings: PracticeSettings | None = None
    #: The gate row, for the text the form showed (read only when consent is recorded).
    row: Any = None

    def shown_text(self) -> _ShownText | None:
        """The text version the form showed, as the gate read it, or ``None``."""
        row = self.row
        if getattr(row, "shown_id", None) is None:
            return None
        return _ShownText(id=row.shown_id, major=row.shown_major, sha256=row.shown_sha256,
                          language=row.shown_language)


def _shown_text_id(raw: object) -> int | None:
    return whole_number(raw)  # ASCII digits only: "²" and "٣" are isdigit() too


def _gate_step(
    tenant: str, client: str | None, text_id: int | None
) -> tuple[Select[Any], dict[str, Any]]:
    if text_id is None:
        return _GATE, {"tenant": tenant, "client": client}
    return _GATE_SHOWN, {"tenant": tenant, "client": client, "text_id": text_id}


def _decide(
    host: Host, submission: BookingSubmission, client: str | None, *, locked: bool = False
) -> tuple[_Decision, Head | None]:
    """The gate's decision; with ``locked``, taken under the practice's chain-head lock
    (the record step: a simultaneous submit or text change cannot slip in between),
    and the head read with it."""
    tenant = check_ref("tenant", submission.tenant)
    client = check_ref("client", client) if client else None
    if submission.channel != "online":
        return _Decision(outcome=GateOutcome.ACCEPT), None
    session = host.session()
    head = lock_head(session, tenant) if locked else None
    row = _gate_row(session, tenant, client, _shown_text_id(submission.fields.get(FIELD_TEXT)))
    return _decide_on(host, submission, client, row), head


def _decide_on(
    host: Host, submission: BookingSubmission, client: str | None, row: Any
) -> _Decision:
    if row is None or not (row.active and row.setup_complete):
        return _Decision(outcome=GateOutcome.ACCEPT)
    settings = settings_from(row.settings)
    snap = snapshot_of(row) if client and row.state is not None else None
    current = status(snap, row.current_major, now_utc(host))
    ticked = submission.fields.get(FIELD_CONSENT, "") in ("yes", "on", "true", "1")
    outcome = gate(
        settings, current, is_new_client=submission.is_new_client or client is None,
        ticked=ticked,
        shown_major=row.shown_major if getattr(row, "shown_id", None) is not None else None,
        current_major=row.current_major,
    )
    if outcome in (GateOutcome.ACCEPT_GIVEN, GateOutcome.ACCEPT_REFUSED):
        return _Decision(outcome=outcome, previous=snap, settings=settings, row=row)
    return _Decision(outcome=outcome)


def check_booking(host: Host, submission: BookingSubmission) -> list[Veto]:
    """Phase 1: vetoes for a booking, without writing anything."""
    decision, _ = _decide(host, submission, submission.client)
    if decision.outcome is GateOutcome.VETO_REQUIRED:
        return [
            Veto(
                key="samtycke.consent_required", field_name=FIELD_CONSENT, retryable=False,
                message=t(
                    submission.locale,
                    "To book online you need to give your consent: read the text about how "
                    "your personal data is handled and tick the box.",
                ),
            )
        ]
    if decision.outcome is GateOutcome.VETO_TEXT_CHANGED:
        return [
            Veto(
                key="samtycke.text_changed", field_name=FIELD_CONSENT, retryable=True,
                message=t(
                    submission.locale,
                    "The consent text was updated while you were booking. Please read the "
                    "new text and tick the box again.",
                ),
            )
        ]
    return []


def record_booking(
    host: Host, submission: BookingSubmission, booking: str, client: str
) -> ConsentEvent | None:
    """Phase 2: record the consent decision of an accepted online booking.

    Runs inside the host's transaction.  The decision is re-made with the now
    known client, under the practice's lock, so a race (text changed between check and
    record) raises :class:`Conflict` and the host's transaction rolls back.  Returns the
    new event, or ``None`` when nothing was recorded.
    """
    booking = check_ref("booking", booking)
    client = check_ref("client", client)
    if submission.channel != "online":
        return None
    tenant = check_ref("tenant", submission.tenant)
    decision, head = _decide(host, submission, client, locked=True)
    outcome = decision.outcome
    if outcome in (GateOutcome.VETO_REQUIRED, GateOutcome.VETO_TEXT_CHANGED):
        raise Conflict(
            N_("The booking no longer passes the consent check; ask the client to try again.")
        )
    if outcome is GateOutcome.ACCEPT:
        return None
    settings = decision.settings
    assert settings is not None
    how = consent.How(
        channel="online_booking", method="checkbox", actor="client", booking_ref=booking,
        ip_address=submission.ip_address, user_agent=submission.user_agent,
    )
    if outcome is GateOutcome.ACCEPT_GIVEN:
        shown = decision.shown_text()
        assert shown is not None
        return consent.grant(
            host.session(), tenant, client, shown, how, now=now_utc(host),
            validity_days=settings.validity_days, previous=decision.previous, head=head,
        )
    practice = require_practice(host.session(), submission.tenant)
    text = current_text(host.session(), practice, submission.locale)
    return consent.refuse(host.session(), tenant, client, text, how, now=now_utc(host),
                          previous=decision.previous, head=head)


# -- manual recording and withdrawal ---------------------------------------------------------------


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
) -> ConsentEvent:
    """Record consent the client gave outside the app (paper, verbal, other system)."""
    if not staff.can_record_consent:
        raise PermissionDenied(
            N_("You do not have permission to record consent. Ask the practice owner.")
        )
    session = host.session()
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
    text = current_text(session, practice, language or info.locale)
    return consent.grant(
        session, practice.tenant_ref, client, text,
        consent.How(channel="manual", method=method, actor=staff_actor(staff), note=note),
        now=now, given_at=given_at, validity_days=settings_of(practice).validity_days,
    )


def client_seq(session: Session, tenant: str, client: str) -> int:
    """The sequence number of the client's latest ledger event (0: none yet).  A form
    carries it, so a form posted twice (double click) can be recognised."""
    latest = session.scalar(
        select(ConsentStateRow.last_seq).where(
            ConsentStateRow.tenant_ref == check_ref("tenant", tenant),
            ConsentStateRow.client_ref == check_ref("client", client),
        )
    )
    return int(latest or 0)


def client_changed_since(host: Host, tenant: str, client: str, seen_seq: int) -> bool:
    """Has anything been recorded for the client since the form showing ``seen_seq``
    was rendered?  Takes the practice's write lock first, so two simultaneous posts of
    one form are decided one after the other and only the first one records."""
    session = host.session()
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
) -> ConsentEvent:
    """End a consent. ``by_client`` → ``withdrawn`` (the client's decision, also when
    staff record it for them); otherwise ``revoked`` (the practice ended it).
    ``even_if_inactive``: the client withdraws through a link, which deactivating the
    app must not stop (withdrawal is possible at any time)."""
    session = host.session()
    found = get_practice(session, tenant) if even_if_inactive else None
    practice = found or require_practice(session, tenant)
    return consent.end(
        session, practice.tenant_ref, check_ref("client", client),
        consent.How(channel=channel, method=method, actor=actor, note=clean_note(note),
                    request_id=request_id, ip_address=ip_address, user_agent=user_agent),
        now=now_utc(host), by_client=by_client,
    )


# -- practitioner views ------------------------------------------------------------------------


def profile_panel(
    host: Host, tenant: str, client: str, staff: StaffContext, locale: str
) -> ProfilePanel | None:
    """The badge, its reason and the actions for a client profile."""
    row = _gate_row(host.session(), check_ref("tenant", tenant), check_ref("client", client), None)
    if row is None or not row.active:
        return None
    language = lang(locale)
    snap = snapshot_of(row) if row.state is not None else None
    current = status(snap, row.current_major, now_utc(host))
    given = (
        t(language, "Given %(date)s.", date=snap.since.strftime("%Y-%m-%d"))
        if snap is not None and current in (Status.VALID, Status.OUTDATED, Status.EXPIRED)
        else None
    )
    html = render(
        "profile_panel.html", language,
        status=current.value, tone=status_text.tone(current), icon=status_text.icon(current),
        label=status_text.label(current, language), reason=status_text.reason(current, language),
        given=given, client=client, prefix=MOUNT_PREFIX,
        setup_complete=bool(row.setup_complete),
        withdrawable=snap is not None and snap.state in VALID_STATES,
    )
    return ProfilePanel(key="samtycke.status", tone=status_text.tone(current),
                        label=status_text.label(current, language), html=html)


def list_filters(locale: str) -> list[ListFilter]:
    return [
        ListFilter(key=FILTER_VALID, label=t(locale, "Clients with valid consent")),
        ListFilter(key=FILTER_NOT_VALID, label=t(locale, "Clients without valid consent")),
    ]


def filter_clause(
    host: Host, tenant: str, filter_key: str, client_ref_column: ColumnElement[str]
) -> FilterClause | None:
    """``EXISTS``/``NOT EXISTS`` on the projection, correlated with the host's client column."""
    if filter_key not in (FILTER_VALID, FILTER_NOT_VALID):
        return None
    tenant = check_ref("tenant", tenant)
    row = host.session().execute(_PRACTICE_SWITCHES, {"tenant": tenant}).one_or_none()
    if row is None or not row.active:
        raise NotActive(
            N_("Samtycke is not active for this practice. Activate it in the app menu first.")
        )
    valid = exists().where(
        _S.tenant_ref == tenant,
        valid_condition(row.current_major, now_utc(host)),
        _S.client_ref == client_ref_column,
    )
    return FilterClause(key=filter_key, clause=valid if filter_key == FILTER_VALID else ~valid)


def valid_condition(current_major: int, now: datetime) -> ColumnElement[bool]:
    """SQL for "this projection row is valid consent" (:func:`rules.status` is
    ``VALID``), on Core columns of ``samtycke_consent_state``: the list filter and the
    batch request select with it."""
    return and_(
        _S.state.in_(_VALID_VALUES),
        _S.text_major == current_major,
        or_(_S.expires_at.is_(None), _S.expires_at > now),
    )


def row_badges(host: Host, tenant: str, clients: Sequence[str], locale: str) -> list[RowBadge]:
    """Badges for a page of clients: one query."""
    session = host.session()
    practice = get_practice(session, tenant)
    if practice is None or not practice.active:
        return []
    if isinstance(clients, str | bytes) or not isinstance(clients, Iterable):
        raise InputError("clients", "must be a list of client references")
    refs = [check_ref("client", c) for c in clients]
    rows = {
        r.client_ref: snapshot_of(r)
        for r in session.execute(
            select(
                ConsentStateRow.client_ref,
                ConsentStateRow.state,
                ConsentStateRow.text_major,
                ConsentStateRow.expires_at,
                ConsentStateRow.since,
                ConsentStateRow.delivery,
            ).where(
                ConsentStateRow.tenant_ref == practice.tenant_ref,
                ConsentStateRow.client_ref.in_(refs),
            )
        )
    }
    now = now_utc(host)
    badges = []
    for ref in refs:
        current = status(rows.get(ref), practice.current_major, now)
        label = status_text.label(current, locale)
        badges.append(
            RowBadge(
                key="samtycke.status", client=ref, tone=status_text.tone(current), label=label,  # type: ignore[arg-type]
                html=render(
                    "badge.html", locale, tone=status_text.tone(current),
                    icon=status_text.icon(current), label=label, status=current.value,
                ),
            )
        )
    return badges


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


def history(host: Host, tenant: str, client: str) -> list[HistoryEntry]:
    """Every event of one client, oldest first, with text version and evidence."""
    session = host.session()
    practice = get_practice(session, tenant)
    if practice is None:
        raise NotFound(N_("No such client in this practice."))
    client = check_ref("client", client)
    rows = session.execute(
        select(ConsentEvent, TextVersion.minor, Evidence)
        .outerjoin(TextVersion, TextVersion.id == ConsentEvent.text_version_id)
        .outerjoin(Evidence, Evidence.event_id == ConsentEvent.id)
        .where(ConsentEvent.tenant_ref == practice.tenant_ref, ConsentEvent.client_ref == client)
        .order_by(ConsentEvent.seq)
    ).all()
    return [
        HistoryEntry(
            seq=ev.seq, state=ev.state, occurred_at=ev.occurred_at, given_at=ev.given_at,
            channel=ev.channel, method=ev.method, actor=ev.actor,
            text_version=version_label(ev.text_major, minor), text_sha256=ev.text_sha256,
            language=ev.language, booking_ref=ev.booking_ref,
            ip_prefix=evd.ip_prefix if evd else None, user_agent=evd.user_agent if evd else None,
            note=evd.note if evd else None, row_hash=ev.row_hash,
            text_version_id=ev.text_version_id,
        )
        for ev, minor, evd in rows
    ]


__all__ = [
    "APP_KEY",
    "MOUNT_PREFIX",
    "ClientStatus",
    "HistoryEntry",
    "TextPreview",
    "activate",
    "check_booking",
    "client_status",
    "complete_setup",
    "deactivate",
    "filter_clause",
    "form_fragment",
    "history",
    "list_filters",
    "preview_text_change",
    "profile_panel",
    "publish_text",
    "record_booking",
    "record_manual",
    "row_badges",
    "withdraw",
]

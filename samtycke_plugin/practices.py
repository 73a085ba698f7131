"""A practice in the app: activation, settings, and its consent texts (publishing a
correction or a change of content, with the preview the practitioner sees first).

Every function works in the session :func:`samtycke_plugin.hostdb.session` gives (a
hook's, in the host's transaction, or a page's unit of work) and never commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from attrs import frozen
from sqlalchemy import (
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from samtycke_plugin import hostdb
from samtycke_plugin.common import _dialect_insert, check_ref, clean_note, now_utc, storable
from samtycke_plugin.errors import Conflict, InputError, NotActive, NotFound
from samtycke_plugin.i18n import N_, lang
from samtycke_plugin.ledger import lock_practice
from samtycke_plugin.models import (
    GENESIS_HASH,
    ConsentStateRow,
    Practice,
    Purpose,
    TextVersion,
)
from samtycke_plugin.purposes import DEFAULT_PURPOSE, create_default
from samtycke_plugin.settings import (
    PracticeSettings,
    structure_settings,
    unstructure_settings,
)
from samtycke_plugin.store import _valid_condition
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


TEXT_CHANGED_MEANWHILE = N_(
    "The consent text was changed by someone else meanwhile. "
    "Reload the page, check the current text and make your change again."
)


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
    with hostdb.in_host_transaction(host, write=True) as session:
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
            stored = parsed or PracticeSettings()
            create_default(
                session, tenant, required=stored.require_consent_for_online_booking,
                validity_days=stored.validity_days, current_major=1, created_at=now,
            )
            name = info.name if info else tenant
            contact = ", ".join(x for x in (info.email, info.phone) if x) if info else ""
            for language in LANGUAGES:
                body = normalise_body(
                    default_text(language, practice_name=name, practice_contact=contact or name)
                )
                session.add(
                    TextVersion(
                        tenant_ref=tenant, purpose_key=DEFAULT_PURPOSE, language=language,
                        major=1, minor=0, body=body,
                        html=render_html(body), sha256=sha256(body), change_kind="initial",
                        reason=None, created_by="system", created_at=now,
                    )
                )
            session.flush()
        else:
            values: dict[str, Any] = {"active": True, "deactivated_at": None, "updated_at": now}
            if parsed is not None:
                values |= {"settings": unstructure_settings(parsed), "setup_complete": True}
                _sync_default_purpose(session, tenant, parsed)
            session.execute(update(Practice).where(Practice.tenant_ref == tenant).values(**values))
        practice = session.get(Practice, tenant, populate_existing=True)
        assert practice is not None
        return practice


def complete_setup(host: Host, tenant: str, settings: Mapping[str, object]) -> Practice:
    """The wizard's last step: store the chosen settings and start asking clients."""
    parsed = structure_settings(settings)
    with hostdb.session(host) as session:
        practice = require_practice(session, tenant)
        practice.settings = unstructure_settings(parsed)
        practice.setup_complete = True
        practice.updated_at = now_utc(host)
        _sync_default_purpose(session, practice.tenant_ref, parsed)
        session.flush()
        return practice


def _sync_default_purpose(session: Session, tenant: str, settings: PracticeSettings) -> None:
    # The default purpose's requirement and lifetime are chosen in the wizard's step 3
    # and saved with the settings; the purpose row is what every reader reads, so this
    # is where the wizard's choice reaches it.
    session.execute(
        update(Purpose)
        .where(Purpose.tenant_ref == tenant, Purpose.key == DEFAULT_PURPOSE)
        .values(required=settings.require_consent_for_online_booking,
                validity_days=settings.validity_days)
    )


def deactivate(host: Host, tenant: str) -> None:
    """Deactivate for a practice: nothing is deleted; reactivation resumes."""
    with hostdb.in_host_transaction(host, write=True) as session:
        now = now_utc(host)
        session.execute(
            update(Practice)
            .where(Practice.tenant_ref == check_ref("tenant", tenant))
            .values(active=False, deactivated_at=now, updated_at=now)
        )


def _purpose_row(session: Session, practice: Practice, purpose: str) -> Purpose | None:
    return session.get(Purpose, (practice.tenant_ref, purpose))


def purpose_major(session: Session, practice: Practice, purpose: str = DEFAULT_PURPOSE) -> int:
    """The current content version of one of the practice's purposes (an unknown or
    archived purpose: :class:`NotFound`)."""
    row = _purpose_row(session, practice, purpose)
    if row is None or row.archived_at is not None:
        raise NotFound(N_("This practice does not ask consent for that purpose."))
    return row.current_major


def purpose_validity(
    session: Session, practice: Practice, purpose: str = DEFAULT_PURPOSE
) -> int | None:
    """How many days consent to a purpose lasts (``None``: until withdrawn or outdated)."""
    row = _purpose_row(session, practice, purpose)
    return None if row is None else row.validity_days


def purpose_required(
    session: Session, practice: Practice, purpose: str = DEFAULT_PURPOSE
) -> bool:
    """Does online booking require consent to this purpose?"""
    row = _purpose_row(session, practice, purpose)
    return row is not None and row.required


def current_text(
    session: Session, practice: Practice, language: str | None, purpose: str = DEFAULT_PURPOSE
) -> TextVersion:
    """The newest version of a purpose's current content in ``language`` (with fallbacks)."""
    wanted = lang(language)
    rows = session.scalars(
        select(TextVersion)
        .where(
            TextVersion.tenant_ref == practice.tenant_ref,
            TextVersion.purpose_key == purpose,
            TextVersion.major == purpose_major(session, practice, purpose),
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


def change_note(
    session: Session, practice: Practice, purpose: str = DEFAULT_PURPOSE
) -> str | None:
    """What the practitioner wrote about a purpose's current change of content ("what
    has changed"), shown to clients who consented to an earlier content version when
    they are asked again; ``None`` when the current content is the first or came
    without one."""
    major = purpose_major(session, practice, purpose)
    if major <= 1:
        return None
    return session.scalar(
        select(TextVersion.reason)
        .where(
            TextVersion.tenant_ref == practice.tenant_ref,
            TextVersion.purpose_key == purpose,
            TextVersion.major == major,
            TextVersion.minor == 0,
            TextVersion.reason.is_not(None),
        )
        .order_by(TextVersion.id)
        .limit(1)
    )


def text_languages(
    session: Session, practice: Practice, purpose: str = DEFAULT_PURPOSE
) -> list[str]:
    return sorted(
        session.scalars(
            select(TextVersion.language)
            .where(
                TextVersion.tenant_ref == practice.tenant_ref,
                TextVersion.purpose_key == purpose,
                TextVersion.major == purpose_major(session, practice, purpose),
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


def text_versions(
    session: Session, tenant: str, purpose: str = DEFAULT_PURPOSE
) -> list[TextVersion]:
    """Every version of a purpose's consent text, newest first."""
    return list(
        session.scalars(
            select(TextVersion)
            .where(
                TextVersion.tenant_ref == check_ref("tenant", tenant),
                TextVersion.purpose_key == purpose,
            )
            .order_by(
                TextVersion.major.desc(), TextVersion.minor.desc(), TextVersion.language
            )
        )
    )


def current_texts(
    session: Session, practice: Practice, purpose: str = DEFAULT_PURPOSE
) -> dict[str, TextVersion]:
    """The newest version of a purpose's current content in each language that has one."""
    rows = session.scalars(
        select(TextVersion)
        .where(
            TextVersion.tenant_ref == practice.tenant_ref,
            TextVersion.purpose_key == purpose,
            TextVersion.major == purpose_major(session, practice, purpose),
        )
        .order_by(TextVersion.language, TextVersion.minor.desc())
    ).all()
    found: dict[str, TextVersion] = {}
    for row in rows:
        found.setdefault(row.language, row)
    return found


def count_valid(
    session: Session, practice: Practice, now: datetime, purpose: str = DEFAULT_PURPOSE
) -> int:
    major = purpose_major(session, practice, purpose)
    return int(
        session.scalar(
            select(func.count())
            .select_from(ConsentStateRow)
            .where(_valid_condition(practice.tenant_ref, major, now, purpose))
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
    host: Host, tenant: str, *, language: str, body: str, kind: str,
    purpose: str = DEFAULT_PURPOSE,
) -> TextPreview:
    """Diff and number of clients who would need to consent again, before saving."""
    with hostdb.session(host) as session:
        practice = require_practice(session, tenant)
        kind = _check_kind(kind)
        language = lang(language)
        new_body = _validate_body(body, language)
        old = current_text(session, practice, language, purpose)
        major = purpose_major(session, practice, purpose)
        if kind == "content":
            new_major, new_minor = major + 1, 0
            affected = count_valid(session, practice, now_utc(host), purpose)
        else:
            new_major, new_minor = major, _next_minor(session, practice, language, purpose)
            affected = 0
        return TextPreview(
            language=language, kind=kind, old=old, new_major=new_major, new_minor=new_minor,
            diff=diff(old.body, new_body), affected=affected, unchanged=old.body == new_body,
        )


def _next_minor(session: Session, practice: Practice, language: str, purpose: str) -> int:
    current = session.scalar(
        select(func.max(TextVersion.minor)).where(
            TextVersion.tenant_ref == practice.tenant_ref,
            TextVersion.purpose_key == purpose,
            TextVersion.major == purpose_major(session, practice, purpose),
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
    purpose: str = DEFAULT_PURPOSE,
) -> list[TextVersion]:
    """Save an edited text of one purpose.

    ``kind="correction"``: a new minor version per given language; existing consents
    stay valid.  ``kind="content"``: a new major version (the given languages only);
    every earlier consent is outdated at once by changing one row (the purpose's
    current major), and clients are asked again at their next online booking.
    ``expected_major`` is the major the editor saw: if someone else changed the text
    meanwhile, :class:`Conflict` is raised and nothing is saved.
    """
    with hostdb.session(host) as session:
        kind = _check_kind(kind)
        if not bodies:
            raise InputError("text", "give the text in at least one language")
        clean = {lang(k): _validate_body(v, lang(k)) for k, v in bodies.items()}
        reason = clean_note(reason, "reason")
        now = now_utc(host)
        practice = require_practice(session, tenant)
        lock_practice(session, practice.tenant_ref)  # concurrent edits: no duplicate minor
        purpose_major(session, practice, purpose)  # an unknown purpose: NotFound
        if kind == "content":
            new_major = expected_major + 1
            # The purpose row holds the current content version: one row changed outdates
            # every earlier consent at once, and a stale ``expected_major`` changes none.
            moved = session.execute(
                update(Purpose)
                .where(Purpose.tenant_ref == practice.tenant_ref, Purpose.key == purpose,
                       Purpose.current_major == expected_major)
                .values(current_major=new_major)
            ).rowcount  # type: ignore[attr-defined]
            if moved != 1:
                raise Conflict(TEXT_CHANGED_MEANWHILE)
            if purpose == DEFAULT_PURPOSE:
                # The schema keeps the practice's own column, held equal to the default
                # purpose's version; the app reads the purpose row.
                session.execute(
                    update(Practice)
                    .where(Practice.tenant_ref == practice.tenant_ref)
                    .values(current_major=new_major, updated_at=now)
                )
                session.refresh(practice)
            versions = [
                TextVersion(
                    tenant_ref=practice.tenant_ref, purpose_key=purpose,
                    language=language, major=new_major, minor=0,
                    body=body, html=render_html(body), sha256=sha256(body), change_kind="content",
                    reason=reason, created_by=actor, created_at=now,
                )
                for language, body in sorted(clean.items())
            ]
        else:
            major = purpose_major(session, practice, purpose)
            if major != expected_major:
                raise Conflict(TEXT_CHANGED_MEANWHILE)
            versions = []
            for language, body in sorted(clean.items()):
                versions.append(
                    TextVersion(
                        tenant_ref=practice.tenant_ref, purpose_key=purpose,
                        language=language, major=major,
                        minor=_next_minor(session, practice, language, purpose), body=body,
                        html=render_html(body), sha256=sha256(body), change_kind="correction",
                        reason=reason, created_by=actor, created_at=now,
                    )
                )
        session.add_all(versions)
        session.flush()
        return versions

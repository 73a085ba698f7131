"""A practice's consent texts, per purpose: the current text and every version,
publishing a correction or a change of content, and the preview the practitioner sees
first (the diff and how many clients would be asked again).

Every function works in the session :func:`samtycke_plugin.hostdb.session` gives (a
hook's, in the host's transaction, or a page's unit of work) and never commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from attrs import frozen
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from samtycke_plugin import hostdb
from samtycke_plugin.common import check_ref, clean_note, now_utc, storable
from samtycke_plugin.errors import Conflict, InputError, NotFound
from samtycke_plugin.i18n import N_, lang
from samtycke_plugin.ledger import lock_practice
from samtycke_plugin.models import ConsentStateRow, Practice, Purpose, TextVersion
from samtycke_plugin.practices import purpose_major, require_practice
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.store import _valid_condition
from samtycke_plugin.text import (
    MAX_TEXT_LENGTH,
    DiffLine,
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

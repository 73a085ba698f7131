"""A practice in the app: activation, settings, and what each of its purposes asks
(requirement, lifetime and current content version, from the purpose's row).  Activation
publishes the first consent texts; every later text version goes through
:mod:`samtycke_plugin.practice_texts`.

Every function works in the session :func:`samtycke_plugin.hostdb.session` gives (a
hook's, in the host's transaction, or a page's unit of work) and never commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from samtycke_plugin import hostdb
from samtycke_plugin.common import _dialect_insert, check_ref, now_utc
from samtycke_plugin.errors import NotActive, NotFound
from samtycke_plugin.i18n import N_, lang
from samtycke_plugin.models import (
    GENESIS_HASH,
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
from samtycke_plugin.text import (
    LANGUAGES,
    default_text,
    normalise_body,
    render_html,
    sha256,
)

if TYPE_CHECKING:
    from hookspecs.host import Host


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

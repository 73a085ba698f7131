"""What the app shows inside the host's pages: the profile panel, the list filters and
the per-row badges.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from attrs import frozen
from sqlalchemy import ColumnElement, bindparam, false, func, literal_column, or_, select
from sqlalchemy import exists as exists_
from sqlalchemy.orm import Session

from hookspecs.types import (
    FilterClause,
    ListFilter,
    ProfilePanel,
    RowBadge,
    StaffContext,
)
from samtycke_plugin import hostdb, roles, status_text
from samtycke_plugin.common import MOUNT_PREFIX, check_ref, now_utc
from samtycke_plugin.errors import InputError, NotActive
from samtycke_plugin.i18n import N_, lang, t
from samtycke_plugin.ledger import load_snapshots, snapshot_of
from samtycke_plugin.models import ConsentStateRow, Practice, Purpose
from samtycke_plugin.practices import get_practice, purpose_validity, settings_from, settings_of
from samtycke_plugin.purpose_catalogue import CARE
from samtycke_plugin.purposes import DEFAULT_PURPOSE, PurposeInfo, list_purposes
from samtycke_plugin.render import render
from samtycke_plugin.rules import (
    VALID_STATES,
    Snapshot,
    Status,
    expires_soon,
    renewal_window,
    status,
)
from samtycke_plugin.settings import PracticeSettings
from samtycke_plugin.store import (
    _PRACTICE_SWITCHES,
    _S,
    DEFAULT_MAJOR,
    _gate_row,
    expires_soon_condition,
    valid_condition,
)

if TYPE_CHECKING:
    from hookspecs.host import Host


FILTER_VALID = "samtycke.valid"


FILTER_NOT_VALID = "samtycke.not_valid"


#: Clients without valid consent to at least one purpose online booking requires.
FILTER_REQUIRED_MISSING = "samtycke.required_missing"


#: Clients whose valid consent lapses within the practice's renewal window
#: (:func:`samtycke_plugin.rules.expires_soon`); ``samtycke.expires_soon.<key>`` per
#: further purpose.
FILTER_EXPIRES_SOON = "samtycke.expires_soon"


#: Per purpose: ``samtycke.valid.<key>`` / ``samtycke.not_valid.<key>`` (the default
#: purpose keeps the plain keys above).
_PER_PURPOSE = (FILTER_VALID + ".", FILTER_NOT_VALID + ".")


@frozen(kw_only=True)
class _Shown:
    """What a badge shows of one status."""

    tone: status_text.Tone
    icon: str
    label: str
    reason: str


def _lifetime(info: PurposeInfo, settings: PracticeSettings) -> int | None:
    """How many days consent to the purpose lasts (the default purpose's is the
    practice's setting)."""
    return settings.validity_days if info.key == DEFAULT_PURPOSE else info.validity_days


def _shown(
    current: Status, snap: Snapshot | None, major: int, now: datetime,
    settings: PracticeSettings, locale: str, validity_days: int | None,
) -> _Shown:
    """The badge of ``current``; valid consent that expires soon says when (in the tone
    of valid consent: it is valid until then)."""
    if current is Status.VALID and snap is not None and snap.expires_at is not None \
            and expires_soon(snap, major, now, settings, validity_days=validity_days):
        date = snap.expires_at.strftime("%Y-%m-%d")
        return _Shown(
            tone=status_text.tone(current), icon=status_text.icon(current),
            label=t(locale, "Valid consent, expires %(date)s", date=date),
            reason=t(locale, "The consent expires on %(date)s. The client is asked by e-mail "
                     "to renew it.", date=date),
        )
    return _Shown(tone=status_text.tone(current), icon=status_text.icon(current),
                  label=status_text.label(current, locale),
                  reason=status_text.reason(current, locale))


def purpose_label(info: PurposeInfo, locale: str) -> str:
    """A purpose's name in ``locale`` (the default purpose without a name of its own goes
    by the catalogue's)."""
    if not info.names and info.key == DEFAULT_PURPOSE:
        return CARE.name.get(lang(locale))
    return info.name(lang(locale))


def _purposes(session: Session, tenant: str) -> list[PurposeInfo]:
    return list_purposes(session, tenant)


def _purpose_statuses(
    host: Host, session: Session, tenant: str, client: str, language: str,
    settings: PracticeSettings,
) -> list[dict[str, object]]:
    now = now_utc(host)
    rows = []
    for info in _purposes(session, tenant):
        snap = load_snapshots(session, tenant, [client], info.key).get(client)
        current = status(snap, info.current_major, now)
        shown = _shown(current, snap, info.current_major, now, settings, language,
                       _lifetime(info, settings))
        rows.append({
            "key": info.key, "name": purpose_label(info, language), "required": info.required,
            "status": current.value, "tone": shown.tone, "icon": shown.icon,
            "label": shown.label, "reason": shown.reason,
        })
    return rows


def profile_panel(
    host: Host, tenant: str, client: str, staff: StaffContext, locale: str
) -> ProfilePanel | None:
    """The badge, its reason and the actions for a client profile."""
    with hostdb.session(host) as session:
        row = _gate_row(session, check_ref("tenant", tenant), check_ref("client", client), None)
        if row is None or not row.active:
            return None
        language = lang(locale)
        snap = snapshot_of(row) if row.state is not None else None
        now = now_utc(host)
        current = status(snap, row.current_major, now)
        settings = settings_from(row.settings)
        shown = _shown(current, snap, row.current_major, now, settings, language,
                       settings.validity_days)
        given = (
            t(language, "Given %(date)s.", date=snap.since.strftime("%Y-%m-%d"))
            if snap is not None and current in (Status.VALID, Status.OUTDATED, Status.EXPIRED)
            else None
        )
        purposes = _purpose_statuses(host, session, tenant, client, language, settings)
        html = render(
            "profile_panel.html", language,
            purposes=purposes if len(purposes) > 1 else [],
            status=current.value, tone=shown.tone, icon=shown.icon, label=shown.label,
            reason=shown.reason,
            given=given, client=client, prefix=MOUNT_PREFIX,
            refused=roles.allowed(staff, language),
            setup_complete=bool(row.setup_complete),
            withdrawable=snap is not None and snap.state in VALID_STATES,
        )
        return ProfilePanel(key="samtycke.status", tone=shown.tone, label=shown.label,
                            html=html)


def list_filters(
    locale: str, host: Host | None = None, tenant: str | None = None
) -> list[ListFilter]:
    """The plain filters (the default purpose), then, for a practice that asks for more
    than one purpose, one pair per further purpose and "any required purpose missing"."""
    filters = [
        ListFilter(key=FILTER_VALID, label=t(locale, "Clients with valid consent")),
        ListFilter(key=FILTER_NOT_VALID, label=t(locale, "Clients without valid consent")),
    ]
    if host is None or tenant is None:
        return filters
    with hostdb.session(host) as session:
        practice = get_practice(session, check_ref("tenant", tenant))
        if practice is None or not practice.active:
            return filters
        purposes = _purposes(session, practice.tenant_ref)
        lasting = {p.key for p in purposes
                   if purpose_validity(session, practice, p.key) is not None}
        renewing = settings_of(practice).renew_days_before > 0
    if renewing and DEFAULT_PURPOSE in lasting:
        filters.append(ListFilter(key=FILTER_EXPIRES_SOON,
                                  label=t(locale, "Clients whose consent expires soon")))
    if len(purposes) < 2:
        return filters
    for info in purposes:
        if info.key == DEFAULT_PURPOSE:
            continue
        name = purpose_label(info, locale)
        filters += [
            ListFilter(key=f"{FILTER_VALID}.{info.key}",
                       label=t(locale, "Clients with valid consent to %(purpose)s", purpose=name)),
            ListFilter(key=f"{FILTER_NOT_VALID}.{info.key}",
                       label=t(locale, "Clients without valid consent to %(purpose)s",
                               purpose=name)),
        ]
        if renewing and info.key in lasting:
            filters.append(ListFilter(
                key=f"{FILTER_EXPIRES_SOON}.{info.key}",
                label=t(locale, "Clients whose consent to %(purpose)s expires soon",
                        purpose=name)))
    if any(info.required for info in purposes):
        filters.append(ListFilter(
            key=FILTER_REQUIRED_MISSING,
            label=t(locale, "Clients missing consent that online booking requires"),
        ))
    return filters


def _filter_condition(
    session: Session, tenant: str, filter_key: str, default_major: int, client: Any, now: Any
) -> ColumnElement[bool] | None:
    """The filter's one correlated condition, or ``None`` for a key that is not ours."""
    if filter_key in (FILTER_VALID, FILTER_NOT_VALID):
        valid = exists_().where(
            _S.tenant_ref == tenant, valid_condition(default_major, now), _S.client_ref == client
        )
        return valid if filter_key == FILTER_VALID else ~valid
    purposes = {p.key: p for p in _purposes(session, tenant)}
    if filter_key == FILTER_EXPIRES_SOON or filter_key.startswith(FILTER_EXPIRES_SOON + "."):
        key = filter_key.removeprefix(FILTER_EXPIRES_SOON + ".") \
            if filter_key != FILTER_EXPIRES_SOON else DEFAULT_PURPOSE
        practice = get_practice(session, tenant)
        if practice is None or key not in purposes:
            return None
        major = default_major if key == DEFAULT_PURPOSE else purposes[key].current_major
        settings = settings_of(practice)
        window = renewal_window(settings, _lifetime(purposes[key], settings))
        return exists_().where(
            _S.tenant_ref == tenant, expires_soon_condition(major, now, window, key),
            _S.client_ref == client,
        )
    if filter_key == FILTER_REQUIRED_MISSING:
        required = [p for p in purposes.values() if p.required]
        if not required:
            return false()
        # One correlated count over the primary key (tenant, client, purpose): fewer
        # valid rows among the required purposes than there are required purposes.
        valid_required = (
            select(func.count())
            .select_from(_S.tenant_ref.table)
            .where(
                _S.tenant_ref == tenant, _S.client_ref == client,
                or_(*(valid_condition(p.current_major, now, p.key) for p in required)),
            )
            .scalar_subquery()
        )
        return valid_required < len(required)
    for prefix in _PER_PURPOSE:
        key = filter_key.removeprefix(prefix)
        if key != filter_key and key in purposes:
            info = purposes[key]
            valid = exists_().where(
                _S.tenant_ref == tenant, valid_condition(info.current_major, now, info.key),
                _S.client_ref == client,
            )
            return valid if prefix == _PER_PURPOSE[0] else ~valid
    return None


def filter_clause(
    host: Host, tenant: str, filter_key: str, client_ref_column: str
) -> FilterClause | None:
    """``EXISTS``/``NOT EXISTS`` on the projection, correlated with the host's client
    column, as SQL text for the host's connection (its dialect, the app's parameters)."""
    if not isinstance(filter_key, str) or not filter_key.startswith("samtycke."):
        return None
    tenant = check_ref("tenant", tenant)
    with hostdb.session(host) as session:
        row = session.execute(_PRACTICE_SWITCHES, {"tenant": tenant}).one_or_none()
        if row is None or not row.active:
            raise NotActive(
                N_("Samtycke is not active for this practice. Activate it in the app menu first.")
            )
        dialect = session.get_bind().dialect.name
        condition = _filter_condition(
            session, tenant, filter_key, row.current_major,
            literal_column(client_ref_column), now_utc(host),
        )
    if condition is None:
        return None
    return FilterClause(key=filter_key, condition=hostdb.to_sql_text(condition, dialect))


#: Client refs per ``IN (…)`` list.
_IN_CHUNK = 900

#: The practice, how many purposes it asks for and the default purpose's current content
#: version, in one statement: a practice with one
#: purpose gets its page of badges from one more query.
_PRACTICE_AND_PURPOSES = select(
    Practice,
    select(func.count())
    .where(Purpose.tenant_ref == Practice.tenant_ref, Purpose.archived_at.is_(None))
    .scalar_subquery()
    .label("purposes"),
    DEFAULT_MAJOR,
).where(Practice.tenant_ref == bindparam("tenant"))


def row_badges(host: Host, tenant: str, clients: Sequence[str], locale: str) -> list[RowBadge]:
    """Badges for a page of clients: one query."""
    with hostdb.session(host) as session:
        found = session.execute(
            _PRACTICE_AND_PURPOSES, {"tenant": check_ref("tenant", tenant)}).one_or_none()
        if found is None or not found.Practice.active:
            return []
        practice = found.Practice
        if isinstance(clients, str | bytes) or not isinstance(clients, Iterable):
            raise InputError("clients", "must be a list of client references")
        refs = [check_ref("client", c) for c in clients]
        now = now_utc(host)
        settings = settings_of(practice)
        if found.purposes > 1:
            purposes = _purposes(session, practice.tenant_ref)
            return _summary_badges(session, practice.tenant_ref, refs, purposes, locale, now,
                                   settings)
        rows = load_snapshots(session, practice.tenant_ref, refs)
        badges = []
        for ref in refs:
            snap = rows.get(ref)
            current = status(snap, found.current_major, now)
            shown = _shown(current, snap, found.current_major, now, settings, locale,
                           settings.validity_days)
            badges.append(
                RowBadge(
                    key="samtycke.status", client=ref, tone=shown.tone, label=shown.label,  # type: ignore[arg-type]
                    html=render(
                        "badge.html", locale, tone=shown.tone, icon=shown.icon,
                        label=shown.label, status=current.value,
                    ),
                )
            )
        return badges


def _summary_badges(
    session: Session, tenant: str, refs: list[str], purposes: list[PurposeInfo], locale: str,
    now: Any, settings: PracticeSettings,
) -> list[RowBadge]:
    """One badge a client for a practice with several purposes: how many of them the
    client has valid consent to, naming the required ones that are missing and those
    that expire soon."""
    per_purpose: dict[str, dict[str, Snapshot]] = {p.key: {} for p in purposes}
    for start in range(0, len(refs), _IN_CHUNK):  # every purpose's rows in one query
        for row in session.execute(
            select(ConsentStateRow).where(
                ConsentStateRow.tenant_ref == tenant,
                ConsentStateRow.client_ref.in_(refs[start : start + _IN_CHUNK]),
            )
        ).scalars():
            snap = snapshot_of(row)
            if snap is not None and row.purpose_key in per_purpose:
                per_purpose[row.purpose_key][row.client_ref] = snap
    badges = []
    for ref in refs:
        statuses = {
            p.key: status(per_purpose[p.key].get(ref), p.current_major, now) for p in purposes
        }
        valid = sum(1 for s in statuses.values() if s is Status.VALID)
        missing = [
            purpose_label(p, locale) for p in purposes
            if p.required and statuses[p.key] is not Status.VALID
        ]
        label = t(locale, "Consent: %(valid)s of %(total)s", valid=valid, total=len(purposes))
        if missing:
            label += " – " + t(locale, "missing: %(names)s", names=", ".join(missing))
        soon = [
            purpose_label(p, locale) for p in purposes
            if expires_soon(per_purpose[p.key].get(ref), p.current_major, now, settings,
                            validity_days=_lifetime(p, settings))
        ]
        if soon:
            label += " – " + t(locale, "expires soon: %(names)s", names=", ".join(soon))
        tone: status_text.Tone = (
            "ok" if valid == len(purposes) else "missing" if missing else "warn"
        )
        default = statuses.get(DEFAULT_PURPOSE, Status.UNKNOWN)
        badges.append(
            RowBadge(
                key="samtycke.status", client=ref, tone=tone, label=label,  # type: ignore[arg-type]
                html=render(
                    "badge.html", locale, tone=tone, icon=status_text._ICONS[tone], label=label,
                    status=default.value,
                ),
            )
        )
    return badges

"""What the app shows inside the host's pages: the profile panel, the list filters and
the per-row badges.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import exists, literal_column

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
from samtycke_plugin.practices import get_practice
from samtycke_plugin.render import render
from samtycke_plugin.rules import (
    VALID_STATES,
    Status,
    status,
)
from samtycke_plugin.store import _PRACTICE_SWITCHES, _S, _gate_row, valid_condition

if TYPE_CHECKING:
    from hookspecs.host import Host


FILTER_VALID = "samtycke.valid"


FILTER_NOT_VALID = "samtycke.not_valid"


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
        current = status(snap, row.current_major, now_utc(host))
        given = (
            t(language, "Given %(date)s.", date=snap.since.strftime("%Y-%m-%d"))
            if snap is not None and current in (Status.VALID, Status.OUTDATED, Status.EXPIRED)
            else None
        )
        html = render(
            "profile_panel.html", language,
            status=current.value, tone=status_text.tone(current), icon=status_text.icon(current),
            label=status_text.label(current, language),
            reason=status_text.reason(current, language),
            given=given, client=client, prefix=MOUNT_PREFIX,
            refused=roles.allowed(staff, language),
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
    host: Host, tenant: str, filter_key: str, client_ref_column: str
) -> FilterClause | None:
    """``EXISTS``/``NOT EXISTS`` on the projection, correlated with the host's client
    column, as SQL text for the host's connection (its dialect, the app's parameters)."""
    if filter_key not in (FILTER_VALID, FILTER_NOT_VALID):
        return None
    tenant = check_ref("tenant", tenant)
    with hostdb.session(host) as session:
        row = session.execute(_PRACTICE_SWITCHES, {"tenant": tenant}).one_or_none()
        if row is None or not row.active:
            raise NotActive(
                N_("Samtycke is not active for this practice. Activate it in the app menu first.")
            )
        dialect = session.get_bind().dialect.name
    valid = exists().where(
        _S.tenant_ref == tenant,
        valid_condition(row.current_major, now_utc(host)),
        _S.client_ref == literal_column(client_ref_column),
    )
    condition = valid if filter_key == FILTER_VALID else ~valid
    return FilterClause(key=filter_key, condition=hostdb.to_sql_text(condition, dialect))


def row_badges(host: Host, tenant: str, clients: Sequence[str], locale: str) -> list[RowBadge]:
    """Badges for a page of clients: one query."""
    with hostdb.session(host) as session:
        practice = get_practice(session, tenant)
        if practice is None or not practice.active:
            return []
        if isinstance(clients, str | bytes) or not isinstance(clients, Iterable):
            raise InputError("clients", "must be a list of client references")
        refs = [check_ref("client", c) for c in clients]
        rows = load_snapshots(session, practice.tenant_ref, refs)
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

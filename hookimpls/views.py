"""Client profile panel, client-list filters and per-row badges."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hookspecs import hookimpl
from hookspecs.host import Host
from hookspecs.types import (
    ClientRef,
    ConsentAnswer,
    FilterClause,
    ListFilter,
    ProfilePanel,
    RowBadge,
    StaffContext,
    TenantRef,
)
from samtycke_plugin import panels, signals
from samtycke_plugin.email import page_links


@hookimpl
def booking_client_profile_render(
    host: Host, tenant: TenantRef, client: ClientRef, staff: StaffContext, locale: str
) -> list[ProfilePanel]:
    panel = panels.profile_panel(host, tenant, client, staff, locale)
    return [panel] if panel else []


@hookimpl
def booking_client_list_filters(host: Host, tenant: TenantRef, locale: str) -> list[ListFilter]:
    return panels.list_filters(locale, host, tenant)


@hookimpl
def booking_client_list_filter_clause(
    host: Host, tenant: TenantRef, filter_key: str, client_ref_column: str
) -> FilterClause | None:
    return panels.filter_clause(host, tenant, filter_key, client_ref_column)


@hookimpl
def booking_client_list_badges(
    host: Host, tenant: TenantRef, clients: Sequence[ClientRef], locale: str
) -> list[RowBadge]:
    return panels.row_badges(host, tenant, clients, locale)


@hookimpl
def booking_consent_lookup(
    host: Host, tenant: TenantRef, clients: Sequence[ClientRef], purpose: str
) -> Mapping[ClientRef, ConsentAnswer]:
    return signals.lookup(host, tenant, clients, purpose)


@hookimpl
def booking_client_consent_page(host: Host, tenant: TenantRef, client: ClientRef) -> str | None:
    return page_links.url_for_client(host, tenant, client)

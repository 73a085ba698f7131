"""Data protection: erasure of a client (GDPR Art. 17) that keeps pseudonymous proof."""

from __future__ import annotations

from hookspecs import hookimpl
from hookspecs.host import Host
from hookspecs.types import ClientRef, TenantRef
from samtycke_plugin import erasure


@hookimpl
def booking_client_erased(host: Host, tenant: TenantRef, client: ClientRef) -> None:
    erasure.erase_client(host, tenant, client)

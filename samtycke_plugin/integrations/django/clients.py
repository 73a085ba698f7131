"""The client directory part of :class:`hookspecs.host.Host` from one Django queryset."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet, TextField
from django.db.models.functions import Cast

from hookspecs.types import ClientInfo, ClientRef, ClientSelect, TenantRef
from samtycke_plugin.integrations.django.queries import client_select

#: Clients read at a time by :meth:`DjangoClients.iter_clients`.
PAGE = 500


class DjangoClients:
    """Mix into the host class: :meth:`lookup_client`, :meth:`iter_clients` and
    :meth:`client_query` (:class:`hookspecs.host.ClientQuery`: batch requests run
    set-based in the database) from :meth:`clients`, the practice's clients.

    Client references are primary keys as text.  Rows need the fields named by
    :attr:`name_field` and :attr:`email_field`, and optionally :attr:`locale_field`.
    """

    name_field = "name"
    email_field = "email"
    locale_field = "locale"
    #: The language of a client whose row has no :attr:`locale_field`.
    default_locale = "sv"

    def clients(self, tenant: TenantRef) -> QuerySet[Any]:
        """Every client of the practice ``tenant``."""
        raise NotImplementedError

    def client_info(self, row: Any) -> ClientInfo:
        return ClientInfo(
            ref=ClientRef(str(row.pk)), name=str(getattr(row, self.name_field)),
            email=getattr(row, self.email_field) or None,
            locale=str(getattr(row, self.locale_field, "") or self.default_locale))

    def lookup_client(self, tenant: TenantRef, client: ClientRef) -> ClientInfo | None:
        try:
            row = self.clients(tenant).filter(pk=client).first()
        except (ValueError, TypeError, ValidationError):  # not a key of this model
            return None
        return None if row is None else self.client_info(row)

    def iter_clients(self, tenant: TenantRef) -> Iterator[ClientInfo]:
        """In pages of 500 by primary key, each read to its end: no cursor stays open on
        the connection the app works on between rows (SQLite breaks its statements)."""
        rows, last = self.clients(tenant).order_by("pk"), None
        while True:
            page = list((rows if last is None else rows.filter(pk__gt=last))[:PAGE])
            yield from (self.client_info(row) for row in page)
            if len(page) < PAGE:
                return
            last = page[-1].pk

    def client_query(self, tenant: TenantRef) -> ClientSelect:
        columns = {"name": self.name_field, "email": self.email_field}
        same = [field for alias, field in columns.items() if alias == field]
        renamed = {alias: F(field) for alias, field in columns.items() if alias != field}
        rows = self.clients(tenant).order_by().values(
            *same, ref=Cast("pk", output_field=TextField()), **renamed)
        return client_select(rows)

"""Querysets and the app's SQL: the client-list filters as a ``WHERE`` condition, and
a queryset of clients as the :class:`hookspecs.types.ClientSelect` the app runs."""

from __future__ import annotations

import re
from typing import TypeVar

from django.db import connections
from django.db.models import BooleanField, Model, QuerySet
from django.db.models.expressions import RawSQL

from hookspecs.types import ClientSelect, TenantRef
from samtycke_plugin.integrations.django.runtime import samtycke

M = TypeVar("M", bound=Model)

_FORMAT_PLACEHOLDER = re.compile(r"%s")


def ref_column(model: type[Model], field: str = "pk", using: str = "default") -> str:
    """``CAST("table"."column" AS TEXT)``: the client reference as text, the SQL the app
    places in its filter condition (``client_ref_column``)."""
    meta = model._meta  # Django's documented Model _meta API
    found = meta.pk if field == "pk" else meta.get_field(field)
    column = getattr(found, "column", None)
    if not isinstance(column, str):
        raise ValueError(f"{model.__name__}.{field} is not a column")
    quote = connections[using].ops.quote_name
    return f"CAST({quote(model._meta.db_table)}.{quote(column)} AS TEXT)"


def filter_clients(
    queryset: QuerySet[M], tenant: TenantRef, filter_key: str, ref_column_sql: str
) -> QuerySet[M] | None:
    """``queryset`` narrowed to the clients an app's list filter keeps, or ``None`` when
    no app active for ``tenant`` offers ``filter_key`` (show "no such filter").

    :param ref_column_sql: the host's own SQL for the client reference as text (see
        :func:`ref_column`), never request data.
    """
    clause = samtycke().hooks.list_filter_clause(tenant, filter_key, ref_column_sql)
    if clause is None:
        return None
    sql, params = clause.condition.format_style()
    # Every value is a bound parameter (SqlText's contract); the SQL is the app's own.
    return queryset.filter(RawSQL(sql, params, output_field=BooleanField()))  # noqa: S611


def client_select(queryset: QuerySet[M]) -> ClientSelect:
    """A queryset whose rows are ``ref``, ``name`` and ``email`` (``.values(ref=...,
    name=..., email=...)``) as a :class:`ClientSelect` for
    :meth:`hookspecs.host.ClientQuery.client_query`.

    Django's ``%s`` placeholders become ``:p0``, ``:p1`` …; parameters must be plain
    ``str``, ``int``, ``bool`` or ``None``.
    """
    compiler = queryset.query.get_compiler(using=queryset.db)
    sql, params = compiler.as_sql()
    if "%%" in sql or re.search(r"%(?!s)", sql):
        raise ValueError("the queryset's SQL contains a literal '%': pass it as a parameter")
    names = iter(range(len(params)))
    named = _FORMAT_PLACEHOLDER.sub(lambda _m: f":p{next(names)}", sql)
    values: dict[str, object] = {}
    for index, value in enumerate(params):
        if value is not None and not isinstance(value, str | int | bool):
            raise TypeError(f"parameter {index} is {type(value).__name__}: use str, int or bool")
        values[f"p{index}"] = value
    return ClientSelect(sql=named, params=values)

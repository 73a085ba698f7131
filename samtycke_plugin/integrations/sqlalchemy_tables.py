"""The host's client and practice data read from its own SQLAlchemy tables.

Most hosts keep their clients and practices in one table each, with an integer (or
text) id, the practice id on the client row, a name, an e-mail address and a
language.  Such a host names those columns instead of writing ``lookup_client``,
``iter_clients``, ``client_query`` and ``practice_info`` by hand::

    class MyHost(TableClients, FlaskHost):
        clients = ClientColumns(ref=Client.id, tenant=Client.practice_id, name=Client.name,
                                email=Client.email, locale=Client.locale)
        practices = PracticeColumns(ref=Practice.id, name=Practice.name,
                                    email=Practice.email, phone=Practice.phone,
                                    locale=Practice.locale)

Staff likewise (:class:`TableStaff`, the optional ``staff_member`` the command line asks)::

        staff = StaffColumns(ref=Staff.id, tenant=Staff.practice_id, name=Staff.name,
                             role=Staff.role, can_record_consent=Staff.can_record_consent)
        roles = {"owner": ["*"], "staff": ["record_consent"]}

The app menu's activation table likewise: ``FlaskApps`` reads and stores which app
is active for which practice in the columns a host names in ``ActivationColumns``.

References are the ids as text; a reference that is not an id of the column's type
names no row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, cast

from attrs import frozen
from sqlalchemy import BigInteger, ColumnElement, Select, SmallInteger, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from hookspecs.types import (
    ClientInfo,
    ClientRef,
    ClientSelect,
    Permission,
    PracticeInfo,
    StaffContext,
    StaffRef,
    TenantRef,
)
from samtycke_plugin.integrations.sqlalchemy import in_pages
from samtycke_plugin.roles import role_permissions

#: The longest id text looked up (a signed 64-bit integer has at most 19 digits).
_MAX_DIGITS = 19


@frozen(kw_only=True)
class ClientColumns:
    """The host's client table: id, practice id, name, e-mail address, language."""

    ref: Any
    tenant: Any
    name: Any
    email: Any
    locale: Any


@frozen(kw_only=True)
class PracticeColumns:
    """The host's practice table: id, name, e-mail address, phone, language."""

    ref: Any
    name: Any
    email: Any
    phone: Any
    locale: Any


@frozen(kw_only=True)
class StaffColumns:
    """The host's staff table: id, practice id, name, role, and optionally the person's
    own flag that withholds recording consent from them (``False``: withheld)."""

    ref: Any
    tenant: Any
    name: Any
    role: Any
    can_record_consent: Any = None


@frozen(kw_only=True)
class ActivationColumns:
    """The host's app activation table, one row per practice and app: practice id, app
    key, active, and optionally when and by whom it last changed (primary key: the
    practice id and the app key)."""

    tenant: Any
    key: Any
    active: Any
    changed_at: Any = None
    changed_by: Any = None

    def active_keys(self, session: Session, tenant: str) -> list[str]:
        """The keys of the apps active for ``tenant``."""
        key = key_of(self.tenant, tenant)
        return [] if key is None else list(session.scalars(select(self.key).where(
            self.tenant == key, self.active.is_(True))))

    def store(self, session: Session, tenant: str, app: str, active: bool, *, at: datetime,
              by: str | None) -> None:
        """Write that ``app`` is (in)active for ``tenant``, in the session's transaction."""
        key = key_of(self.tenant, tenant)
        if key is None:
            raise LookupError(f"no practice {tenant!r}")
        values: dict[Any, object] = {_column(self.active): active}
        if self.changed_at is not None:
            values[_column(self.changed_at)] = at
        if self.changed_by is not None:
            values[_column(self.changed_by)] = None if by is None else key_of(self.changed_by, by)
        tenant_column, key_column = _column(self.tenant), _column(self.key)
        table = tenant_column.table
        changed = cast(CursorResult[Any], session.execute(update(table).where(
            tenant_column == key, key_column == app).values(values)))
        if changed.rowcount == 0:
            session.execute(insert(table).values({tenant_column: key, key_column: app, **values}))


def key_of(column: Any, ref: str) -> Any:
    """``ref`` as a value of ``column`` (an integer column takes ASCII digits only, up to
    the column's largest value), or ``None`` when no row can have it."""
    if column.type.python_type is int:
        digits = ref.isascii() and ref.isdigit() and len(ref) <= _MAX_DIGITS
        bits = 63 if isinstance(column.type, BigInteger) else \
            15 if isinstance(column.type, SmallInteger) else 31
        return int(ref) if digits and int(ref) < 2**bits else None
    return ref


def _column(attribute: Any) -> Any:
    """The table column of an ORM attribute (``Client.id``) or the column itself."""
    return getattr(attribute, "expression", attribute)


class TableClients:
    """``lookup_client``, ``iter_clients``, ``client_query`` (``hookspecs.host.ClientQuery``)
    and ``practice_info`` over the columns a host names in ``clients`` and ``practices``;
    put it before the host's base class."""

    clients: ClientColumns
    practices: PracticeColumns
    session: Callable[[], Session]

    def _where(self, tenant: str) -> ColumnElement[bool] | None:
        key = key_of(self.clients.tenant, tenant)
        return None if key is None else self.clients.tenant == key

    def lookup_client(self, tenant: TenantRef, client: ClientRef) -> ClientInfo | None:
        c, key, where = self.clients, key_of(self.clients.ref, client), self._where(tenant)
        if key is None or where is None:
            return None
        row = self.session().execute(select(c.name, c.email, c.locale).where(
            c.ref == key, where)).first()
        return None if row is None else ClientInfo(ref=client, name=row[0], email=row[1],
                                                   locale=row[2])

    def iter_clients(self, tenant: TenantRef) -> Iterator[ClientInfo]:
        c, where = self.clients, self._where(tenant)
        if where is None:
            return
        query: Select[Any] = select(c.ref, c.name, c.email, c.locale).where(where)
        for row in in_pages(self.session, query):
            ref, name, email, locale = tuple(row)
            yield ClientInfo(ref=ClientRef(str(ref)), name=name, email=email, locale=locale)

    def client_query(self, tenant: TenantRef) -> ClientSelect:
        c = self.clients
        ref, name, email, where = _column(c.ref), _column(c.name), _column(c.email), \
            _column(c.tenant)
        # the names are the host's own column and table names, never request data
        sql = (f"SELECT CAST({ref.name} AS TEXT) AS ref, {name.name} AS name,"  # noqa: S608
               f" {email.name} AS email FROM {ref.table.name} WHERE {where.name} = :tenant")
        return ClientSelect(sql=sql, params={"tenant": key_of(c.tenant, tenant)})

    def practice_info(self, tenant: TenantRef) -> PracticeInfo | None:
        p, key = self.practices, key_of(self.practices.ref, tenant)
        row = None if key is None else self.session().execute(select(
            p.name, p.email, p.phone, p.locale).where(p.ref == key)).first()
        return None if row is None else PracticeInfo(ref=tenant, name=row[0], email=row[1],
                                                     phone=row[2], locale=row[3])


class TableStaff:
    """``staff_member`` (:class:`hookspecs.host.StaffDirectory`) over the columns a host
    names in ``staff``, with the permissions its ``roles`` mapping gives each role
    (role → permission names, ``"*"`` for all; see
    :func:`samtycke_plugin.roles.role_permissions`); put it before the host's base class.
    ``roles`` is read at each call, so a host may keep it in its settings."""

    staff: StaffColumns
    roles: Mapping[str, Iterable[Permission | str]]
    session: Callable[[], Session]

    def staff_member(self, tenant: TenantRef, staff: StaffRef) -> StaffContext | None:
        s = self.staff
        ref, key = key_of(s.ref, staff), key_of(s.tenant, tenant)
        if ref is None or key is None:
            return None
        flag = [] if s.can_record_consent is None else [s.can_record_consent]
        row = self.session().execute(select(s.name, s.role, *flag).where(
            s.ref == ref, s.tenant == key)).first()
        if row is None:
            return None
        may_record = not flag or bool(row[2])
        return StaffContext(ref=staff, name=row[0],
                            permissions=role_permissions(self.roles, row[1], may_record))

"""What the online booking form asks, per purpose: the one query that reads the practice,
its purposes and the client's status for each of them (with the text versions the form
showed).  The per-purpose decision the form, the check and the record step share is
:mod:`samtycke_plugin.rules`' (:func:`~samtycke_plugin.rules.purpose_asking`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from attrs import evolve, frozen
from sqlalchemy import ColumnElement, Select, and_, bindparam, func, select
from sqlalchemy.orm import Session

from samtycke_plugin.inputs import whole_number
from samtycke_plugin.ledger import snapshot_of
from samtycke_plugin.models import ConsentStateRow, Practice, Purpose, TextVersion
from samtycke_plugin.practices import settings_from
from samtycke_plugin.purposes import DEFAULT_PURPOSE, KEY_PATTERN
from samtycke_plugin.rules import (
    GateOutcome,
    Snapshot,
    Status,
    gate,
    paused,
    purpose_asking,
    should_ask,
    status,
)
from samtycke_plugin.settings import PracticeSettings
from samtycke_plugin.store import _P, _S, _T

_U = Purpose.__table__.c

#: The form's fields of the default purpose keep the names hosts already know; every
#: other purpose's fields carry its key after a double underscore.
_CONSENT, _TEXT, _NOTE = "samtycke_consent", "samtycke_text", "samtycke_note"


def field_names(key: str) -> tuple[str, str, str]:
    """The form's fields of one purpose: its box, its text id and its change note's hash."""
    if key == DEFAULT_PURPOSE:
        return _CONSENT, _TEXT, _NOTE
    return f"{_CONSENT}__{key}", f"{_TEXT}__{key}", f"{_NOTE}__{key}"


# The outer join keeps the practice's switches when no purpose row is found: a row without
# a key, which asks for nothing (each purpose's settings and version are its row's).
_KEY = func.coalesce(_U.key, DEFAULT_PURPOSE)

_COLUMNS = (
    _P.active, _P.setup_complete, _P.settings,
    _KEY.label("purpose_key"), _U.required, _U.current_major.label("purpose_major"),
    _U.validity_days, _U.names,
    _S.state, _S.text_major, _S.expires_at, _S.since, _S.delivery,
)

# Join conditions on the parameters rather than on the practice's columns: the same
# rows, and less for PostgreSQL's planner to consider (it plans on every request).
_GATE_FROM = (
    Practice.__table__.outerjoin(
        Purpose.__table__, and_(_U.tenant_ref == bindparam("tenant"), _U.archived_at.is_(None))
    )
    .outerjoin(
        ConsentStateRow.__table__,
        and_(_S.tenant_ref == bindparam("tenant"), _S.client_ref == bindparam("client"),
             _S.purpose_key == _KEY),
    )
)
_ORDER: tuple[ColumnElement[Any], ...] = (_U.position, _KEY)

#: Every purpose the practice asks for with the client's status for it: one statement.
_GATE = select(*_COLUMNS).select_from(_GATE_FROM).where(
    _P.tenant_ref == bindparam("tenant")).order_by(*_ORDER)

#: The same with the text versions the form showed (posted back per purpose).
_GATE_SHOWN = (
    select(
        *_COLUMNS,
        _T.id.label("shown_id"), _T.major.label("shown_major"),
        _T.sha256.label("shown_sha256"), _T.language.label("shown_language"),
    )
    .select_from(
        _GATE_FROM.outerjoin(
            TextVersion.__table__,
            and_(_T.id.in_(bindparam("text_ids", expanding=True)),
                 _T.tenant_ref == bindparam("tenant"), _T.purpose_key == _KEY),
        )
    )
    .where(_P.tenant_ref == bindparam("tenant"))
    .order_by(*_ORDER)
)


@frozen(kw_only=True)
class ShownText:
    """A text version the booking form showed, as the gate read it."""

    id: int
    major: int
    sha256: str
    language: str


@frozen(kw_only=True)
class PurposeGate:
    """One purpose as the booking sees it for one client."""

    key: str
    names: Mapping[str, str]
    required: bool
    major: int
    validity_days: int | None
    snapshot: Snapshot | None
    status: Status
    paused: bool
    #: The asking settings of this purpose (:func:`~samtycke_plugin.rules.purpose_asking`).
    settings: PracticeSettings
    shown: ShownText | None = None

    def name(self, language: str) -> str:
        return self.names.get(language) or next(iter(self.names.values()), self.key)

    def asks(self, *, is_new_client: bool) -> bool:
        """Does the booking form ask this client for this purpose?"""
        return should_ask(self.settings, self.status, is_new_client=is_new_client,
                          paused=self.paused)

    def outcome(self, *, is_new_client: bool, ticked: bool) -> GateOutcome:
        return gate(
            self.settings, self.status, is_new_client=is_new_client, ticked=ticked,
            shown_major=self.shown.major if self.shown is not None else None,
            current_major=self.major, paused=self.paused,
        )


_MOST_PURPOSES = 64


def shown_text_id(raw: object) -> int | None:
    """A posted text id (``None`` for anything but plain ASCII digits: "²" and "٣" are
    ``isdigit()`` too)."""
    return whole_number(raw)


def posted_text_ids(fields: Mapping[str, object]) -> dict[str, int]:
    """The text id each purpose's hidden field posted back (well-formed ones only), by
    purpose key."""
    out: dict[str, int] = {}
    for name, raw in fields.items():
        if name == _TEXT:
            key = DEFAULT_PURPOSE
        elif name.startswith(_TEXT + "__") and KEY_PATTERN.fullmatch(name[len(_TEXT) + 2:]):
            key = name[len(_TEXT) + 2:]
        else:
            continue
        number = shown_text_id(raw)
        if number is not None:
            out[key] = number
        if len(out) == _MOST_PURPOSES:  # a forged form's thousand fields: not one query
            break
    return out


@frozen(kw_only=True)
class Gate:
    """The practice's switches and each purpose it asks for, in the form's order."""

    active: bool
    settings: PracticeSettings
    purposes: tuple[PurposeGate, ...]


def read_gate(
    session: Session, tenant: str, client: str | None, shown: Mapping[str, int], now: datetime
) -> Gate | None:
    """The booking gate in one statement (``None``: no such practice)."""
    statement: Select[Any] = _GATE_SHOWN if shown else _GATE
    params: dict[str, Any] = {"tenant": tenant, "client": client}
    if shown:
        params["text_ids"] = sorted(set(shown.values()))
    rows = session.execute(statement, params).all()
    if not rows:
        return None
    first = rows[0]
    settings = settings_from(first.settings)
    purposes: dict[str, PurposeGate] = {}
    for row in rows:
        key = str(row.purpose_key)
        seen = _shown(row, shown.get(key))
        if key in purposes:  # one row per posted id: keep the one the purpose's field posted
            if seen is not None:
                purposes[key] = evolve(purposes[key], shown=seen)
            continue
        if row.purpose_major is None:  # no purpose row: nothing to ask for
            continue
        required, major = bool(row.required), int(row.purpose_major)
        snap = snapshot_of(row) if client and row.state is not None else None
        purposes[key] = PurposeGate(
            key=key, names=dict(row.names or {}), required=required, major=major,
            validity_days=row.validity_days,
            snapshot=snap, status=status(snap, major, now), paused=paused(snap, settings, now),
            settings=purpose_asking(settings, required=required), shown=seen,
        )
    return Gate(active=bool(first.active and first.setup_complete), settings=settings,
                purposes=tuple(purposes.values()))


def _shown(row: Any, posted: int | None) -> ShownText | None:
    shown_id = getattr(row, "shown_id", None)
    if shown_id is None or posted is None or int(shown_id) != posted:
        return None
    return ShownText(id=int(shown_id), major=int(row.shown_major), sha256=str(row.shown_sha256),
                     language=str(row.shown_language))

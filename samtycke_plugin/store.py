"""Shared reads of the projection: the booking gate's one-row query and the SQL form of
"valid consent" that the list filters, counts and batch select with (held equal to
:func:`samtycke_plugin.rules.status` by the tests).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    false,
    or_,
    select,
)
from sqlalchemy.orm import Session

from samtycke_plugin.models import (
    ConsentStateRow,
    Practice,
    Purpose,
    TextVersion,
)
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.rules import (
    VALID_STATES,
)


def _valid_condition(
    tenant: str, current_major: int, now: datetime, purpose: str = DEFAULT_PURPOSE
) -> ColumnElement[bool]:
    return and_(_S.tenant_ref == tenant, valid_condition(current_major, now, purpose))


_P = Practice.__table__.c


_S = ConsentStateRow.__table__.c


_T = TextVersion.__table__.c


_U = Purpose.__table__.c


#: The default purpose's current content version, from its purpose row (the one place
#: that holds it), as a column of a query on the practice.
DEFAULT_MAJOR = (
    select(_U.current_major)
    .where(_U.tenant_ref == bindparam("tenant"), _U.key == DEFAULT_PURPOSE)
    .scalar_subquery()
    .label("current_major")
)

#: The booking gate and the profile panel in one indexed query, built once: the
#: practice's switches and the client's projection row (primary key lookup; may be absent).
_GATE_COLUMNS = (
    _P.active, _P.setup_complete, DEFAULT_MAJOR, _P.settings,
    _S.state, _S.text_major, _S.expires_at, _S.since, _S.delivery,
)


# Join conditions on the parameters rather than on the practice's columns: the same
# rows, and less for PostgreSQL's planner to consider (it plans on every request).
_GATE_FROM = Practice.__table__.outerjoin(
    ConsentStateRow.__table__,
    and_(_S.tenant_ref == bindparam("tenant"), _S.client_ref == bindparam("client"),
         _S.purpose_key == DEFAULT_PURPOSE),
)


_GATE = select(*_GATE_COLUMNS).select_from(_GATE_FROM).where(_P.tenant_ref == bindparam("tenant"))


#: The same with the text version the booking form showed (when one was posted back).
_GATE_SHOWN = (
    select(
        *_GATE_COLUMNS,
        _T.id.label("shown_id"), _T.major.label("shown_major"),
        _T.sha256.label("shown_sha256"), _T.language.label("shown_language"),
    )
    .select_from(
        _GATE_FROM.outerjoin(
            TextVersion.__table__,
            and_(_T.id == bindparam("text_id"), _T.tenant_ref == bindparam("tenant")),
        )
    )
    .where(_P.tenant_ref == bindparam("tenant"))
)


_PRACTICE_SWITCHES = select(_P.active, DEFAULT_MAJOR).where(
    _P.tenant_ref == bindparam("tenant")
)


_VALID_VALUES = sorted(s.value for s in VALID_STATES)


def _gate_row(session: Session, tenant: str, client: str | None, text_id: int | None) -> Any:
    statement, params = _gate_step(tenant, client, text_id)
    return session.execute(statement, params).one_or_none()


def _gate_step(
    tenant: str, client: str | None, text_id: int | None
) -> tuple[Select[Any], dict[str, Any]]:
    if text_id is None:
        return _GATE, {"tenant": tenant, "client": client}
    return _GATE_SHOWN, {"tenant": tenant, "client": client, "text_id": text_id}


def valid_condition(
    current_major: int, now: datetime, purpose: str = DEFAULT_PURPOSE
) -> ColumnElement[bool]:
    """SQL for "this projection row is valid consent to ``purpose``" (:func:`rules.status`
    is ``VALID``), on Core columns of ``samtycke_consent_state``: the list filter and the
    batch request select with it."""
    return and_(
        _S.purpose_key == purpose,
        _S.state.in_(_VALID_VALUES),
        _S.text_major == current_major,
        or_(_S.expires_at.is_(None), _S.expires_at > now),
    )


def expires_soon_condition(
    current_major: int, now: datetime, window_days: int, purpose: str = DEFAULT_PURPOSE
) -> ColumnElement[bool]:
    """SQL for :func:`samtycke_plugin.rules.expires_soon`: valid consent to ``purpose``
    that lapses within ``window_days`` (0: none does), on the same Core columns as
    :func:`valid_condition`."""
    if window_days == 0:
        return false()
    return and_(
        valid_condition(current_major, now, purpose),
        _S.expires_at.is_not(None),
        _S.expires_at <= now + timedelta(days=window_days),
    )

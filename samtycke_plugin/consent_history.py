"""A client's consent history as the practitioner's history page shows it: every ledger
event, oldest first, with its text version, evidence and any scan of a paper form."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from attrs import frozen
from sqlalchemy import select

from samtycke_plugin import attachments, hostdb
from samtycke_plugin.common import check_ref, version_label
from samtycke_plugin.errors import NotFound
from samtycke_plugin.i18n import N_
from samtycke_plugin.models import ConsentEvent, Evidence, TextVersion
from samtycke_plugin.practices import get_practice
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.rules import VALID_STATES, State

if TYPE_CHECKING:
    from hookspecs.host import Host


@frozen(kw_only=True)
class HistoryEntry:
    seq: int
    state: str
    occurred_at: datetime
    given_at: datetime | None
    channel: str
    method: str | None
    actor: str
    text_version: str
    text_sha256: str | None
    language: str | None
    booking_ref: str | None
    ip_prefix: str | None
    user_agent: str | None
    note: str | None
    row_hash: str
    #: The exact text version shown (for a link to its full text), if any.
    text_version_id: int | None = None
    #: The purpose the event concerns.
    purpose: str = DEFAULT_PURPOSE
    #: The scan of the signed paper form, if one was attached.
    attachment: attachments.Stored | None = None

    @property
    def consents(self) -> bool:
        """The event gives consent (``given`` or ``renewed``)."""
        return State(self.state) in VALID_STATES


def history(host: Host, tenant: str, client: str) -> list[HistoryEntry]:
    """Every event of one client, oldest first, with text version and evidence."""
    with hostdb.session(host) as session:
        practice = get_practice(session, tenant)
        if practice is None:
            raise NotFound(N_("No such client in this practice."))
        client = check_ref("client", client)
        rows = session.execute(
            select(ConsentEvent, TextVersion.minor, Evidence)
            .outerjoin(TextVersion, TextVersion.id == ConsentEvent.text_version_id)
            .outerjoin(Evidence, Evidence.event_id == ConsentEvent.id)
            .where(ConsentEvent.tenant_ref == practice.tenant_ref,
                   ConsentEvent.client_ref == client)
            .order_by(ConsentEvent.seq)
        ).all()
        scans = attachments.of_client(session, practice.tenant_ref, client)
        return [
            HistoryEntry(
                seq=ev.seq, state=ev.state, occurred_at=ev.occurred_at, given_at=ev.given_at,
                channel=ev.channel, method=ev.method, actor=ev.actor,
                text_version=version_label(ev.text_major, minor), text_sha256=ev.text_sha256,
                language=ev.language, booking_ref=ev.booking_ref,
                ip_prefix=evd.ip_prefix if evd else None,
                user_agent=evd.user_agent if evd else None,
                note=evd.note if evd else None, row_hash=ev.row_hash,
                text_version_id=ev.text_version_id, purpose=ev.purpose_key,
                attachment=scans.get(ev.attachment_sha256) if ev.attachment_sha256 else None,
            )
            for ev, minor, evd in rows
        ]

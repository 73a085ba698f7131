"""What a batch request would do, worked out without writing anything: how many clients
it would mail, and who it would leave out and why, each client named.

The preview decides every client with the job's own decision (:func:`batch.decide`,
after :func:`_already_settled`), so the two count alike; what is written is nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

from attrs import field, frozen
from sqlalchemy import Subquery, select, text
from sqlalchemy.orm import Session

from hookspecs.host import ClientQuery
from hookspecs.types import ClientInfo, ClientRef, TenantRef
from samtycke_plugin import common, practices
from samtycke_plugin.db import run_in_transaction
from samtycke_plugin.email.asking import _already_settled, _one_of
from samtycke_plugin.email.batch import BATCH_CHUNK, Reason, decide
from samtycke_plugin.email.batch_query import listed_clients
from samtycke_plugin.email.messages import MailPreview, preview_request
from samtycke_plugin.email.outbox import _OUTBOX
from samtycke_plugin.errors import InputError
from samtycke_plugin.i18n import N_
from samtycke_plugin.models import WAITING_REQUEST
from samtycke_plugin.purposes import DEFAULT_PURPOSE

if TYPE_CHECKING:
    from hookspecs.host import Host


#: Clients named per reason on the batch page (the counts are always complete).
PREVIEW_CAP = 200

#: The reasons in the order they are shown: the clients' own "no" first, what the
#: practitioner can correct next, then those who need no request.
REASONS = (
    Reason.WITHDRAWN, Reason.REFUSED, Reason.NO_EMAIL, Reason.BAD_NAME, Reason.PENDING,
    Reason.VALID,
)


#: What the batch page and the command line call each reason a client is left out.
REASON_LABELS = {
    "withdrawn": N_("Withdrew their consent"),
    "refused": N_("Declined to consent"),
    "no_email": N_("No usable e-mail address"),
    "bad_name": N_("A name that cannot be used in an e-mail (such as one with a line break)"),
    "pending": N_("Already asked: an unanswered request is pending or waiting to be sent"),
    "valid": N_("Already have valid consent"),
}


@frozen(kw_only=True)
class Named:
    """A client as the preview names them."""

    ref: str
    name: str
    locale: str | None = None


@frozen(kw_only=True)
class BatchPreview:
    """What a batch request to every client of the practice would do now."""

    #: Clients of the practice (each ref once).
    total: int
    #: Clients a request would be mailed to.
    asked: int
    #: Clients left out, per reason (every reason of :data:`REASONS`, zero or more).
    counts: Mapping[Reason, int]
    #: The first clients left out per reason (at most ``cap`` each; all when ``cap`` is
    #: ``None``), in the order the host lists them.
    left_out: Mapping[Reason, tuple[Named, ...]]
    cap: int | None
    #: The first client a request would be mailed to (the mail preview's example).
    example: Named | None = None
    #: The request mail as ``example`` would get it (``None``: nobody to mail, or the
    #: practice's name cannot go into a mail, see ``mail_problem``).
    mail: MailPreview | None = None
    #: Why the mail cannot be shown (the batch would stop for the same reason).
    mail_problem: str | None = field(default=None)
    #: The purpose the batch asks for.
    purpose: str = DEFAULT_PURPOSE

    @property
    def left_out_total(self) -> int:
        return sum(self.counts.values())

    def unlisted(self, reason: Reason) -> int:
        """Clients left out for ``reason`` beyond those named."""
        return self.counts[reason] - len(self.left_out[reason])


def _waiting(session: Session, tenant: str, refs: Sequence[str]) -> set[str]:
    """The clients of ``refs`` with a request already waiting in the outbox."""
    if not refs:
        return set()
    dialect = session.get_bind().dialect.name
    query = select(_OUTBOX.c.client_ref).where(
        _OUTBOX.c.tenant_ref == tenant, text(WAITING_REQUEST),
        _one_of(_OUTBOX.c.client_ref, dialect),
    )
    values: Any = list(refs) if dialect == "postgresql" else json.dumps(list(refs))
    return set(session.scalars(query, {"refs": values}))


def _listed_chunks(session: Session, listed: Subquery, size: int) -> Iterator[list[ClientInfo]]:
    """The clients of the host's query, ``size`` at a time by ref, each ref once."""
    ref = listed.c.ref
    after: str | None = None
    while True:
        where = [ref.is_not(None), *([ref > after] if after is not None else [])]
        chunk = [
            ClientInfo(ref=ClientRef(str(r)), name=n or "", email=e, locale="")
            for r, n, e in session.execute(
                select(ref, listed.c.name, listed.c.email).where(*where).order_by(ref).limit(size)
            )
        ]
        if not chunk:
            return
        yield chunk
        after = str(chunk[-1].ref)


def _streamed_chunks(host: Host, tenant: str, size: int) -> Iterator[list[ClientInfo]]:
    clients = host.iter_clients(TenantRef(tenant))
    while chunk := list(islice(clients, size)):
        yield chunk


def preview_batch(
    host: Host, tenant: str, *, cap: int | None = PREVIEW_CAP, chunk_size: int = BATCH_CHUNK,
    purpose: str = DEFAULT_PURPOSE,
) -> BatchPreview:
    """What :func:`~samtycke_plugin.email.jobs.start_batch` (or ``request_batch`` for the
    whole practice) would do if it ran now for ``purpose``: the clients it would mail, and those it
    would leave out with the reason, decided as the job decides.  Reads only, in one
    unit of work that is rolled back (inside the app's open unit of work, in that one,
    writing nothing).

    Clients come as the job takes them: from the host's
    :meth:`~hookspecs.host.ClientQuery.client_query` when it has one (by ref), else
    from :meth:`~hookspecs.host.Host.iter_clients`, ``chunk_size`` at a time (one
    query per chunk for their consent, links and waiting requests)."""
    return run_in_transaction(
        host, functools.partial(_preview, host, tenant=tenant, cap=cap, size=max(1, chunk_size),
                                purpose=purpose),
        commit=False,
    )


def _preview(
    host: Host, session: Session, *, tenant: str, cap: int | None, size: int, purpose: str
) -> BatchPreview:
    practice = practices.require_practice(session, tenant)
    session.refresh(practice)
    tenant, major = practice.tenant_ref, practices.purpose_major(session, practice, purpose)
    settings = practices.settings_of(practice)
    link_days = settings.request_link_days
    chunks = (
        _listed_chunks(session, listed_clients(host.client_query(TenantRef(tenant))), size)
        if isinstance(host, ClientQuery) else _streamed_chunks(host, tenant, size)
    )
    counts = dict.fromkeys(REASONS, 0)
    named: dict[Reason, list[Named]] = {reason: [] for reason in REASONS}
    seen: set[str] = set()
    asked = 0
    example: ClientInfo | None = None
    for chunk in chunks:
        unique = {str(info.ref): info for info in chunk if str(info.ref) not in seen}
        seen.update(unique)
        refs = list(unique)
        settled = _already_settled(session, tenant, refs, major, common.now_utc(host), settings,
                                   purpose)
        waiting = _waiting(session, tenant, refs)
        for ref, info in unique.items():
            decided = decide(settled.get(ref), info.email, info.name, waiting=ref in waiting)
            if not isinstance(decided, Reason):
                asked += 1
                example = example or info
                continue
            counts[decided] += 1
            if cap is None or len(named[decided]) < cap:
                named[decided].append(Named(ref=ref, name=(info.name or "").strip() or ref))
    mail, problem, shown = _mail_preview(host, tenant, example, link_days, purpose)
    return BatchPreview(
        total=len(seen), asked=asked, counts=counts,
        left_out={reason: tuple(clients) for reason, clients in named.items()},
        cap=cap, example=shown, mail=mail, mail_problem=problem, purpose=purpose,
    )


def _mail_preview(
    host: Host, tenant: str, example: ClientInfo | None, link_days: int, purpose: str
) -> tuple[MailPreview | None, str | None, Named | None]:
    """The request mail for the example client, in their language (a client of the
    host's query is looked up for it)."""
    if example is None:
        return None, None, None
    info = host.lookup_client(TenantRef(tenant), ClientRef(example.ref)) or example
    name = (info.name or "").strip()
    shown = Named(ref=str(info.ref), name=name or str(info.ref), locale=info.locale)
    expires = common.now_utc(host) + timedelta(days=link_days)
    try:
        mail = preview_request(host, tenant, client_name=name, locale=info.locale,
                               expires_at=expires, purposes=[purpose])
    except InputError as exc:
        return None, str(exc).removeprefix(f"{exc.field}: "), shown
    return mail, None, shown

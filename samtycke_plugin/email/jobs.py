"""Batch jobs: "ask everyone without valid consent" is recorded by the web request and
run by a worker, so the request never waits for a whole practice.

* :func:`start_batch` records a job (the batch page's POST) and returns at once.  A
  partial unique index allows one unfinished job per practice, so a double click or a
  second practitioner finds the job that is already there instead of starting another.
* :func:`run_pending` runs the jobs that are due.  The relay calls it before it sends
  mail (:func:`samtycke_plugin.email.relay.send_due`, hence ``samtycke outbox send
  [--loop]``); a host's own scheduler may call it instead.  A job is claimed with a
  conditional ``UPDATE`` (two runners never run one job at once) under a lease; a job
  whose runner died is taken over when its lease has run out.
* The job runs in chunks.  Each chunk queues its clients' mail as the batch request
  does (:mod:`samtycke_plugin.email.batch`: nobody with valid consent, a pending link,
  a waiting row or their own "no" is asked) and, in the same transaction, moves the
  job's progress and counts and renews the lease: a runner killed between chunks leaves
  the job to resume after the last committed chunk, and even a chunk done twice asks
  nobody twice.
* :func:`job_progress` reads a job of one practice for the progress page.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any, cast

from attrs import frozen
from sqlalchemy import Subquery, Table, and_, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hookspecs.host import ClientQuery
from hookspecs.types import TenantRef
from samtycke_plugin import common, practices
from samtycke_plugin.db import run_in_transaction
from samtycke_plugin.email.asking import _ChunkCounts
from samtycke_plugin.email.batch import BATCH_CHUNK, _queue_chunk, count_clients
from samtycke_plugin.email.batch_query import _queue_everyone, listed_clients
from samtycke_plugin.errors import SamtyckeError
from samtycke_plugin.i18n import N_
from samtycke_plugin.models import UNFINISHED_JOB, BatchJob
from samtycke_plugin.purposes import DEFAULT_PURPOSE

if TYPE_CHECKING:
    from hookspecs.host import Host

log = logging.getLogger("samtycke.jobs")

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"

#: How long a runner holds a job without finishing a chunk before another may take it
#: over (it is renewed with every chunk, so it only has to cover one).
LEASE = timedelta(minutes=5)

#: The filter of a batch job: every client of the practice, asked as the batch asks.
EVERYONE = "everyone_without_valid_consent"

_JOB = cast(Table, BatchJob.__table__)
_J = _JOB.c
_COUNTS = ("asked", "skipped_valid", "skipped_pending", "skipped_no_email", "skipped_bad_name",
           "skipped_withdrawn", "skipped_refused")
_UNEXPECTED = N_(
    "The batch stopped because of an unexpected error. The clients asked so far keep "
    "their requests; press the button again to ask the rest."
)


@frozen(kw_only=True)
class JobProgress:
    """A batch job as the progress page shows it."""

    id: int
    state: str
    created_at: datetime
    finished_at: datetime | None
    #: Clients expected (``None`` until the job has started) and looked at so far.
    total: int | None
    done: int
    asked: int
    skipped_valid: int
    skipped_pending: int
    skipped_no_email: int
    skipped_bad_name: int
    skipped_withdrawn: int
    skipped_refused: int
    error: str | None
    #: The purpose the job asks for.
    purpose: str = DEFAULT_PURPOSE

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED)

    @property
    def left_out(self) -> int:
        return (self.skipped_valid + self.skipped_pending + self.skipped_no_email
                + self.skipped_bad_name + self.skipped_withdrawn + self.skipped_refused)


@frozen(kw_only=True)
class Started:
    """What :func:`start_batch` did: the job's id, and whether it is a new one."""

    job_id: int
    created: bool


class _Retry(Exception):
    """The unfinished job met by the insert finished before it could be read."""


def start_batch(
    host: Host, tenant: str, *, actor: str, purpose: str = DEFAULT_PURPOSE
) -> Started:
    """Record a batch request for ``purpose`` to every client of the practice without
    valid consent to it, to be run by :func:`run_pending`; or, while one is unfinished,
    return that one (whatever its purpose).  Its
    own short unit of work (:meth:`Host.unit_of_work`), committed; inside a unit of
    work of the app (its batch page), that one."""

    def unit(session: Session) -> Started:
        practice = practices.require_practice(session, tenant)
        practices.purpose_major(session, practice, purpose)  # unknown or archived: NotFound
        now = common.now_utc(host)
        values: dict[str, Any] = {
            "tenant_ref": practice.tenant_ref, "created_by": actor[:160], "created_at": now,
            "options": {"filter": EVERYONE, "purpose": purpose},
            "batch_key": uuid.uuid4().hex, "state": QUEUED,
            "done": 0, **dict.fromkeys(_COUNTS, 0),
        }
        dialect = session.get_bind().dialect.name
        ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_JOB)
        new = session.execute(
            ins.values(values).on_conflict_do_nothing(
                index_elements=["tenant_ref"], index_where=text(UNFINISHED_JOB)
            ).returning(_J.id)
        ).scalar_one_or_none()
        if new is not None:
            return Started(job_id=int(new), created=True)
        existing = session.scalar(select(_J.id).where(
            _J.tenant_ref == practice.tenant_ref, _J.state.in_((QUEUED, RUNNING))))
        if existing is None:  # finished between the two statements: the next try inserts
            raise _Retry()
        return Started(job_id=int(existing), created=False)

    for _ in range(3):
        try:
            return run_in_transaction(host, unit)
        except _Retry:
            continue
    raise RuntimeError("start_batch: the practice's unfinished job kept changing")


def _progress_of(row: Any) -> JobProgress:
    return JobProgress(
        id=int(row.id), state=row.state, created_at=row.created_at, finished_at=row.finished_at,
        total=row.total, done=row.done, error=row.error, **{k: getattr(row, k) for k in _COUNTS},
        purpose=_purpose_of(row.options),
    )


def _purpose_of(options: Any) -> str:
    """The purpose a job asks for (a job from before purposes: the default one)."""
    found = options.get("purpose") if isinstance(options, dict) else None
    return found if isinstance(found, str) and found else DEFAULT_PURPOSE


_PROGRESS_COLUMNS = (_J.id, _J.state, _J.created_at, _J.finished_at, _J.total, _J.done,
                     _J.error, _J.options, *(_J[k] for k in _COUNTS))


def job_progress(host: Host, tenant: str, job_id: int) -> JobProgress | None:
    """The job ``job_id`` of this practice (``None``: no such job here)."""
    row = run_in_transaction(host, lambda s: s.execute(
        select(*_PROGRESS_COLUMNS).where(_J.id == job_id, _J.tenant_ref == tenant)
    ).first(), commit=False)
    return None if row is None else _progress_of(row)


def unfinished_job(host: Host, tenant: str) -> int | None:
    """The id of the practice's queued or running job, if there is one."""
    found = run_in_transaction(host, lambda s: s.scalar(
        select(_J.id).where(_J.tenant_ref == tenant, _J.state.in_((QUEUED, RUNNING)))),
        commit=False)
    return None if found is None else int(found)


def latest_job(host: Host, tenant: str) -> int:
    """The id of the practice's newest job, of any state (0: it has none)."""
    found = run_in_transaction(host, lambda s: s.scalar(
        select(func.max(_J.id)).where(_J.tenant_ref == tenant)), commit=False)
    return 0 if found is None else int(found)


def _due(now: datetime) -> Any:
    """Queued, or running under a lease that has run out (its runner died)."""
    return or_(_J.state == QUEUED, and_(_J.state == RUNNING, _J.lease_until < now))


def _claim(host: Host, runner: str, lease: timedelta, tenant: str | None) -> int | None:
    def unit(session: Session) -> int | None:
        now = common.now_utc(host)
        query = select(_J.id).where(_due(now))
        if tenant is not None:
            query = query.where(_J.tenant_ref == common.check_ref("tenant", tenant))
        for job_id in session.scalars(query.order_by(_J.id).limit(10)).all():
            took = session.execute(
                update(_JOB).where(_J.id == job_id, _due(now)).values(
                    state=RUNNING, runner=runner, lease_until=now + lease,
                    started_at=func.coalesce(_J.started_at, now),
                )
            )
            if took.rowcount == 1:  # type: ignore[attr-defined]
                return int(job_id)
        return None

    return run_in_transaction(host, unit)


class _LostJob(Exception):
    """Another runner took the job over (this one was too slow for its lease)."""


def _hold(session: Session, job_id: int, runner: str, until: datetime, **values: Any) -> None:
    """Write the job's progress, renewing the lease, if the job is still this runner's."""
    held = session.execute(
        update(_JOB).where(_J.id == job_id, _J.runner == runner, _J.state == RUNNING)
        .values(lease_until=until, **values)
    )
    if held.rowcount != 1:  # type: ignore[attr-defined]
        raise _LostJob()


def _added(counts: _ChunkCounts) -> dict[str, Any]:
    """The job's count columns moved on by one chunk's counts."""
    by_column = {
        "asked": counts.asked, "skipped_valid": counts.valid, "skipped_pending": counts.pending,
        "skipped_no_email": counts.no_email, "skipped_bad_name": counts.bad_name,
        "skipped_withdrawn": counts.withdrawn, "skipped_refused": counts.refused,
    }
    return {k: _J[k] + n for k, n in by_column.items() if n}


def _query_chunk(session: Session, listed: Subquery, after: str | None,
                 size: int) -> tuple[Subquery, str | None]:
    """The next ``size`` clients of the host's query after ``after`` (by ref), and the
    last ref of them (``None``: these are the last)."""
    ref = listed.c.ref
    where = [ref.is_not(None), *([ref > after] if after is not None else [])]
    upper = session.scalar(select(ref).where(*where).order_by(ref).offset(size - 1).limit(1))
    if upper is not None:
        where.append(ref <= upper)
    chunk = select(listed).where(*where).subquery("samtycke_job_chunk")
    return chunk, (None if upper is None else str(upper))


@frozen(kw_only=True)
class _Job:
    id: int
    tenant: str
    actor: str
    batch_key: str
    total: int | None
    done: int
    after: str | None
    purpose: str = DEFAULT_PURPOSE


def _run(host: Host, job: _Job, runner: str, lease: timedelta, chunk_size: int,
         progress: Callable[[JobProgress], None] | None) -> None:
    """Run a claimed job to its end, one committed chunk at a time."""
    tenant, size = job.tenant, max(1, chunk_size)
    if job.total is None:
        total = _count(host, tenant)
        run_in_transaction(host, lambda s: _hold(
            s, job.id, runner, common.now_utc(host) + lease, total=total))

    def report() -> None:
        if progress is not None:
            found = job_progress(host, tenant, job.id)
            if found is not None:
                progress(found)

    if isinstance(host, ClientQuery):
        query = listed_clients(host.client_query(TenantRef(tenant)))
        after, last = job.after, False
        while not last:
            def unit(session: Session, after: str | None = after) -> str | None:
                _hold(session, job.id, runner, common.now_utc(host) + lease)
                chunk, upper = _query_chunk(session, query, after, size)
                done, counts = _queue_everyone(host, session, tenant, chunk, actor=job.actor,
                                               batch_key=job.batch_key, purpose=job.purpose)
                _hold(session, job.id, runner, common.now_utc(host) + lease,
                      done=_J.done + done, after_ref=upper if upper is not None else after,
                      **_added(counts))
                return upper

            upper = run_in_transaction(host, unit)
            last, after = upper is None, upper
            report()
    else:
        clients = islice(host.iter_clients(TenantRef(tenant)), job.done, None)
        for chunk in _chunks(clients, size):
            def unit_of(session: Session, chunk: list[Any] = chunk) -> None:
                _hold(session, job.id, runner, common.now_utc(host) + lease)
                counts = _queue_chunk(host, session, tenant, chunk, actor=job.actor,
                                      batch_key=job.batch_key, purpose=job.purpose)
                _hold(session, job.id, runner, common.now_utc(host) + lease,
                      done=_J.done + len(chunk), **_added(counts))

            run_in_transaction(host, unit_of)
            report()
    _end(host, job.id, runner, state=DONE)
    report()


def _count(host: Host, tenant: str) -> int:
    """The practice's clients, counted in a read-only unit of work of the app when the
    count is SQL on the shared database (a runner has no host transaction to borrow)."""
    if isinstance(host, ClientQuery):
        return run_in_transaction(host, lambda _s: count_clients(host, tenant), commit=False)
    return count_clients(host, tenant)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(islice(items, size)):
        yield chunk


def _load(host: Host, job_id: int) -> _Job:
    row = run_in_transaction(host, lambda s: s.execute(
        select(_J.tenant_ref, _J.created_by, _J.batch_key, _J.total, _J.done, _J.after_ref,
               _J.options)
        .where(_J.id == job_id)
    ).one(), commit=False)
    return _Job(id=job_id, tenant=row.tenant_ref, actor=row.created_by,
                batch_key=row.batch_key, total=row.total, done=row.done, after=row.after_ref,
                purpose=_purpose_of(row.options))


def _end(host: Host, job_id: int, runner: str, *, state: str, error: str | None = None) -> None:
    """Mark the job ``done`` or ``failed``, if it is still this runner's."""

    def unit(session: Session) -> None:
        now = common.now_utc(host)
        session.execute(
            update(_JOB).where(_J.id == job_id, _J.runner == runner, _J.state == RUNNING)
            .values(state=state, finished_at=now, lease_until=None, runner=None, error=error)
        )

    run_in_transaction(host, unit)


def run_pending(
    host: Host,
    *,
    tenant: str | None = None,
    chunk_size: int = BATCH_CHUNK,
    lease: timedelta = LEASE,
    progress: Callable[[JobProgress], None] | None = None,
) -> int:
    """Run the batch jobs that are due (of every practice, or of ``tenant``) to their
    end, one after the other; returns how many were run.

    The relay calls it before sending mail; a host whose own scheduler (Celery, RQ,
    cron) runs the work may call it instead.  It manages its own short units of work
    (:meth:`Host.unit_of_work`): call it outside the app's or the host's open
    transaction.  ``progress`` is
    called with the job after each committed chunk.  A job that cannot go on (the
    practice was deactivated, its name cannot go into a mail) ends as ``failed`` with
    the reason; what its committed chunks queued stays queued.
    """
    runner = secrets.token_hex(8)
    ran = 0
    while (job_id := _claim(host, runner, lease, tenant)) is not None:
        job = _load(host, job_id)
        try:
            _run(host, job, runner, lease, chunk_size, progress)
        except _LostJob:
            log.warning("batch job %d was taken over by another runner", job_id)
            continue
        except SamtyckeError as exc:
            log.warning("batch job %d of practice %s failed: %s", job_id, job.tenant, exc)
            _end(host, job_id, runner, state=FAILED, error=str(exc))
        except Exception:
            log.exception("batch job %d of practice %s failed", job_id, job.tenant)
            _end(host, job_id, runner, state=FAILED, error=_UNEXPECTED)
        ran += 1
    return ran

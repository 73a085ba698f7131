"""Batch jobs: the batch page records a job and returns; the relay runs it in chunks
that commit as they go; two relays never run one job twice; a runner killed between
chunks is taken over after its lease and asks nobody twice (SQLite and PostgreSQL, a
host that streams its clients and one that gives them as a query)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import attrs
import pytest
from hostkit import QueryHost, TestHost
from smtp_support import SmtpServer, running_server
from sqlalchemy import func, select

from samtycke_plugin.email import jobs
from samtycke_plugin.email.relay import send_due
from samtycke_plugin.models import ConsentEvent, OutboxMessage

N = 23  # clients with an address; chunks of 5 leave a short last one


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


def _practice(host: TestHost) -> tuple[str, list[str]]:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, ask_new_clients=True)
    clients = [host.new_client(tenant, email=f"k{i}@example.org") for i in range(N)]
    host.new_client(tenant, email=None)
    if isinstance(host, QueryHost):  # the client table filled first: other hosts only read it
        host.client_query(tenant)
    host.session().commit()
    return tenant, clients


def _rows_per_client(host: TestHost, tenant: str) -> dict[str, int]:
    host.session().rollback()
    rows = host.session().execute(
        select(OutboxMessage.client_ref, func.count()).where(OutboxMessage.tenant_ref == tenant)
        .group_by(OutboxMessage.client_ref)
    ).all()
    host.session().rollback()
    return {str(c): int(n) for c, n in rows}


def _twin(host: TestHost) -> TestHost:
    """Another process's host on the same database and clients."""
    other = type(host)(host.engine)
    other.clients, other.practices, other.active = host.clients, host.practices, host.active
    other.clock = host.clock
    return other


def test_start_records_a_job_and_queues_no_mail(batch_host: TestHost) -> None:
    host = batch_host
    tenant, _ = _practice(host)
    first = jobs.start_batch(host, tenant, actor="staff:s1")
    second = jobs.start_batch(host, tenant, actor="staff:s2")
    assert first.created and not second.created and second.job_id == first.job_id
    assert _rows_per_client(host, tenant) == {}
    job = jobs.job_progress(host, tenant, first.job_id)
    assert job is not None and (job.state, job.done, job.total, job.asked) == ("queued", 0,
                                                                               None, 0)
    assert jobs.unfinished_job(host, tenant) == first.job_id


def test_the_relay_runs_the_job_and_then_sends_its_mail(
    batch_host: TestHost, smtp_server: SmtpServer
) -> None:
    host = batch_host
    tenant, clients = _practice(host)
    job_id = jobs.start_batch(host, tenant, actor="staff:s1").job_id
    report = send_due(host, tenant=tenant, transport=smtp_server.transport(), limit=1000)
    assert (report.jobs, report.sent) == (1, N)
    assert sorted(str(m.message["To"]).split("<")[-1].rstrip(">")
                  for m in smtp_server.messages) == sorted(f"k{i}@example.org" for i in range(N))
    job = jobs.job_progress(host, tenant, job_id)
    assert job is not None and job.finished and job.state == "done"
    assert (job.total, job.done, job.asked, job.skipped_no_email) == (N + 1, N + 1, N, 1)
    assert jobs.unfinished_job(host, tenant) is None
    assert sorted(_rows_per_client(host, tenant)) == sorted(clients)
    # The relay's next round finds no job and sends nothing again.
    again = send_due(host, tenant=tenant, transport=smtp_server.transport())
    assert (again.jobs, again.sent, len(smtp_server.messages)) == (0, 0, N)
    requested = host.session().scalar(select(func.count()).select_from(ConsentEvent).where(
        ConsentEvent.tenant_ref == tenant, ConsentEvent.state == "requested"))
    assert requested == N


def test_two_relays_at_once_ask_each_client_once(batch_host: TestHost) -> None:
    host = batch_host
    tenant, clients = _practice(host)
    job_id = jobs.start_batch(host, tenant, actor="staff:s1").job_id
    twins = [_twin(host) for _ in range(2)]
    ran: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def relay(h: TestHost) -> None:
        try:
            barrier.wait()
            ran.append(jobs.run_pending(h, tenant=tenant, chunk_size=5))
        except BaseException as exc:
            errors.append(exc)
        finally:
            h.session().rollback()
            h.close()

    threads = [threading.Thread(target=relay, args=(h,)) for h in twins]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sorted(ran) == [0, 1]  # one of them ran the job, the other found it taken
    assert _rows_per_client(host, tenant) == dict.fromkeys(clients, 1)
    job = jobs.job_progress(host, tenant, job_id)
    assert job is not None and (job.state, job.done, job.asked) == ("done", N + 1, N)


class _Killed(BaseException):
    """The runner's process ends here (nothing after it runs, nothing is cleaned up)."""


def test_a_runner_killed_after_a_chunk_is_taken_over_and_asks_nobody_twice(
    batch_host: TestHost,
) -> None:
    host = batch_host
    tenant, clients = _practice(host)
    job_id = jobs.start_batch(host, tenant, actor="staff:s1").job_id
    seen: list[int] = []

    def dies_after_two_chunks(job: jobs.JobProgress) -> None:
        seen.append(job.done)
        if len(seen) == 2:
            raise _Killed()

    with pytest.raises(_Killed):
        jobs.run_pending(host, tenant=tenant, chunk_size=5, progress=dies_after_two_chunks)
    host.session().rollback()
    half = jobs.job_progress(host, tenant, job_id)
    assert half is not None and (half.state, half.done) == ("running", 10)
    assert len(_rows_per_client(host, tenant)) == half.asked > 0
    # Another relay leaves it alone while the lease holds, and takes it over after.
    other = _twin(host)
    assert jobs.run_pending(other, tenant=tenant, chunk_size=5) == 0
    other.clock = host.clock + jobs.LEASE * 2
    assert jobs.run_pending(other, tenant=tenant, chunk_size=5) == 1
    other.close()
    done = jobs.job_progress(host, tenant, job_id)
    assert done is not None and done.state == "done"
    assert (done.done, done.asked, done.skipped_no_email, done.skipped_pending) == (N + 1, N, 1,
                                                                                    0)
    assert _rows_per_client(host, tenant) == dict.fromkeys(clients, 1)


def test_a_job_that_cannot_go_on_ends_as_failed_with_the_reason(batch_host: TestHost) -> None:
    host = batch_host
    tenant, _ = _practice(host)
    job_id = jobs.start_batch(host, tenant, actor="staff:s1").job_id
    host.practices[tenant] = attrs.evolve(host.practices[tenant],
                                          name="Klinik\nBcc: x@example.org")
    assert jobs.run_pending(host, tenant=tenant) == 1
    job = jobs.job_progress(host, tenant, job_id)
    assert job is not None and job.state == "failed" and job.error
    assert "Bcc" not in job.error
    assert jobs.unfinished_job(host, tenant) is None  # a new press may start again
    assert jobs.start_batch(host, tenant, actor="staff:s1").created


def test_two_presses_at_once_record_one_job(batch_host: TestHost) -> None:
    host = batch_host
    tenant, _ = _practice(host)
    twins = [_twin(host) for _ in range(2)]
    started: list[jobs.Started] = []
    barrier = threading.Barrier(2)

    def press(h: TestHost) -> None:
        try:
            barrier.wait()
            started.append(jobs.start_batch(h, tenant, actor="staff:s1"))
        finally:
            h.session().rollback()
            h.close()

    threads = [threading.Thread(target=press, args=(h,)) for h in twins]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(started) == 2 and len({s.job_id for s in started}) == 1
    assert sorted(s.created for s in started) == [False, True]

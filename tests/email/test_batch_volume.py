"""Volume (slow): a batch request to a 100,000-client practice, run twice, streams the
clients and queues each exactly once; a run of mails through aiosmtpd over one
connection.  The times are printed (run with ``-s``) for the project notes; speed
targets belong to the benchmark, so nothing here asserts a duration."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostkit import TestHost, clients_of, create_client_table, hostkit_client
from smtp_support import SmtpServer, running_server
from sqlalchemy import Engine, func, insert, select, text

from hookspecs.types import ClientInfo, ClientRef, ClientSelect, PracticeInfo, TenantRef
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.db import make_engine, upgrade
from samtycke_plugin.email import asking
from samtycke_plugin.email import batch as batch_requests
from samtycke_plugin.email.relay import send_due
from samtycke_plugin.models import WAITING_REQUEST, ConsentEvent, ConsentRequest, OutboxMessage

N = 100_000


class StreamingHost(TestHost):
    """A host whose client table is generated on the fly: nothing holds 100k clients."""

    __test__ = False

    def __init__(self, engine: Engine, tenant: TenantRef, n: int) -> None:
        super().__init__(engine)
        self.tenant, self.n = tenant, n
        self.yielded = 0

    def _client(self, i: int) -> ClientInfo:
        return ClientInfo(ref=ClientRef(f"c{i:07d}"), name=f"Klient {i}",
                          email=f"klient{i}@example.org", locale="sv" if i % 4 else "en")

    def iter_clients(self, tenant: TenantRef) -> Iterator[ClientInfo]:
        if tenant != self.tenant:
            return
        for i in range(self.n):
            self.yielded += 1
            yield self._client(i)

    def lookup_client(self, tenant: TenantRef, client: ClientRef) -> ClientInfo | None:
        if tenant != self.tenant or not client.startswith("c") or not client[1:].isdigit():
            return None
        i = int(client[1:])
        return self._client(i) if i < self.n else None


class QueryStreamingHost(StreamingHost):
    """The same clients, also in a table of the shared database and offered as a query
    (``hookspecs.host.ClientQuery``): the set-based batch."""

    __test__ = False

    def __init__(self, engine: Engine, tenant: TenantRef, n: int) -> None:
        super().__init__(engine, tenant, n)
        create_client_table(engine)
        with engine.begin() as conn:
            conn.execute(insert(hostkit_client), [
                {"tenant": tenant, "ref": c.ref, "name": c.name, "email": c.email}
                for c in map(self._client, range(n))
            ])

    def client_query(self, tenant: TenantRef) -> ClientSelect:
        return clients_of(tenant)


@pytest.fixture
def big_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'big.sqlite'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _count(host: TestHost, *where: object) -> int:
    host.session().rollback()
    return int(host.session().scalar(select(func.count()).select_from(OutboxMessage).where(*where)) or 0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", [StreamingHost, QueryStreamingHost])
def test_batch_of_100k_clients_twice_queues_each_client_once(
    big_engine: Engine, kind: type[StreamingHost]
) -> None:
    tenant = TenantRef("tbig")
    host = kind(big_engine, tenant, N)
    host.practices[tenant] = PracticeInfo(
        ref=tenant, name="Stora Kliniken", email="info@stora.example", phone=None, locale="sv"
    )
    hooks = host.hooks()
    host.activate(hooks, tenant)

    started, cpu = time.perf_counter(), time.process_time()
    first = batch_requests.request_batch(host, tenant, actor="staff:s1", total=N)
    first_s, first_cpu = time.perf_counter() - started, time.process_time() - cpu
    assert (first.asked, first.skipped_valid, first.skipped_pending, first.skipped_no_email) == (N, 0, 0, 0)

    started = time.perf_counter()
    second = batch_requests.request_batch(host, tenant, actor="staff:s1", total=N)
    second_s = time.perf_counter() - started
    assert (second.asked, second.skipped_pending) == (0, N)
    assert host.yielded == (0 if kind is QueryStreamingHost else 2 * N)

    assert _count(host, OutboxMessage.tenant_ref == tenant) == N
    distinct = host.session().scalar(
        select(func.count(func.distinct(OutboxMessage.client_ref))).where(OutboxMessage.tenant_ref == tenant)
    )
    assert distinct == N
    waiting = host.session().scalar(
        select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.tenant_ref == tenant, text(WAITING_REQUEST)
        )
    )
    assert waiting == N
    # Links and ``requested`` events are made as the relay claims the rows: a sample.
    session = host.session()
    sample = session.scalars(
        select(OutboxMessage).where(OutboxMessage.tenant_ref == tenant).limit(50)
    ).all()
    assert set(asking.complete_requests(host, session, sample).values()) == {None}
    session.commit()
    pending = host.session().scalar(
        select(func.count()).select_from(ConsentRequest).where(
            ConsentRequest.tenant_ref == tenant, ConsentRequest.used_at.is_(None),
            ConsentRequest.revoked_at.is_(None),
        )
    )
    assert pending == 50
    assert host.session().scalar(
        select(func.count()).select_from(ConsentEvent).where(ConsentEvent.tenant_ref == tenant)
    ) == 50
    assert verify_chain(host.session(), tenant, check_evidence=False).ok
    host.session().rollback()
    print(f"\n[volume] {kind.__name__} batch request, {N} clients, SQLite file: first run {first_s:.1f} s wall, "
          f"{first_cpu:.1f} s CPU ({N / first_s:,.0f} clients/s wall); second run (all "
          f"skipped) {second_s:.1f} s")
    host.close()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


@pytest.mark.slow
def test_mail_throughput_through_aiosmtpd(host: TestHost, smtp_server: SmtpServer) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant)
    for i in range(300):
        host.new_client(tenant, email=f"m{i}@example.org")
    assert batch_requests.request_batch(host, tenant, actor="staff:s1").asked == 300
    started, cpu = time.perf_counter(), time.process_time()
    report = send_due(host, tenant=tenant, transport=smtp_server.transport(), limit=1000)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert report.sent == 300 and len(smtp_server.messages) == 300
    assert len({m.message["Message-ID"] for m in smtp_server.messages}) == 300
    print(f"\n[volume] {host.engine.dialect.name}: 300 mails through aiosmtpd in {elapsed:.2f} s "
          f"= {300 / elapsed:.0f} mails/s wall ({cpu:.2f} s CPU incl. the server thread; one "
          f"SMTP connection; claim, render, send and record each)")

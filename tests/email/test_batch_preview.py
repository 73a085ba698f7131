"""The batch preview: who a batch request would mail, and who it leaves out and why,
worked out without writing anything and counted exactly as the job counts."""

from __future__ import annotations

from batch_support import practice_of_every_kind, rows
from hostkit import TestHost
from sqlalchemy import select

from samtycke_plugin.email import batch as batch_requests
from samtycke_plugin.email.batch import Reason
from samtycke_plugin.email.batch_preview import preview_batch
from samtycke_plugin.models import OutboxMessage


def test_the_preview_names_exactly_who_is_left_out_and_why_and_writes_nothing(
    batch_host: TestHost,
) -> None:
    host = batch_host
    tenant, kinds = practice_of_every_kind(host)
    before = rows(host, tenant)

    preview = preview_batch(host, tenant, chunk_size=3)

    assert rows(host, tenant) == before  # nothing written, nothing queued
    assert preview.total == 9 and preview.asked == 2
    listed = {reason: {c.ref for c in clients} for reason, clients in preview.left_out.items()}
    assert listed == {reason: refs for reason, refs in kinds.items() if reason is not None}
    assert {r: n for r, n in preview.counts.items()} == {
        reason: len(refs) for reason, refs in kinds.items() if reason is not None
    }
    names = {c.name for clients in preview.left_out.values() for c in clients}
    assert {"Wilma Återkallat", "Rut Nej", "Nils Utan", "Vera Giltig"} <= names
    # The mail as the first client to be mailed gets it, in their language.
    assert preview.example is not None and preview.example.ref in kinds[None]
    assert preview.mail is not None and preview.mail_problem is None
    assert "Kliniken Lugn & Ro" in preview.mail.subject
    assert preview.example.name in preview.mail.text
    assert "/samtycke/c/example" in preview.mail.text

    # The job then does what the preview said, reason by reason.
    result = batch_requests.request_batch(host, tenant, actor="staff:s1", chunk_size=3)
    assert (result.asked, result.skipped_valid, result.skipped_pending, result.skipped_no_email,
            result.skipped_bad_name, result.skipped_withdrawn, result.skipped_refused) == (
        preview.asked, *(preview.counts[r] for r in (
            Reason.VALID, Reason.PENDING, Reason.NO_EMAIL, Reason.BAD_NAME, Reason.WITHDRAWN,
            Reason.REFUSED)),
    )
    after = preview_batch(host, tenant)
    assert after.asked == 0 and after.counts[Reason.PENDING] == 4


def test_a_large_practice_names_the_first_clients_per_reason_and_counts_all(
    batch_host: TestHost,
) -> None:
    host = batch_host
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, ask_clients_without_consent=True)
    for i in range(5):
        host.new_client(tenant, name=f"Utan {i}", email=None)
    preview = preview_batch(host, tenant, cap=2, chunk_size=2)
    assert preview.counts[Reason.NO_EMAIL] == 5
    assert len(preview.left_out[Reason.NO_EMAIL]) == 2
    assert preview.unlisted(Reason.NO_EMAIL) == 3
    assert preview.asked == 0 and preview.example is None and preview.mail is None


def test_a_practice_name_that_cannot_go_into_a_mail_is_said_instead_of_the_mail(
    host: TestHost,
) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant("Kliniken\nBcc: x@example.org")
    host.activate(hooks, tenant, ask_clients_without_consent=True)
    host.new_client(tenant)
    preview = preview_batch(host, tenant)
    assert preview.asked == 1 and preview.mail is None
    assert preview.mail_problem is not None and "practice's name" in preview.mail_problem


def test_clients_who_said_no_are_left_out_for_the_pause_and_asked_after_it(
    batch_host: TestHost,
) -> None:
    host = batch_host
    tenant, kinds = practice_of_every_kind(host)
    said_no = kinds[Reason.WITHDRAWN] | kinds[Reason.REFUSED]

    host.advance(days=364)  # within the practice's pause (365 days by default)
    preview = preview_batch(host, tenant)
    assert preview.counts[Reason.WITHDRAWN] == preview.counts[Reason.REFUSED] == 1

    host.advance(days=2)  # the pause is over: a batch may ask them again
    preview = preview_batch(host, tenant)
    assert preview.counts[Reason.WITHDRAWN] == preview.counts[Reason.REFUSED] == 0
    result = batch_requests.request_batch(host, tenant, actor="staff:s1", chunk_size=3)
    assert (result.skipped_withdrawn, result.skipped_refused) == (0, 0)
    assert result.asked == preview.asked
    waiting = set(host.session().scalars(
        select(OutboxMessage.client_ref).where(OutboxMessage.tenant_ref == tenant)))
    host.session().rollback()
    assert said_no <= waiting

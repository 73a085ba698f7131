"""A practice with one client of every kind a batch leaves out (for the batch preview's
tests of the domain function, the page and the command line)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hostkit import TestHost, staff, submission
from sqlalchemy import func, select

from hookspecs.facade import AppHooks
from hookspecs.types import BookingFormContext, BookingRef, ClientRef, TenantRef
from samtycke_plugin import consent
from samtycke_plugin.email import batch as batch_requests
from samtycke_plugin.email.batch import Reason
from samtycke_plugin.email.requests import send_request
from samtycke_plugin.models import BatchJob, ConsentEvent, ConsentRequest, OutboxMessage

GIVEN = "2026-11-20T12:00:00+00:00"


def _book_unticked(host: TestHost, hooks: AppHooks, tenant: str, client: str) -> None:
    """The client books online and leaves the consent box unticked: a refusal."""
    frags = hooks.form_fragments(
        BookingFormContext(tenant=TenantRef(tenant), client=ClientRef(client), locale="sv")
    )
    host.session().rollback()
    marker = 'name="samtycke_text" value="'
    start = frags[0].html.index(marker) + len(marker)
    text_id = int(frags[0].html[start : frags[0].html.index('"', start)])
    sub = submission(tenant, client, ticked=False, text_id=text_id, is_new=True)
    assert not hooks.submit_check(sub)
    hooks.submitted(sub, BookingRef(f"b-{client}"), ClientRef(client))
    host.session().commit()


def practice_of_every_kind(host: TestHost) -> tuple[str, dict[Reason | None, set[str]]]:
    """A practice with one client left out for each reason, plus two who are mailed
    (``None``) and a second pending one whose request is only queued."""
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, ask_clients_without_consent=True)
    new = host.new_client
    valid = new(tenant, name="Vera Giltig", email="vera@example.org")
    consent.record_manual(host, tenant, valid, staff(), method="paper",
                          given_at=datetime.fromisoformat(GIVEN), note=None)
    withdrew = new(tenant, name="Wilma Återkallat", email="wilma@example.org")
    consent.record_manual(host, tenant, withdrew, staff(), method="paper",
                          given_at=datetime.fromisoformat(GIVEN), note=None)
    consent.withdraw(host, tenant, withdrew, actor="staff:s1", channel="manual",
                     method="reported_by_staff", by_client=True)
    host.session().commit()
    declined = new(tenant, name="Rut Nej", email="rut@example.org")
    _book_unticked(host, hooks, tenant, declined)
    linked = new(tenant, name="Per Länk", email="per@example.org")
    send_request(host, tenant, linked, actor="staff:s1")
    host.session().commit()
    queued = new(tenant, name="Kim Kö", email="kim@example.org")
    batch_requests.request_batch(host, tenant, actor="staff:s1", clients=[queued])
    no_address = new(tenant, name="Nils Utan", email=None)
    bad_name = new(tenant, name="Bo\nRadbrytning", email="bo@example.org")
    mailed = {new(tenant, name="Anna Ny", email="anna@example.org", locale="en"),
              new(tenant, name="Ebba Ny", email="ebba@example.org")}
    kinds: dict[Reason | None, set[str]] = {
        Reason.VALID: {valid}, Reason.WITHDRAWN: {withdrew}, Reason.REFUSED: {declined},
        Reason.PENDING: {linked, queued}, Reason.NO_EMAIL: {no_address},
        Reason.BAD_NAME: {bad_name}, None: mailed,
    }
    host.session().rollback()
    return tenant, kinds


def rows(host: TestHost, tenant: str) -> dict[str, int]:
    """How many rows the practice has in each table a batch could write to."""
    host.session().rollback()
    tables: dict[str, Any] = {"outbox": OutboxMessage, "requests": ConsentRequest,
                              "events": ConsentEvent, "jobs": BatchJob}
    return {
        name: host.session().scalar(
            select(func.count()).select_from(model).where(model.tenant_ref == tenant)
        ) or 0
        for name, model in tables.items()
    }

"""Who is asked for consent, and who is left alone: re-asking after a change of content
under every setting that asks at booking, and batch requests that leave out clients who
declined or withdrew (both batch strategies) — on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from hostkit import QueryHost, TestHost, complete_waiting_requests, staff, submission
from sqlalchemy import func, select
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client
from werkzeug.wrappers import Response

from hookspecs.facade import AppHooks
from hookspecs.types import BookingFormContext, BookingRef, ClientRef, TenantRef
from samtycke_plugin import common, consent, practice_texts, practices
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.email import batch as batch_requests
from samtycke_plugin.email import jobs as batch_jobs
from samtycke_plugin.email import outbox
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.ledger import projection, replay
from samtycke_plugin.models import KIND_REQUEST, ConsentEvent, ConsentRequest, OutboxMessage
from samtycke_plugin.web import make_wsgi_app
from samtycke_plugin.web.base import session_csrf_token

SIGN_IN = "sign-in-1"  # the host's sign-in session the practitioner pages run in

P = common.MOUNT_PREFIX
GIVEN_AT = datetime(2026, 11, 1, tzinfo=UTC)
ONLY_NEW = {"ask_new_clients": True, "ask_clients_without_consent": False}
NOBODY = {"ask_new_clients": False, "ask_clients_without_consent": False}


def _practice(host: TestHost, **settings: object) -> tuple[AppHooks, TenantRef]:
    """A practice set up with ``settings`` (the defaults, which ask every client without
    valid consent at booking, when none are given)."""
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, **(settings or {"ask_clients_without_consent": True}))
    return hooks, tenant


def _give(host: TestHost, tenant: str, client: str) -> None:
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=GIVEN_AT,
                          note=None)
    host.session().commit()


def _change_content(host: TestHost, tenant: str) -> None:
    practice = practices.require_practice(host.session(), tenant)
    practice_texts.publish_text(
        host, tenant, bodies={"sv": "Vi sparar nu också dina journalanteckningar i molnet.\n"},
        kind="content", reason=None, actor="staff:s1", expected_major=practice.current_major,
    )
    host.session().commit()


def _form_text_id(host: TestHost, hooks: AppHooks, tenant: str, client: str) -> int | None:
    """The text version the booking form shows this returning client (None: not asked)."""
    frags = hooks.form_fragments(
        BookingFormContext(tenant=TenantRef(tenant), client=ClientRef(client), locale="sv")
    )
    host.session().rollback()
    if not frags:
        return None
    marker = 'name="samtycke_text" value="'
    start = frags[0].html.index(marker) + len(marker)
    return int(frags[0].html[start : frags[0].html.index('"', start)])


def _book(host: TestHost, hooks: AppHooks, tenant: str, client: str, **kw: Any) -> list[Any]:
    sub = submission(tenant, client, **kw)
    vetoes = hooks.submit_check(sub)
    if vetoes:
        host.session().rollback()
        return list(vetoes)
    hooks.submitted(sub, BookingRef(f"b-{client}"), ClientRef(client))
    host.session().commit()
    return []


def _status(host: TestHost, tenant: str, client: str) -> str:
    host.session().rollback()
    return consent.client_status(host, tenant, client).status.value


def _last_state(host: TestHost, tenant: str, client: str) -> str | None:
    host.session().rollback()
    return host.session().scalar(
        select(ConsentEvent.state)
        .where(ConsentEvent.tenant_ref == tenant, ConsentEvent.client_ref == client)
        .order_by(ConsentEvent.seq.desc())
        .limit(1)
    )


def _rows_for(host: TestHost, tenant: str, client: str) -> tuple[int, int]:
    """(request mails, consent links) of one client (the receipt of a consent recorded
    on paper, and its withdrawal link, are neither)."""
    host.session().rollback()
    counts = []
    for model, which in ((OutboxMessage, OutboxMessage.kind == KIND_REQUEST),
                         (ConsentRequest, ConsentRequest.purpose == "consent")):
        counts.append(int(host.session().scalar(
            select(func.count()).select_from(model).where(
                model.tenant_ref == tenant, model.client_ref == client,  # type: ignore[attr-defined]
                which,
            )
        ) or 0))
    return counts[0], counts[1]


# -- re-asking after a change of content (F12) ---------------------------------------------------


def test_a_returning_client_with_outdated_consent_is_asked_when_only_new_clients_are(
    host: TestHost,
) -> None:
    hooks, tenant = _practice(host, **ONLY_NEW)
    returning, never_asked = host.new_client(tenant), host.new_client(tenant)
    _give(host, tenant, returning)
    assert _form_text_id(host, hooks, tenant, returning) is None  # valid: not asked
    _change_content(host, tenant)
    assert _status(host, tenant, returning) == "outdated"

    shown = _form_text_id(host, hooks, tenant, returning)
    assert shown is not None  # the booking form asks the returning client again
    assert _form_text_id(host, hooks, tenant, never_asked) is None  # the setting still holds
    assert _book(host, hooks, tenant, returning, ticked=True, text_id=shown, is_new=False) == []
    assert _last_state(host, tenant, returning) == "renewed"  # the gate recorded consent
    assert _status(host, tenant, returning) == "valid"
    assert verify_chain(host.session(), tenant).ok
    assert replay(host.session(), tenant) == projection(host.session(), tenant)


def test_a_client_asked_by_mail_after_the_change_is_still_asked_at_booking(
    host: TestHost,
) -> None:
    """E-mailing the outdated clients (what the save message offers) does not take them
    out of the booking's asking while they have not answered."""
    hooks, tenant = _practice(host, **ONLY_NEW)
    client = host.new_client(tenant)
    _give(host, tenant, client)
    _change_content(host, tenant)
    mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    assert _status(host, tenant, client) == "requested"
    shown = _form_text_id(host, hooks, tenant, client)
    assert shown is not None
    assert _book(host, hooks, tenant, client, ticked=True, text_id=shown) == []
    assert _status(host, tenant, client) == "valid"


def test_a_practice_that_asks_at_no_booking_does_not_ask_outdated_clients(
    host: TestHost,
) -> None:
    hooks, tenant = _practice(host, **NOBODY)
    client = host.new_client(tenant)
    _give(host, tenant, client)
    _change_content(host, tenant)
    assert _form_text_id(host, hooks, tenant, client) is None
    assert _book(host, hooks, tenant, client, ticked=False) == []
    assert _status(host, tenant, client) == "outdated"  # nothing recorded


def _token(host: TestHost, tenant: str) -> str:
    return session_csrf_token(host.app_secret("samtycke"), SIGN_IN, ("staff", tenant, "s1"))


def _pages(host: TestHost, tenant: str) -> Client:
    app = make_wsgi_app()

    def hosted(environ: dict[str, Any], start_response: Any) -> Any:
        environ["booking.host"] = host
        environ["booking.tenant"] = tenant
        environ["booking.staff"] = staff()
        environ["booking.session"] = SIGN_IN
        return app(environ, start_response)

    return Client(DispatcherMiddleware(Response("host page", status=404), {P: hosted}))


def _save_content_change(host: TestHost, tenant: str, lang: str) -> str:
    """Save a change of content through the text editor; the page shown after it."""
    practice = practices.require_practice(host.session(), tenant)
    texts = practice_texts.current_texts(host.session(), practice)
    form = {
        "action": "save", "kind": "content", "expected_major": str(practice.current_major),
        "text_sv": texts["sv"].body + "\nVi använder nu ett journalsystem i molnet.\n",
        "text_en": texts["en"].body,
        "csrf_token": _token(host, tenant),
    }
    host.session().rollback()
    pages = _pages(host, tenant)
    saved = pages.post(f"{P}/text", data=form, headers={"Accept-Language": lang})
    assert saved.status_code == 303, saved.get_data(as_text=True)
    page = pages.get(saved.headers["Location"], headers={"Accept-Language": lang})
    return page.get_data(as_text=True)


def test_the_save_message_says_who_is_asked_and_when(host: TestHost) -> None:
    _, tenant = _practice(host, **ONLY_NEW)
    for _ in range(2):
        _give(host, tenant, host.new_client(tenant))
    page = _save_content_change(host, tenant, "en")
    assert (
        "2 clients who had consented must consent again: they are asked at their next "
        "online booking, and you can e-mail them a request now under “Ask clients”."
    ) in page
    sv = _save_content_change(host, tenant, "sv")  # nobody consented to version 2
    assert "Ingen klient hade giltigt samtycke till den tidigare texten" in sv

    _, quiet = _practice(host, **NOBODY)
    _give(host, quiet, host.new_client(quiet))
    page = _save_content_change(host, quiet, "sv")
    assert "1 klient som hade samtyckt behöver samtycka igen" in page
    assert "Dina inställningar frågar ingen vid onlinebokning" in page
    assert "nästa onlinebokning" not in page


# -- batch requests leave out clients who said no (F7) -------------------------------------------


def _said_no(host: TestHost, hooks: AppHooks, tenant: str) -> tuple[str, str]:
    """A client who withdrew their consent and one who declined it at booking."""
    withdrew, declined = host.new_client(tenant), host.new_client(tenant)
    _give(host, tenant, withdrew)
    consent.withdraw(host, tenant, withdrew, actor="staff:s1", channel="manual",
                     method="reported_by_staff", by_client=True)
    host.session().commit()
    shown = _form_text_id(host, hooks, tenant, declined)
    assert _book(host, hooks, tenant, declined, ticked=False, text_id=shown, is_new=True) == []
    assert (_status(host, tenant, withdrew), _status(host, tenant, declined)) == (
        "withdrawn", "refused"
    )
    return withdrew, declined


def test_a_batch_does_not_mail_clients_who_withdrew_or_declined(batch_host: TestHost) -> None:
    host = batch_host
    hooks, tenant = _practice(host)
    withdrew, declined = _said_no(host, hooks, tenant)
    asked = [host.new_client(tenant, email=f"k{i}@example.org") for i in range(3)]

    result = batch_requests.request_batch(host, tenant, actor="staff:s1", chunk_size=2)
    complete_waiting_requests(host, tenant)  # what the relay does as it sends
    for client in (withdrew, declined):
        assert _rows_for(host, tenant, client) == (0, 0)  # never mailed, no link
    for client in asked:
        assert _rows_for(host, tenant, client) == (1, 1)
    # the badges still show the client's own "no"
    assert _status(host, tenant, withdrew) == "withdrawn"
    assert _status(host, tenant, declined) == "refused"
    badges = hooks.list_badges(TenantRef(tenant), [ClientRef(withdrew), ClientRef(declined)], "sv")
    host.session().rollback()
    assert [b.label for b in badges[ClientRef(withdrew)]] == ["Samtycke återkallat"]
    assert [b.label for b in badges[ClientRef(declined)]] == ["Samtycke nekat"]
    # and the result says who was left out, and why
    assert (result.asked, result.skipped_withdrawn, result.skipped_refused) == (3, 1, 1)
    assert (result.skipped_valid, result.skipped_pending, result.skipped_no_email) == (0, 0, 0)
    assert result.total == 5

    again = batch_requests.request_batch(host, tenant, actor="staff:s1")
    assert (again.asked, again.skipped_pending, again.skipped_withdrawn,
            again.skipped_refused) == (0, 3, 1, 1)
    host.session().rollback()
    assert verify_chain(host.session(), tenant).ok
    assert replay(host.session(), tenant) == projection(host.session(), tenant)


def test_the_relay_does_not_mail_a_client_who_withdrew_after_the_batch_queued_them(
    batch_host: TestHost,
) -> None:
    host = batch_host
    _, tenant = _practice(host)
    client = host.new_client(tenant)
    _give(host, tenant, client)
    _change_content(host, tenant)  # outdated: the batch asks them
    assert batch_requests.request_batch(host, tenant, actor="staff:s1").asked == 1
    consent.withdraw(host, tenant, client, actor="staff:s1", channel="manual",
                     method="reported_by_staff", by_client=True)
    host.session().commit()
    assert complete_waiting_requests(host, tenant) == 0
    host.session().rollback()
    row = host.session().scalars(
        select(OutboxMessage).where(OutboxMessage.tenant_ref == tenant,
                                    OutboxMessage.kind == KIND_REQUEST)
    ).one()
    assert row.status == outbox.CANCELLED and "withdrew" in (row.last_error or "")
    assert _status(host, tenant, client) == "withdrawn"


def test_both_batch_strategies_count_the_same_clients(engine: Any) -> None:
    results = []
    for cls in (TestHost, QueryHost):
        host = cls(engine)
        try:
            hooks, tenant = _practice(host)
            _said_no(host, hooks, tenant)
            _said_no(host, hooks, tenant)
            host.new_client(tenant)
            pending = host.new_client(tenant)
            mail_requests.send_request(host, tenant, pending, actor="staff:s1")
            host.session().commit()
            results.append(batch_requests.request_batch(host, tenant, actor="staff:s1"))
        finally:
            host.close()
    assert [(r.asked, r.skipped_valid, r.skipped_pending, r.skipped_withdrawn,
             r.skipped_refused, r.total) for r in results] == [
        (1, 0, 1, 2, 2, 6), (1, 0, 1, 2, 2, 6)
    ]


def test_an_automatic_request_leaves_out_clients_who_said_no(host: TestHost) -> None:
    """The staff-booking trigger asks a client without consent, but not one who said no."""
    hooks, tenant = _practice(host, email_request_after_staff_booking=True)
    withdrew, declined = _said_no(host, hooks, tenant)
    for n, client in enumerate((withdrew, declined)):
        sub = submission(tenant, client, channel="staff")
        assert hooks.submit_check(sub) == []
        hooks.submitted(sub, BookingRef(f"s{n}"), ClientRef(client))
        host.session().commit()
        assert _rows_for(host, tenant, client) == (0, 0)
    assert (_status(host, tenant, withdrew), _status(host, tenant, declined)) == (
        "withdrawn", "refused"
    )


def test_a_practitioner_can_still_ask_one_client_who_withdrew(host: TestHost) -> None:
    """A request sent from the client's page is the practitioner's own decision: it is
    sent, and the withdrawal stays in the client's history."""
    hooks, tenant = _practice(host)
    withdrew, _ = _said_no(host, hooks, tenant)
    pages = _pages(host, tenant)
    path = f"{P}/clients/{withdrew}/obtain"
    page = pages.get(path, headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "This client has withdrawn their consent." in page
    assert "Requests to everyone leave them out" in page
    token = _token(host, tenant)
    sent = pages.post(path, data={"action": "send", "csrf_token": token})
    assert sent.status_code == 303, sent.get_data(as_text=True)
    assert _rows_for(host, tenant, withdrew) == (1, 1)
    assert _status(host, tenant, withdrew) == "requested"
    host.session().rollback()
    states = host.session().scalars(
        select(ConsentEvent.state)
        .where(ConsentEvent.tenant_ref == tenant, ConsentEvent.client_ref == withdrew)
        .order_by(ConsentEvent.seq)
    ).all()
    assert list(states) == ["given", "withdrawn", "requested"]


def test_the_batch_page_shows_who_was_left_out(host: TestHost) -> None:
    hooks, tenant = _practice(host)
    _said_no(host, hooks, tenant)
    host.new_client(tenant)
    pages = _pages(host, tenant)
    token = _token(host, tenant)
    preview = pages.get(f"{P}/batch").get_data(as_text=True)
    key = re.search(r'name="confirm_key" value="([^"]*)"', preview)
    assert key is not None
    done = pages.post(f"{P}/batch", data={"csrf_token": token, "confirm_key": key.group(1)})
    assert done.status_code == 303
    host.session().rollback()
    assert batch_jobs.run_pending(host, tenant=tenant) == 1  # what the relay does first
    sv = pages.get(done.headers["Location"], headers={"Accept-Language": "sv"}).get_data(
        as_text=True
    )
    assert "Har tackat nej till samtycke (tillfrågades inte igen): 1" in sv
    assert "Har återkallat sitt samtycke (tillfrågades inte igen): 1" in sv
    en = pages.get(done.headers["Location"], headers={"Accept-Language": "en"}).get_data(
        as_text=True
    )
    assert "Declined to consent (not asked again): 1" in en
    assert "Withdrew their consent (not asked again): 1" in en

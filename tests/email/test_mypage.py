"""The client's own page, "Mina samtycken": reached from every receipt, long-lived links
stored as hashes, re-issued and revocable, one click per purpose to give or withdraw
(also three years later), a confirmation mail after each withdrawal, the printable
receipt, the "send me my link" form that never tells whether an address is known, the
practitioner's revocation, and the host's link for its own mails.  SQLite and
PostgreSQL (the ``host`` fixture)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hostkit import TestHost, staff
from mail_look_support import assert_equivalent
from reliability_support import dump
from smtp_support import Browser, Received, SmtpServer, form_fields, path_of, running_server
from sqlalchemy import func, select
from test_practice_pages import Pages, current_body, events, set_up
from test_roles import who

from hookspecs.types import ClientRef, Permission, TenantRef
from samtycke_plugin import common, consent, practice_texts
from samtycke_plugin.email import page_links
from samtycke_plugin.email.relay import send_due
from samtycke_plugin.email.tokens import token_hash
from samtycke_plugin.models import LinkWish, PageLink
from samtycke_plugin.text import sha256
from samtycke_plugin.web import mypage
from samtycke_plugin.web.ratelimit import SlidingWindowLimiter

PAGE_RE = re.compile(r"https?://[^\s\"'<>]+/apps/samtycke/mina/([A-Za-z0-9_-]{43})")
MY = f"{common.MOUNT_PREFIX}/mina"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


@pytest.fixture(autouse=True)
def fresh_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own budgets (the shipped ones: 3 per address, 20 per source)."""
    monkeypatch.setattr(mypage, "ADDRESS_LIMITER",
                        SlidingWindowLimiter(3, 3600.0, clock=lambda: 1e6))
    monkeypatch.setattr(mypage, "SOURCE_LIMITER",
                        SlidingWindowLimiter(20, 3600.0, clock=lambda: 1e6))


def page_token(mail: Received) -> str:
    [token] = set(PAGE_RE.findall(mail.text))
    assert token in mail.html
    return token


def deliver(host: TestHost, server: SmtpServer, tenant: str) -> list[Received]:
    before = len(server.messages)
    send_due(host, tenant=tenant, transport=server.transport())
    return server.messages[before:]


def record_on_paper(host: TestHost, tenant: str, client: str) -> None:
    consent.record_manual(host, tenant, client, staff(), method="paper",
                          given_at=host.now(), note=None)
    host.session().commit()


def form_for(html: str, action: str, purpose: str = "care") -> dict[str, str]:
    """The hidden fields of the page's form for ``action`` on ``purpose``."""
    for form in re.findall(r"<form .*?</form>", html, re.S):
        fields = form_fields(form)
        if fields.get("action") == action and fields.get("purpose") == purpose:
            return fields
    raise AssertionError(f"no {action} form for {purpose}")


def states(host: TestHost, tenant: str) -> list[str]:
    return [e.state for e in events(host, tenant)]


@pytest.fixture
def world(host: TestHost, smtp_server: SmtpServer) -> dict[str, str]:
    """A practice, a client who consented on paper, and the token of their receipt's
    link to their page."""
    tenant = set_up(host)
    client = host.new_client(tenant, name="Greta Given", email="greta@example.org")
    record_on_paper(host, tenant, client)
    [receipt] = deliver(host, smtp_server, tenant)
    assert receipt.link()[0] == "w"  # the receipt of staff-recorded consent
    return {"tenant": tenant, "client": client, "token": page_token(receipt)}


def test_staff_recorded_consent_gets_a_receipt_with_the_link_to_my_consents(
    host: TestHost, world: dict[str, str]
) -> None:
    page = Browser(host).get(f"{MY}/{world['token']}")
    assert page.status_code == 200, page.text
    assert "Mina samtycken" in page.text and "Giltigt samtycke" in page.text
    assert "Du godkände version 1.0 av texten" in page.text
    assert "Återkalla samtycke" in page.text
    # Only the hash is stored.
    host.session().rollback()
    stored = host.session().scalars(select(PageLink.token_hash)).all()
    assert token_hash(world["token"]) in stored and world["token"] not in stored


def test_a_consent_given_three_years_ago_is_withdrawn_with_one_click_and_confirmed(
    host: TestHost, smtp_server: SmtpServer, world: dict[str, str]
) -> None:
    tenant, token = world["tenant"], world["token"]
    host.advance(days=3 * 365 + 1)
    browser = Browser(host)
    page = browser.get(f"{MY}/{token}")
    assert "Giltigt samtycke" in page.text
    done = browser.post(f"{MY}/{token}", data=form_for(page.text, "withdraw"))
    assert done.status_code == 200, done.text
    assert "Ditt samtycke är återkallat" in done.text
    assert states(host, tenant)[-1] == "withdrawn"
    [last] = events(host, tenant)[-1:]
    assert (last.actor, last.channel) == ("client", "client_page")
    [confirmation] = deliver(host, smtp_server, tenant)
    assert "återkallade" in confirmation.message["Subject"]
    assert_equivalent(confirmation)  # what the text part says, the HTML part says
    assert confirmation.links() == []  # no consent or withdrawal link, only the page's
    assert page_token(confirmation)
    assert consent.client_status(host, tenant, world["client"]).status.value == "withdrawn"


def test_giving_from_the_page_uses_the_current_text_and_sends_a_receipt(
    host: TestHost, smtp_server: SmtpServer, world: dict[str, str]
) -> None:
    tenant, token = world["tenant"], world["token"]
    browser = Browser(host)
    page = browser.get(f"{MY}/{token}")
    browser.post(f"{MY}/{token}", data=form_for(page.text, "withdraw"))
    deliver(host, smtp_server, tenant)
    page = browser.get(f"{MY}/{token}")
    give = form_for(page.text, "give")
    done = browser.post(f"{MY}/{token}", data=give)
    assert done.status_code == 200 and "Tack. Ditt samtycke är registrerat" in done.text
    last = events(host, tenant)[-1]
    assert (last.state, last.actor, last.channel) == ("given", "client", "client_page")
    assert last.text_version_id == int(give["text"])
    [receipt] = deliver(host, smtp_server, tenant)
    assert receipt.link()[0] == "w" and page_token(receipt)
    # A second click on the same form records nothing more.
    again = browser.post(f"{MY}/{token}", data=give)
    assert again.status_code == 409
    assert events(host, tenant)[-1].seq == last.seq


def test_after_a_change_of_content_the_page_shows_what_changed_and_gives_to_the_new_text(
    host: TestHost, smtp_server: SmtpServer, world: dict[str, str]
) -> None:
    tenant, token = world["tenant"], world["token"]
    note = "Vi delar nu uppgifter med vår journalleverantör."
    practice_texts.publish_text(host, tenant, bodies={"sv": current_body(host, tenant, "sv")
                                                 + "\nVi delar med journalleverantören.\n"},
                           kind="content", reason=note, actor="staff:s1", expected_major=1)
    host.session().commit()
    browser = Browser(host)
    page = browser.get(f"{MY}/{token}")
    assert "Mottagningen har ändrat texten sedan du samtyckte" in page.text
    assert note in page.text and "Vad har ändrats" in page.text
    give = form_for(page.text, "give")
    assert browser.post(f"{MY}/{token}", data=give).status_code == 200
    last = events(host, tenant)[-1]
    assert last.state == "renewed" and last.text_major == 2
    assert last.change_note_sha256 == sha256(note)
    assert "Giltigt samtycke" in browser.get(f"{MY}/{token}").text


def test_get_and_head_change_nothing(host: TestHost, world: dict[str, str]) -> None:
    tenant, token = world["tenant"], world["token"]
    browser = Browser(host)
    before = dump(host.engine, [tenant])
    seq = events(host, tenant)[-1].seq
    for path in (f"{MY}/{token}", f"{MY}/{token}/kvitto/{seq}", f"{common.MOUNT_PREFIX}/p/"
                 f"{tenant}/mina"):
        assert browser.get(path).status_code == 200, path
        assert browser.head(path).status_code == 200, path
    assert dump(host.engine, [tenant]) == before


def test_a_post_without_the_page_s_csrf_token_is_refused(
    host: TestHost, world: dict[str, str]
) -> None:
    tenant, token = world["tenant"], world["token"]
    browser = Browser(host)
    fields = form_for(browser.get(f"{MY}/{token}").text, "withdraw")
    before = dump(host.engine, [tenant])
    for bad in ("", "forged", fields["csrf_token"] + "x"):
        response = browser.post(f"{MY}/{token}", data={**fields, "csrf_token": bad})
        assert response.status_code == 403
    assert dump(host.engine, [tenant]) == before


def test_revoked_links_are_refused_and_a_new_link_works(
    host: TestHost, world: dict[str, str]
) -> None:
    tenant, client, token = world["tenant"], world["client"], world["token"]
    browser = Browser(host)
    fields = form_for(browser.get(f"{MY}/{token}").text, "withdraw")
    second = page_links.new_url(host, tenant, client, actor="test")  # re-issued
    host.session().commit()
    assert browser.get(f"{MY}/{token}").status_code == 200  # the older one still works
    assert page_links.revoke_all(host, tenant, client) == 2
    host.session().commit()
    before = dump(host.engine, [tenant])
    for path in (f"{MY}/{token}", second.split("/apps/samtycke", 1)[1]):
        refused = browser.get(path if path.startswith(MY) else common.MOUNT_PREFIX + path)
        assert refused.status_code == 410
        assert "fungerar inte längre" in refused.text and "Traceback" not in refused.text
        assert f"/p/{tenant}/mina" in refused.text  # where to get a new link
    english = browser.get(f"{MY}/{token}", headers={"Accept-Language": "en"})
    assert "This link to My consents no longer works" in english.text
    assert browser.post(f"{MY}/{token}", data=fields).status_code == 410
    assert dump(host.engine, [tenant]) == before
    third = page_links.new_url(host, tenant, client, actor="test")
    host.session().commit()
    assert browser.get(common.MOUNT_PREFIX + third.split("/apps/samtycke", 1)[1]
                       ).status_code == 200


def test_unknown_tokens_and_clients_gone_get_a_clear_page(
    host: TestHost, world: dict[str, str]
) -> None:
    tenant, client, token = world["tenant"], world["client"], world["token"]
    browser = Browser(host, addr="10.9.9.9")
    for bad in ("x" * 43, "short", token[:-1] + ("A" if token[-1] != "A" else "B")):
        page = browser.get(f"{MY}/{bad}")
        assert page.status_code == 404 and "Den här länken kan inte användas" in page.text
    english = browser.get(f"{MY}/{'y' * 43}", headers={"Accept-Language": "en"})
    assert "This link cannot be used" in english.text
    del host.clients[(tenant, client)]  # the host no longer has the client
    gone = browser.get(f"{MY}/{token}")
    assert gone.status_code == 404 and "har dig inte längre som klient" in gone.text


def test_erasure_removes_the_client_s_page_links(host: TestHost, world: dict[str, str]) -> None:
    tenant, client, token = world["tenant"], world["client"], world["token"]
    host.hooks().client_erased(TenantRef(tenant), ClientRef(client))
    host.session().commit()
    host.session().rollback()
    assert host.session().scalar(select(func.count()).select_from(PageLink).where(
        PageLink.client_ref == client)) == 0
    assert Browser(host).get(f"{MY}/{token}").status_code == 404


def test_a_token_of_one_practice_cannot_act_on_another(
    host: TestHost, world: dict[str, str]
) -> None:
    tenant, token = world["tenant"], world["token"]
    other = set_up(host, name="Annan praktik")
    theirs = host.new_client(other, name="Olle Other", email="olle@example.org")
    record_on_paper(host, other, theirs)
    browser = Browser(host)
    page = browser.get(f"{MY}/{token}")
    assert "Olle" not in page.text
    before = dump(host.engine, [other])
    fields = form_for(page.text, "withdraw")
    # The other practice's text version: refused, and nothing of either practice changes.
    their_text = events(host, other)[-1].text_version_id
    assert browser.post(f"{MY}/{token}", data={**fields, "action": "give",
                                               "text": str(their_text)}).status_code == 400
    assert browser.post(f"{MY}/{token}", data={**fields, "purpose": "nope"}).status_code == 400
    assert dump(host.engine, [other]) == before
    # Withdrawing with A's token ends A's client's consent only.
    assert browser.post(f"{MY}/{token}", data=fields).status_code == 200
    assert states(host, other)[-1] == "given" and states(host, tenant)[-1] == "withdrawn"
    # The practitioner of B cannot revoke A's client's links (the client is not B's).
    pages = Pages(host, other)
    assert pages.post(f"/clients/{world['client']}/page-links", {}).status_code == 404
    assert browser.get(f"{MY}/{token}").status_code == 200


def test_the_receipt_page_is_printable_and_only_the_client_s_own(
    host: TestHost, world: dict[str, str]
) -> None:
    tenant, token = world["tenant"], world["token"]
    other = host.new_client(tenant, name="Olle Other", email="olle@example.org")
    record_on_paper(host, tenant, other)
    mine, theirs = events(host, tenant)[-2:]
    browser = Browser(host)
    page = browser.get(f"{MY}/{token}/kvitto/{mine.seq}")
    assert page.status_code == 200
    assert "Kvitto" in page.text and "Samtycke givet" in page.text
    assert "Mottagningens personal" in page.text and mine.text_sha256 in page.text
    assert "<h2>" in page.text and "## " not in page.text  # Markdown rendered, not raw
    assert "@media print" in page.text
    assert browser.get(f"{MY}/{token}/kvitto/{theirs.seq}").status_code == 404
    assert f"/kvitto/{mine.seq}" in browser.get(f"{MY}/{token}").text


# -- the withdrawal link page -------------------------------------------------------------


def test_the_withdraw_link_sends_a_confirmation_and_a_used_link_points_to_my_consents(
    host: TestHost, smtp_server: SmtpServer
) -> None:
    tenant = set_up(host)
    client = host.new_client(tenant, name="Greta Given", email="greta@example.org")
    record_on_paper(host, tenant, client)
    [receipt] = deliver(host, smtp_server, tenant)
    _w, token = receipt.link()
    browser = Browser(host)
    confirm = browser.get(path_of("w", token))
    done = browser.post(path_of("w", token), data={**form_fields(confirm.text),
                                                   "decision": "withdraw"})
    assert done.status_code == 200
    [confirmation] = deliver(host, smtp_server, tenant)
    assert page_token(confirmation) == page_token(receipt)  # the receipt's own page link
    record_on_paper(host, tenant, client)  # consent again: the used link has something to say
    used = browser.get(path_of("w", token))
    assert "Mina samtycken" in used.text and f"/mina/{page_token(receipt)}" in used.text
    assert "länken i ditt senaste kvitto" not in used.text.split("</h1>", 1)[1]


# -- "send me my link" ------------------------------------------------------------------


def _wish(browser: Browser, tenant: str, address: str) -> tuple[int, str]:
    path = f"{common.MOUNT_PREFIX}/p/{tenant}/mina"
    fields = form_fields(browser.get(path).text)
    response = browser.post(path, data={**fields, "email": address})
    return response.status_code, response.text


def _wishes(host: TestHost) -> int:
    host.session().rollback()
    return int(host.session().scalar(select(func.count()).select_from(LinkWish)) or 0)


def test_send_me_my_link_answers_the_same_for_known_and_unknown_addresses(
    host: TestHost, smtp_server: SmtpServer, world: dict[str, str]
) -> None:
    tenant = world["tenant"]
    browser = Browser(host)
    known = _wish(browser, tenant, "Greta@Example.org")
    assert _wishes(host) == 1
    unknown = _wish(browser, tenant, "nobody@example.org")
    assert _wishes(host) == 2  # the same work: one row each
    assert known == unknown and known[0] == 200
    assert "Om Kliniken Lugn &amp; Ro har en klient med den här e-postadressen" in known[1]
    mails = deliver(host, smtp_server, tenant)
    assert [m.rcpt_tos for m in mails] == [["greta@example.org"]]
    token = page_token(mails[0])
    assert_equivalent(mails[0])
    assert Browser(host).get(f"{MY}/{token}").status_code == 200
    assert _wishes(host) == 0  # handled and gone, known or not
    bad = _wish(browser, tenant, "not an address")
    assert bad[0] == 400 and _wishes(host) == 0


def test_send_me_my_link_is_rate_limited_per_address_and_per_source(
    host: TestHost, world: dict[str, str]
) -> None:
    tenant = world["tenant"]
    for _ in range(3):
        assert _wish(Browser(host), tenant, "greta@example.org")[0] == 200
    assert _wish(Browser(host), tenant, "greta@example.org")[0] == 429  # per address
    one_source = Browser(host, addr="10.1.2.3")
    answers = [_wish(one_source, tenant, f"p{i}@example.org")[0] for i in range(21)]
    assert answers[:20] == [200] * 20 and answers[20] == 429  # per source
    assert _wishes(host) == 3 + 20


def test_send_me_my_link_needs_its_csrf_token_and_a_practice(
    host: TestHost, world: dict[str, str]
) -> None:
    tenant = world["tenant"]
    path = f"{common.MOUNT_PREFIX}/p/{tenant}/mina"
    browser = Browser(host)
    assert browser.post(path, data={"email": "greta@example.org"}).status_code == 403
    assert browser.get(f"{common.MOUNT_PREFIX}/p/no-such/mina").status_code == 404
    assert _wishes(host) == 0


# -- the practitioner's side --------------------------------------------------------------


def test_the_practitioner_revokes_every_link_from_the_profile(
    host: TestHost, world: dict[str, str]
) -> None:
    tenant, client, token = world["tenant"], world["client"], world["token"]
    [[panel]] = host.hooks().pm.hook.booking_client_profile_render(
        host=host, tenant=tenant, client=client, staff=staff(), locale="sv")
    host.session().rollback()
    assert f"/clients/{client}/page-links" in str(panel.html)
    [[refused_panel]] = host.hooks().pm.hook.booking_client_profile_render(
        host=host, tenant=tenant, client=client,
        staff=who(frozenset({Permission.VIEW_HISTORY})), locale="sv")
    host.session().rollback()
    assert "/page-links" not in str(refused_panel.html)
    nobody = Pages(host, tenant, who(frozenset({Permission.VIEW_HISTORY})))
    assert nobody.post(f"/clients/{client}/page-links", {}).status_code == 403
    assert Browser(host).get(f"{MY}/{token}").status_code == 200
    pages = Pages(host, tenant)
    assert "Fungerande länkar: 1" in pages.get(f"/clients/{client}/page-links").text
    assert pages.post(f"/clients/{client}/page-links", {}, token=None).status_code == 403
    assert pages.post(f"/clients/{client}/page-links", {}).status_code == 303
    assert Browser(host).get(f"{MY}/{token}").status_code == 410
    assert "Fungerande länkar: 0" in pages.get(f"/clients/{client}/page-links").text


# -- the host's link for its own mails ------------------------------------------------------


def test_hook_booking_client_consent_page(host: TestHost, world: dict[str, str]) -> None:
    tenant, client = world["tenant"], world["client"]
    hooks = host.hooks()
    url = hooks.client_consent_page(TenantRef(tenant), ClientRef(client))
    host.session().commit()
    assert url is not None and url.startswith("http")
    assert Browser(host).get(common.MOUNT_PREFIX + url.split("/apps/samtycke", 1)[1]
                             ).status_code == 200
    assert hooks.client_consent_page(TenantRef(tenant), ClientRef("nobody")) is None
    unset = host.new_tenant("Ej aktiv")
    assert hooks.client_consent_page(TenantRef(unset), ClientRef(client)) is None
    host.session().rollback()


def test_page_links_have_no_expiry(host: TestHost, world: dict[str, str]) -> None:
    host.advance(days=10 * 365)
    assert Browser(host).get(f"{MY}/{world['token']}").status_code == 200

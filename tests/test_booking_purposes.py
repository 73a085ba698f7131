"""The booking form with several purposes: one box each, each recording its own event
against its own text version; only required purposes veto; a change of content re-asks
for that purpose alone, with the practitioner's note; the pause holds per purpose."""

from __future__ import annotations

import re

import pytest
from hostkit import TestHost, count_statements, staff
from sqlalchemy import select

from hookspecs.facade import AppHooks
from hookspecs.types import (
    BookingFormContext,
    BookingRef,
    BookingSubmission,
    ClientRef,
    FormFragment,
    TenantRef,
)
from samtycke_plugin import consent, practice_texts, purposes
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.ledger import projection, replay
from samtycke_plugin.models import ConsentEvent, OutboxMessage, TextVersion
from samtycke_plugin.text import sha256

NEWSLETTER_SV = "Vi skickar vårt nyhetsbrev till din e-post ungefär en gång i månaden.\n"
PHOTOS_SV = "Vi tar bilder före och efter behandlingen och sparar dem i din journal.\n"


def _add(host: TestHost, tenant: str, key: str, name: str, body: str, *,
         required: bool = False) -> None:
    purposes.add(host.session(), tenant, key=key, names={"sv": name, "en": name},
                 legal_basis={}, required=required, validity_days=None, bodies={"sv": body},
                 actor="staff:s1", now=host.now())
    host.session().commit()


def _practice(host: TestHost, **settings: object) -> tuple[AppHooks, TenantRef]:
    """A practice with the default purpose and an optional newsletter."""
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, **(settings or {"ask_new_clients": True}))  # setup complete
    _add(host, tenant, "newsletter", "Nyhetsbrev", NEWSLETTER_SV)
    return hooks, tenant


def _form(host: TestHost, hooks: AppHooks, tenant: str, client: str | None) -> FormFragment | None:
    frags = hooks.form_fragments(BookingFormContext(
        tenant=TenantRef(tenant), client=ClientRef(client) if client else None, locale="sv"))
    host.session().rollback()
    return frags[0] if frags else None


def _hidden(frag: FormFragment | None) -> dict[str, str]:
    """The hidden fields of the consent block: what the browser posts back."""
    assert frag is not None
    return dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', frag.html))


def _sub(tenant: str, client: str | None, fields: dict[str, str], *,
         tick: tuple[str, ...] = (), is_new: bool = False) -> BookingSubmission:
    ticked = {("samtycke_consent" if k == "care" else f"samtycke_consent__{k}"): "yes"
              for k in tick}
    return BookingSubmission(
        tenant=TenantRef(tenant), client=ClientRef(client) if client else None,
        is_new_client=is_new, channel="online", fields={"service": "massage", **fields, **ticked},
        locale="sv", ip_address="203.0.113.77", user_agent="Mozilla/5.0 (test)")


def _book(host: TestHost, hooks: AppHooks, sub: BookingSubmission, client: str) -> list[str]:
    vetoes = hooks.submit_check(sub)
    if vetoes:
        host.session().rollback()
        return [v.key for v in vetoes]
    hooks.submitted(sub, BookingRef("b-" + client), ClientRef(client))
    host.session().commit()
    return []


def _events(host: TestHost, tenant: str) -> list[ConsentEvent]:
    return list(host.session().scalars(
        select(ConsentEvent).where(ConsentEvent.tenant_ref == tenant).order_by(ConsentEvent.seq)))


def _status(host: TestHost, tenant: str, client: str, purpose: str) -> str:
    value = consent.client_status(host, tenant, client, purpose).status.value
    host.session().rollback()
    return value


def test_one_box_per_purpose_each_records_its_own_event_and_only_the_required_one_vetoes(
    host: TestHost,
) -> None:
    hooks, tenant = _practice(host, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    frag = _form(host, hooks, tenant, client)
    assert frag is not None and frag.required
    assert set(frag.field_names) == {"samtycke_consent", "samtycke_text",
                                     "samtycke_consent__newsletter", "samtycke_text__newsletter"}
    assert "nyhetsbrev till din e-post" in frag.html and "<legend>Nyhetsbrev</legend>" in frag.html
    assert frag.html.count('type="checkbox"') == 2 and "checked" not in frag.html
    # the required attribute on the default purpose's box only
    assert re.search(r'name="samtycke_consent" value="yes"[^>]*required', frag.html)
    assert not re.search(r'name="samtycke_consent__newsletter" value="yes"[^>]*required',
                         frag.html)
    shown = _hidden(frag)

    # the optional box alone: the required purpose vetoes, nothing is written
    with count_statements(host.engine) as statements:
        vetoes = hooks.submit_check(_sub(tenant, client, shown, tick=("newsletter",)))
    assert [(v.key, v.field_name) for v in vetoes] == [
        ("samtycke.consent_required", "samtycke_consent")]
    assert len(statements) == 1, statements  # every purpose and status in one query
    host.session().rollback()
    assert _events(host, tenant) == []

    # the required box alone: the booking goes through, the newsletter is refused
    with count_statements(host.engine) as statements:
        assert _book(host, hooks, _sub(tenant, client, shown, tick=("care",)), client) == []
    writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    # the check's one read; the record step's lock and gate read, the two events and the ids
    # they were given, their evidence, the head, both projection rows and the receipt
    assert len(statements) == 9, statements
    assert len(writes) == 5, statements
    care, news = _events(host, tenant)
    texts = {k: host.session().get(TextVersion, int(v)) for k, v in shown.items()}
    assert (care.purpose_key, care.state, care.text_version_id) == (
        "care", "given", int(shown["samtycke_text"]))
    assert (news.purpose_key, news.state, news.text_version_id) == (
        "newsletter", "refused", int(shown["samtycke_text__newsletter"]))
    news_text = texts["samtycke_text__newsletter"]
    assert news_text is not None and news_text.purpose_key == "newsletter"
    assert news.text_sha256 == news_text.sha256 == sha256(NEWSLETTER_SV)
    assert (care.booking_ref, news.booking_ref) == ("b-" + client, "b-" + client)
    assert (_status(host, tenant, client, "care"), _status(host, tenant, client, "newsletter")) == (
        "valid", "refused")
    [receipt] = host.session().scalars(
        select(OutboxMessage).where(OutboxMessage.tenant_ref == tenant)).all()
    assert receipt.payload == {"event_seq": care.seq}
    session = host.session()
    assert verify_chain(session, tenant).ok
    for key in ("care", "newsletter"):
        assert projection(session, tenant, key) == replay(session, tenant, key)
    # valid for care, the newsletter refused within the pause: nothing to ask
    assert _form(host, hooks, tenant, client) is None


def test_a_required_purpose_of_its_own_vetoes_and_an_optional_default_does_not(
    host: TestHost,
) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=False)
    _add(host, tenant, "photos", "Bilder", PHOTOS_SV, required=True)
    client = host.new_client(tenant)
    frag = _form(host, hooks, tenant, client)
    shown = _hidden(frag)
    assert frag is not None and frag.required
    assert _book(host, hooks, _sub(tenant, client, shown, tick=("care",)), client) == [
        "samtycke.consent_required.photos"]
    [veto] = hooks.submit_check(_sub(tenant, client, shown, tick=("care",)))
    assert veto.field_name == "samtycke_consent__photos" and "”Bilder”" in veto.message
    host.session().rollback()
    assert _events(host, tenant) == []
    assert _book(host, hooks, _sub(tenant, client, shown, tick=("photos",)), client) == []
    assert [(e.purpose_key, e.state) for e in _events(host, tenant)] == [
        ("care", "refused"), ("photos", "given")]


def test_both_boxes_ticked_give_both_with_their_own_text_versions(host: TestHost) -> None:
    hooks, tenant = _practice(host)
    shown = _hidden(_form(host, hooks, tenant, None))
    client = host.new_client(tenant)
    sub = _sub(tenant, None, shown, tick=("care", "newsletter"), is_new=True)
    assert _book(host, hooks, sub, client) == []
    assert [(e.purpose_key, e.state, e.text_version_id) for e in _events(host, tenant)] == [
        ("care", "given", int(shown["samtycke_text"])),
        ("newsletter", "given", int(shown["samtycke_text__newsletter"])),
    ]
    assert {_status(host, tenant, client, k) for k in ("care", "newsletter")} == {"valid"}


def test_a_text_id_posted_for_another_purpose_is_not_accepted(host: TestHost) -> None:
    hooks, tenant = _practice(host, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    shown = _hidden(_form(host, hooks, tenant, client))
    swapped = {"samtycke_text": shown["samtycke_text__newsletter"],
               "samtycke_text__newsletter": shown["samtycke_text"]}
    vetoes = _book(host, hooks, _sub(tenant, client, swapped, tick=("care", "newsletter")), client)
    assert vetoes == ["samtycke.text_changed", "samtycke.text_changed.newsletter"]
    assert _events(host, tenant) == []


def _change_newsletter(host: TestHost, tenant: str, reason: str | None) -> None:
    practice_texts.publish_text(host, tenant, bodies={"sv": NEWSLETTER_SV + "Nu även med sms.\n"},
                           kind="content", reason=reason, actor="staff:s1", expected_major=1,
                           purpose="newsletter")
    host.session().commit()


def test_a_change_of_content_outdates_only_its_purpose_and_the_form_asks_only_it(
    host: TestHost,
) -> None:
    hooks, tenant = _practice(host)
    client, other = host.new_client(tenant), host.new_client(tenant)
    for who in (client, other):
        shown = _hidden(_form(host, hooks, tenant, who))
        assert _book(host, hooks, _sub(tenant, who, shown, tick=("care", "newsletter")), who) == []
    assert _form(host, hooks, tenant, client) is None
    host.advance(days=1)
    _change_newsletter(host, tenant, "Vi skickar nu även påminnelser med sms.")
    assert _status(host, tenant, client, "care") == "valid"
    assert _status(host, tenant, client, "newsletter") == "outdated"

    frag = _form(host, hooks, tenant, client)
    assert frag is not None and not frag.required
    shown = _hidden(frag)
    note = "Vi skickar nu även påminnelser med sms."
    assert shown == {"samtycke_text__newsletter": shown["samtycke_text__newsletter"],
                     "samtycke_note__newsletter": sha256(note)}
    assert "Vad har ändrats" in frag.html and note in frag.html
    assert frag.html.index(note) < frag.html.index("Nu även med sms.")  # above the text
    assert set(frag.field_names) == set(shown) | {"samtycke_consent__newsletter"}

    before = len(_events(host, tenant))
    assert _book(host, hooks, _sub(tenant, client, shown, tick=("newsletter",)), client) == []
    [renewed] = _events(host, tenant)[before:]
    new_text = host.session().get(TextVersion, int(shown["samtycke_text__newsletter"]))
    assert new_text is not None and new_text.major == 2
    assert (renewed.purpose_key, renewed.state, renewed.text_version_id, renewed.text_major) == (
        "newsletter", "renewed", new_text.id, 2)
    assert renewed.change_note_sha256 == sha256(note)  # the event records the note was shown
    assert _status(host, tenant, client, "newsletter") == "valid"

    # a note hash that is not the current note's is not recorded as shown
    shown = _hidden(_form(host, hooks, tenant, other))
    forged = {**shown, "samtycke_note__newsletter": sha256("något annat")}
    assert _book(host, hooks, _sub(tenant, other, forged), other) == []
    [refused] = _events(host, tenant)[before + 1:]
    assert (refused.purpose_key, refused.state, refused.change_note_sha256) == (
        "newsletter", "refused", None)
    assert verify_chain(host.session(), tenant).ok


def test_the_text_changed_while_the_form_was_open_vetoes_that_purpose(host: TestHost) -> None:
    hooks, tenant = _practice(host)
    client = host.new_client(tenant)
    shown = _hidden(_form(host, hooks, tenant, client))
    _change_newsletter(host, tenant, None)
    vetoes = hooks.submit_check(_sub(tenant, client, shown, tick=("care", "newsletter")))
    host.session().rollback()
    assert [(v.key, v.field_name, v.retryable) for v in vetoes] == [
        ("samtycke.text_changed.newsletter", "samtycke_consent__newsletter", True)]
    assert "”Nyhetsbrev”" in vetoes[0].message
    assert _events(host, tenant) == []


ASKING = [
    {"require_consent_for_online_booking": True},
    {"require_consent_for_online_booking": True, "ask_new_clients": False,
     "ask_clients_without_consent": False},
    {"ask_new_clients": True, "ask_clients_without_consent": False},
    {"ask_new_clients": False, "ask_clients_without_consent": True},
]


@pytest.mark.parametrize("settings", ASKING)
def test_a_returning_client_outdated_for_a_purpose_is_asked_again_under_every_asking_setting(
    host: TestHost, settings: dict[str, object],
) -> None:
    hooks, tenant = _practice(host, **settings)
    client = host.new_client(tenant)
    for key in ("care", "newsletter"):
        consent.record_manual(host, tenant, client, staff(), method="paper",
                              given_at=host.now(), note=None, purpose=key)
        host.session().commit()
    assert _form(host, hooks, tenant, client) is None
    _change_newsletter(host, tenant, "Nu även sms.")
    shown = _hidden(_form(host, hooks, tenant, client))
    assert set(shown) == {"samtycke_text__newsletter", "samtycke_note__newsletter"}


def test_a_practice_that_asks_no_one_at_booking_asks_no_purpose(host: TestHost) -> None:
    hooks, tenant = _practice(host, ask_new_clients=False, ask_clients_without_consent=False)
    assert _form(host, hooks, tenant, None) is None
    client = host.new_client(tenant)
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=host.now(),
                          note=None, purpose="newsletter")
    host.session().commit()
    _change_newsletter(host, tenant, None)
    assert _form(host, hooks, tenant, client) is None


def test_the_pause_holds_per_purpose_after_a_refusal_or_a_withdrawal(host: TestHost) -> None:
    hooks, tenant = _practice(host)
    refuser, withdrawer = host.new_client(tenant), host.new_client(tenant)
    shown = _hidden(_form(host, hooks, tenant, refuser))
    assert _book(host, hooks, _sub(tenant, refuser, shown, tick=("care",)), refuser) == []
    assert [(e.purpose_key, e.state) for e in _events(host, tenant)] == [
        ("care", "given"), ("newsletter", "refused")]
    consent.record_manual(host, tenant, withdrawer, staff(), method="paper",
                          given_at=host.now(), note=None, purpose="newsletter")
    consent.withdraw(host, tenant, withdrawer, actor="client", channel="link", method=None,
                     by_client=True, purpose="newsletter")
    host.session().commit()
    count = len(_events(host, tenant))

    host.advance(days=300)
    assert _form(host, hooks, tenant, refuser) is None  # refused within the pause
    # the withdrawer is asked for the default purpose only
    assert set(_hidden(_form(host, hooks, tenant, withdrawer))) == {"samtycke_text"}
    # booking again without ticking records no second refusal of the newsletter
    assert _book(host, hooks, _sub(tenant, refuser, {}), refuser) == []
    assert len(_events(host, tenant)) == count

    host.advance(days=66)  # the pause (365 days) is over for both
    assert set(_hidden(_form(host, hooks, tenant, refuser))) == {"samtycke_text__newsletter"}
    assert set(_hidden(_form(host, hooks, tenant, withdrawer))) == {
        "samtycke_text", "samtycke_text__newsletter"}


def test_beside_other_boxes_the_default_purpose_box_names_its_purpose(host: TestHost) -> None:
    hooks, tenant = _practice(host)
    frag = _form(host, hooks, tenant, None)
    assert frag is not None
    legends = re.findall(r"<legend>([^<]*)</legend>", frag.html)
    assert legends == ["Hälsouppgifter för din behandling", "Nyhetsbrev"]
    purposes.archive(host.session(), tenant, "newsletter", host.now())
    host.session().commit()
    alone = _form(host, hooks, tenant, None)
    assert alone is not None
    assert re.findall(r"<legend>([^<]*)</legend>", alone.html) == [
        "Samtycke till hantering av dina personuppgifter"]

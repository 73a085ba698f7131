"""A practice's purposes, as far as the data layer holds them: the default purpose comes
with activation, follows the practice's current text version, and keys are checked."""

from __future__ import annotations

import pytest
from hostkit import TestHost, staff

from hookspecs.types import ClientRef, TenantRef
from samtycke_plugin import consent, practice_texts, practices, purposes
from samtycke_plugin.errors import Conflict, InputError
from samtycke_plugin.models import Practice, Purpose
from samtycke_plugin.purposes import DEFAULT_PURPOSE, check_key


def test_activation_gives_the_default_purpose_which_follows_content_changes(
    host: TestHost,
) -> None:
    tenant = host.new_tenant()
    host.activate(host.hooks(), tenant, require_consent_for_online_booking=True,
                  validity_days=730)
    session = host.session()
    care = session.get(Purpose, (tenant, DEFAULT_PURPOSE))
    assert care is not None
    assert (care.position, care.required, care.validity_days, care.current_major,
            care.archived_at) == (0, True, 730, 1, None)
    host.activate(host.hooks(), tenant)  # reactivation keeps the one row
    assert session.query(Purpose).filter(Purpose.tenant_ref == tenant).count() == 1
    session.rollback()

    for kind, expected in (("correction", 1), ("content", 2), ("content", 3)):
        practice_texts.publish_text(
            host, tenant, bodies={"sv": f"Vi sparar dina uppgifter ({kind}, {expected}).\n"},
            kind=kind, reason=None, actor="staff:s1", expected_major=expected - (kind != "correction"),
        )
        host.session().commit()
        host.session().expire_all()
        practice = host.session().get(Practice, tenant)
        care = host.session().get(Purpose, (tenant, DEFAULT_PURPOSE))
        assert practice is not None and care is not None
        assert practice.current_major == care.current_major == expected
    versions = practice_texts.text_versions(host.session(), tenant)
    assert {v.purpose_key for v in versions} == {DEFAULT_PURPOSE}


def test_a_second_practice_activated_without_settings_asks_without_requiring(
    host: TestHost,
) -> None:
    tenant = host.new_tenant()
    host.activate(host.hooks(), tenant)
    care = host.session().get(Purpose, (tenant, DEFAULT_PURPOSE))
    assert care is not None and (care.required, care.validity_days) == (False, None)


@pytest.mark.parametrize("key", ["care", "newsletter", "sms-reminders", "photos_2", "a" * 32])
def test_purpose_keys_that_are_accepted(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key", ["", "Care", "1care", "-care", "care!", "ca re", "a" * 33, "vård", None, 7]
)
def test_purpose_keys_that_are_refused(key: object) -> None:
    with pytest.raises(InputError):
        check_key(key)


NEWSLETTER_SV = "Vi skickar vårt nyhetsbrev till din e-post ungefär en gång i månaden.\n"


def _with_newsletter(host: TestHost) -> tuple[str, str]:
    tenant = host.new_tenant()
    host.activate(host.hooks(), tenant, ask_clients_without_consent=True)
    client = host.new_client(tenant)
    added = purposes.add(
        host.session(), tenant, key="newsletter", names={"sv": "Nyhetsbrev", "en": "Newsletter"},
        legal_basis={"sv": "Samtycke"}, required=False, validity_days=730,
        bodies={"sv": NEWSLETTER_SV}, actor="staff:s1", now=host.now(),
    )
    host.session().commit()
    assert (added.key, added.position, added.current_major, added.name("en")) == (
        "newsletter", 1, 1, "Newsletter")
    return tenant, client


def test_a_purpose_has_its_own_texts_status_and_content_changes(host: TestHost) -> None:
    tenant, client = _with_newsletter(host)
    session = host.session()
    assert [p.key for p in purposes.list_purposes(session, tenant)] == [DEFAULT_PURPOSE,
                                                                        "newsletter"]
    practice = practices.require_practice(session, tenant)
    text = practice_texts.current_text(session, practice, "sv", "newsletter")
    assert (text.purpose_key, text.major, text.body) == ("newsletter", 1, NEWSLETTER_SV)
    session.rollback()
    with pytest.raises(Conflict):
        purposes.add(host.session(), tenant, key="newsletter", names={"sv": "X"},
                     legal_basis={}, required=False, validity_days=None,
                     bodies={"sv": NEWSLETTER_SV}, actor="staff:s1", now=host.now())
    host.session().rollback()

    # consent to the newsletter only: the default purpose stays unknown
    event = consent.record_manual(host, tenant, client, staff(), method="paper",
                                  given_at=host.now(), note=None, purpose="newsletter")
    host.session().commit()
    assert event.purpose_key == "newsletter" and event.text_version_id == text.id
    assert event.expires_at is not None  # the purpose's own lifetime (730 days)
    assert consent.client_status(host, tenant, client, "newsletter").valid
    assert consent.client_status(host, tenant, client).status.value == "unknown"
    hooks = host.hooks()
    [answer] = hooks.consent_lookup(TenantRef(tenant), [ClientRef(client)], "newsletter").values()
    assert answer.may_use
    host.session().rollback()

    # a change of content of the newsletter outdates only the newsletter
    practice_texts.publish_text(host, tenant, bodies={"sv": NEWSLETTER_SV + "Nu även sms.\n"},
                           kind="content", reason="Nu även sms", actor="staff:s1",
                           expected_major=1, purpose="newsletter")
    host.session().commit()
    assert consent.client_status(host, tenant, client, "newsletter").status.value == "outdated"
    practice = practices.require_practice(host.session(), tenant)
    assert practice.current_major == 1  # the default purpose's text did not change
    assert practice_texts.change_note(host.session(), practice, "newsletter") == "Nu även sms"
    host.session().rollback()

    # withdrawing the newsletter ends only the newsletter
    consent.withdraw(host, tenant, client, actor="staff:s1", channel="manual",
                     method="reported_by_staff", by_client=True, purpose="newsletter")
    host.session().commit()
    assert consent.client_status(host, tenant, client, "newsletter").status.value == "withdrawn"

    # an archived purpose is asked no more; its key is not given again
    purposes.archive(host.session(), tenant, "newsletter", host.now())
    host.session().commit()
    assert [p.key for p in purposes.list_purposes(host.session(), tenant)] == [DEFAULT_PURPOSE]
    with pytest.raises(Conflict):
        purposes.add(host.session(), tenant, key="newsletter", names={"sv": "Ny"},
                     legal_basis={}, required=False, validity_days=None,
                     bodies={"sv": NEWSLETTER_SV}, actor="staff:s1", now=host.now())
    host.session().rollback()
    with pytest.raises(InputError):
        purposes.archive(host.session(), tenant, DEFAULT_PURPOSE, host.now())
    host.session().rollback()

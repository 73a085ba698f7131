"""A practice's purposes, as far as the data layer holds them: the default purpose comes
with activation, follows the practice's current text version, and keys are checked."""

from __future__ import annotations

import pytest
from hostkit import TestHost

from samtycke_plugin import practices
from samtycke_plugin.errors import InputError
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
        practices.publish_text(
            host, tenant, bodies={"sv": f"Vi sparar dina uppgifter ({kind}, {expected}).\n"},
            kind=kind, reason=None, actor="staff:s1", expected_major=expected - (kind != "correction"),
        )
        host.session().commit()
        host.session().expire_all()
        practice = host.session().get(Practice, tenant)
        care = host.session().get(Purpose, (tenant, DEFAULT_PURPOSE))
        assert practice is not None and care is not None
        assert practice.current_major == care.current_major == expected
    versions = practices.text_versions(host.session(), tenant)
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

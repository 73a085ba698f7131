"""The scan of a signed paper form reaches the app through the Django mount: a multipart
body above Django's own in-memory limit (``DATA_UPLOAD_MAX_MEMORY_SIZE``, for Django's
parsing) is handed to the app, which applies its own limits, records the scan and gives
it back from the history; a body above the app's limit is refused by the app."""

from __future__ import annotations

import hashlib

import pytest
from django_support import (
    PREFIX,
    add_practice,
    book,
    complete_setup,
    hidden_fields,
    page,
    signed_in,
)

from examples.django_host.clinic.models import Client
from samtycke_plugin.web.base import MAX_UPLOAD_BODY

pytestmark = pytest.mark.usefixtures("clinic_db")

#: Larger than Django's default DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB).
SCAN = b"%PDF-1.7\n" + b"scan " * 600_000


def _attachment_of(practice: object) -> str | None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT attachment_sha256 FROM samtycke_consent_event "
                       "WHERE tenant_ref = %s ORDER BY seq DESC", [str(practice.pk)])  # type: ignore[attr-defined]
        row = cursor.fetchone()
        return None if row is None else row[0]


def test_a_scan_larger_than_djangos_memory_limit_is_recorded_and_downloaded() -> None:
    from django.conf import settings
    from django.core.files.uploadedfile import SimpleUploadedFile

    assert len(SCAN) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    practice, owner_user = add_practice()
    owner = signed_in(owner_user)
    owner.post("/apps/", {"app": "samtycke", "action": "activate"})
    complete_setup(owner, required=False)
    assert book(practice, name="Ada Ek", email="ada@example.com", consent=False
                ).status_code == 302
    client = Client.objects.get(practice=practice, email_key="ada@example.com")
    obtain = f"{PREFIX}/clients/{client.pk}/obtain"
    form: dict[str, object] = hidden_fields(page(owner.get(obtain)))
    form.update({"action": "record", "method": "paper", "given_on": "2026-01-15", "note": "",
                 "scan": SimpleUploadedFile("blankett.pdf", SCAN, "application/pdf")})
    recorded = owner.post(obtain, form)
    assert recorded.status_code in (302, 303), page(recorded)
    digest = _attachment_of(practice)
    assert digest == hashlib.sha256(SCAN).hexdigest()
    download = owner.get(f"{PREFIX}/clients/{client.pk}/attachments/{digest}")
    assert download.status_code == 200
    body = b"".join(download.streaming_content) if download.streaming else download.content
    assert body == SCAN

    too_large = b"%PDF-1.7\n" + b"0" * MAX_UPLOAD_BODY
    form = hidden_fields(page(owner.get(obtain)))
    form.update({"action": "record", "method": "paper", "given_on": "2026-01-16", "note": "",
                 "scan": SimpleUploadedFile("stor.pdf", too_large, "application/pdf")})
    refused = owner.post(obtain, form)
    assert refused.status_code == 413
    assert "större än 10 MB" in page(refused)
    assert _attachment_of(practice) == digest  # nothing more was recorded

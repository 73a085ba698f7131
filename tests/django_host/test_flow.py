"""The whole consent flow through the Django clinic's own pages and the app's pages
mounted in it, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout

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

from examples.django_host.clinic import samtycke_glue as glue
from examples.django_host.clinic.models import Booking, Client

pytestmark = pytest.mark.usefixtures("clinic_db")


def _status_rows(browser, query: str = "") -> str:
    return page(browser.get("/clients/" + query))


def _cli(*args: str) -> tuple[int, str]:
    from samtycke_plugin.integrations.django.management.commands.samtycke import run_cli

    out = io.StringIO()
    with redirect_stdout(out):
        code = run_cli(list(args))
    return code, out.getvalue()


def test_activation_booking_filters_content_change_email_link_and_withdrawal(mailbox) -> None:
    practice, owner = add_practice()
    staff = signed_in(owner)

    # Activation in the clinic's app menu leads to the app's wizard, mounted in the clinic.
    menu = page(staff.get("/apps/"))
    assert "Samtycke" in menu and "Inte aktiv" in menu
    activated = staff.post("/apps/", {"app": "samtycke", "action": "activate"})
    assert activated.status_code == 302 and activated["Location"] == f"{PREFIX}/setup"
    assert staff.get(f"{PREFIX}/setup").status_code == 200
    assert staff.get(PREFIX + "/").status_code == 200  # the app's own overview link
    complete_setup(staff, required=True)

    # The booking form carries the consent block; without the tick the booking is vetoed.
    assert "samtycke_consent" in page(staff.get(f"/book/{practice.slug}/"))
    vetoed = book(practice, name="Alva Ek", email="alva@example.com", consent=False)
    assert vetoed.status_code == 400 and 'class="error veto"' in page(vetoed)
    assert not Client.objects.filter(practice=practice).exists()

    accepted = book(practice, name="Alva Ek", email="alva@example.com", consent=True)
    assert accepted.status_code == 302, page(accepted)
    assert book(practice, name="Bo Ek", email="bo@example.com", consent=True).status_code == 302
    alva = Client.objects.get(practice=practice, email_key="alva@example.com")
    bo = Client.objects.get(practice=practice, email_key="bo@example.com")
    assert Booking.objects.filter(client=alva).count() == 1

    # Badges and both filters on the clinic's client list.
    listing = _status_rows(staff)
    assert listing.count('data-status="valid"') == 2
    assert "Alva Ek" in _status_rows(staff, "?filter=samtycke.valid")
    assert "Alva Ek" not in _status_rows(staff, "?filter=samtycke.not_valid")
    assert "Det filtret finns inte längre" in _status_rows(staff, "?filter=other.app")
    assert "samtycke-panel" in page(staff.get(f"/clients/{alva.pk}/"))

    # A change of content: the consent no longer holds, and the next booking asks again.
    editor = page(staff.get(f"{PREFIX}/text"))
    fields = hidden_fields(editor)
    body = re.search(r'name="text_sv"[^>]*>([^<]*)</textarea>', editor)
    assert body is not None
    changed = {**fields, "text_sv": body.group(1) + "\n\nVi sparar nu också dina mätvärden.",
               "kind": "content", "reason": "Ny behandling av mätvärden."}
    saved = staff.post(f"{PREFIX}/text", {**changed, "action": "save"})
    assert saved.status_code in (302, 303), page(saved)
    assert "Alva Ek" in _status_rows(staff, "?filter=samtycke.not_valid")
    again = book(practice, name="Alva Ek", email="alva@example.com", consent=False)
    assert again.status_code == 400  # required, outdated: asked again
    renewed = book(practice, name="Alva Ek", email="alva@example.com", consent=True)
    assert renewed.status_code == 302
    assert "Alva Ek" in _status_rows(staff, "?filter=samtycke.valid")

    # Bo is asked by e-mail: the link accepts, the receipt's link withdraws.
    obtain = page(staff.get(f"{PREFIX}/clients/{bo.pk}/obtain"))
    sent = staff.post(f"{PREFIX}/clients/{bo.pk}/obtain", {**hidden_fields(obtain),
                                                          "action": "send"})
    assert sent.status_code in (302, 303), page(sent)
    assert glue.send_outbox() >= 1
    request_mail = mailbox[-1]
    assert request_mail.to == ["bo@example.com"] and "Message-ID" in request_mail.extra_headers
    link = re.search(r"http://clinic\.test(/apps/samtycke/c/[^\s]+)", request_mail.body)
    assert link, request_mail.body
    from django.test import Client as Browser

    client_browser = Browser(HTTP_USER_AGENT="pytest")
    consent_page = page(client_browser.get(link.group(1)))
    answered = client_browser.post(link.group(1), {**hidden_fields(consent_page),
                                                   "decision": "accept"})
    assert answered.status_code == 200, page(answered)
    assert "Bo Ek" in _status_rows(staff, "?filter=samtycke.valid")
    glue.send_outbox()
    receipt = [m for m in mailbox if m.to == ["bo@example.com"] and "/apps/samtycke/w/" in m.body][-1]
    withdraw = re.search(r"http://clinic\.test(/apps/samtycke/w/[^\s]+)", receipt.body)
    assert withdraw
    confirm = page(client_browser.get(withdraw.group(1)))
    done = client_browser.post(withdraw.group(1), hidden_fields(confirm))
    assert done.status_code == 200, page(done)
    assert "återkallat" in page(done), page(done)
    assert "Bo Ek" in _status_rows(staff, "?filter=samtycke.not_valid")

    # The ledger verifies, and the proof exports, through manage.py samtycke.
    code, out = _cli("verify", "--tenant", str(practice.pk))
    assert code == 0 and f"OK      {practice.pk}:" in out, out
    code, out = _cli("export", "client", "--staff", str(owner.pk), "--tenant", str(practice.pk),
                     "--client", str(bo.pk), "--format", "json")
    assert code == 0, out
    states = [e["state"] for e in json.loads(out)["events"]]
    assert states[-1] == "withdrawn" and "given" in states

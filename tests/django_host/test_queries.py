"""The queryset helpers: a practice's clients as the contract's ClientSelect (a batch
request to everyone runs set-based on it), and the page language from Django."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
from django.db import connection, transaction
from django_support import PREFIX, add_practice, book, hidden_fields, page, signed_in

from examples.django_host.clinic import samtycke_glue as glue
from examples.django_host.clinic.models import Client
from hookspecs.types import ClientSelect, TenantRef
from samtycke_plugin.integrations.django import client_select, samtycke
from samtycke_plugin.integrations.django.management.commands.samtycke import run_cli

pytestmark = pytest.mark.usefixtures("clinic_db")


def test_client_query_is_sql_text_with_named_parameters_of_one_practice() -> None:
    practice, _owner = add_practice()
    other, _other_owner = add_practice()
    for where, email in ((practice, "a@example.com"), (other, "b@example.com")):
        book(where, name="Namn " + email[0], email=email, consent=None)
    select = samtycke().host.client_query(glue.tenant(practice))
    assert isinstance(select, ClientSelect) and ":p0" in select.sql and "%s" not in select.sql
    sql, params = select.format_style()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ref, name, email FROM ({sql}) AS clients", params)
        rows = cursor.fetchall()
    mine = Client.objects.get(practice=practice)
    assert rows == [(str(mine.pk), "Namn a", "a@example.com")]
    with pytest.raises(ValueError, match="literal '%'"):
        client_select(Client.objects.filter(name__contains="x").extra(where=["1 %% 2 = 1"]))


def test_iter_clients_reads_in_pages_and_leaves_no_cursor_open() -> None:
    from django.utils import timezone

    from samtycke_plugin.integrations.django.clients import PAGE

    practice, _owner = add_practice()
    other, _other_owner = add_practice()
    count = PAGE + 3  # more than a page: a streaming cursor would still be open
    Client.objects.bulk_create(
        [Client(practice=practice, name=f"K{n}", email=f"k{n}@example.com",
                email_key=f"k{n}@example.com", created_at=timezone.now()) for n in range(count)]
        + [Client(practice=other, name="Annan", email="annan@example.com",
                  email_key="annan@example.com", created_at=timezone.now())])
    seen = []
    for info in samtycke().host.iter_clients(glue.tenant(practice)):
        if connection.vendor == "sqlite":
            # Between rows the connection is free: sqlite3 refuses to register a
            # function while a statement of the connection is unfinished.
            connection.connection.create_function("f", 0, lambda: 1)
        seen.append(info.email)
    assert sorted(seen) == sorted(f"k{n}@example.com" for n in range(count))


def test_a_batch_request_to_all_clients_asks_only_those_never_asked(mailbox) -> None:
    practice, owner = add_practice()
    book(practice, name="Före Appen", email="fore@example.com", consent=None)
    with transaction.atomic():
        glue.set_active(practice, "samtycke", True, {"require_consent_for_online_booking": False})
    book(practice, name="Med Samtycke", email="med@example.com", consent=True)
    book(practice, name="Sa Nej", email="nej@example.com", consent=False)  # declined
    out = io.StringIO()
    with redirect_stdout(out):
        code = run_cli(["request", "all", "--staff", str(owner.pk), "--tenant", str(practice.pk),
                        "--yes"])
    assert code == 0, out.getvalue()
    assert "1 asked, 1 already have valid consent" in out.getvalue(), out.getvalue()
    glue.send_outbox()
    requests = [m.to for m in mailbox if f"{PREFIX}/c/" in m.body]  # receipts link to /w/
    assert requests == [["fore@example.com"]]


def test_send_to_all_on_the_batch_page_is_a_job_the_outbox_command_runs(mailbox) -> None:
    """The batch page's POST records a job and queues no mail; ``manage.py samtycke
    outbox send`` (the management command) runs the job, then sends its mail."""
    practice, owner = add_practice()
    book(practice, name="Före Appen", email="fore@example.com", consent=None)
    with transaction.atomic():
        glue.set_active(practice, "samtycke", True, {"require_consent_for_online_booking": False})
    staff = signed_in(owner)
    form = page(staff.get(f"{PREFIX}/batch"))
    posted = staff.post(f"{PREFIX}/batch", hidden_fields(form))
    assert posted.status_code == 303 and "/batch/jobs/" in posted["Location"], page(posted)
    progress = staff.get(posted["Location"])
    assert 'data-job-state="queued"' in page(progress) and progress["Refresh"]
    assert not [m for m in mailbox if f"{PREFIX}/c/" in m.body]
    out = io.StringIO()
    with redirect_stdout(out):
        assert run_cli(["outbox", "send"]) == 0, out.getvalue()
    assert "batch requests prepared: 1" in out.getvalue(), out.getvalue()
    assert [m.to for m in mailbox if f"{PREFIX}/c/" in m.body] == [["fore@example.com"]]
    assert 'data-job-state="done"' in page(staff.get(posted["Location"]))


def test_the_page_language_is_djangos_active_language() -> None:
    practice, owner = add_practice()
    with transaction.atomic():
        glue.set_active(practice, "samtycke", True, {"require_consent_for_online_booking": False})
    staff = signed_in(owner)
    assert 'lang="sv"' in page(staff.get(f"{PREFIX}/"))
    switched = staff.post("/i18n/setlang/", {"language": "en", "next": f"{PREFIX}/"})
    assert switched.status_code == 302
    overview = page(staff.get(f"{PREFIX}/"))
    assert 'lang="en"' in overview and "Sign out" in overview
    assert samtycke().hooks.list_filters(TenantRef(str(practice.pk)), "en")

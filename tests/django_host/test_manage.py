"""Django's ``migrate`` runs the app's migrations (idempotently), ``manage.py samtycke``
is the app's CLI on the project's database, and signed-out visitors of practitioner
pages go to the clinic's sign-in page."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client as Browser
from django_support import PREFIX, ROOT, add_practice, hidden_fields, migrate, page, signed_in

pytestmark = pytest.mark.usefixtures("clinic_db")


def _app_tables() -> set[str]:
    return {t for t in connection.introspection.table_names() if t.startswith("samtycke_")}


def _app_version() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT version_num FROM samtycke_alembic_version")
        return str(cursor.fetchone()[0])


def test_migrate_creates_the_apps_tables_and_is_idempotent() -> None:
    tables = _app_tables()
    assert {"samtycke_consent_event", "samtycke_consent_state", "samtycke_practice",
            "samtycke_alembic_version"} <= tables
    version = _app_version()
    migrate()
    call_command("migrate", verbosity=0)
    assert _app_tables() == tables and _app_version() == version
    with connection.cursor() as cursor:  # Django's own history does not list the app
        cursor.execute("SELECT COUNT(*) FROM django_migrations WHERE app = 'samtycke'")
        assert cursor.fetchone()[0] == 0


def test_manage_py_samtycke_verify_runs_the_apps_cli(clinic_db: str) -> None:
    from django.conf import settings

    from examples.django_host.settings import database  # noqa: F401 - the same settings

    db = settings.DATABASES["default"]
    url = (f"sqlite:///{db['NAME']}" if clinic_db == "sqlite" else
           f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}")
    env = {**os.environ, "CLINIC_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "examples.django_host.manage", "samtycke", "verify"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "practice(s) checked, 0 broken." in done.stdout
    helped = subprocess.run(
        [sys.executable, "-m", "examples.django_host.manage", "samtycke", "--help"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "verify" in helped.stdout


def test_signed_out_practitioner_pages_redirect_to_the_clinic_sign_in() -> None:
    for path in (f"{PREFIX}/setup", f"{PREFIX}/", "/clients/"):
        response = Browser().get(path)
        assert response.status_code in (302, 303), path
        assert response["Location"].startswith("/accounts/login/?next="), response["Location"]
    _practice, owner = add_practice()
    assert page(signed_in(owner).get("/accounts/login/")).count("csrfmiddlewaretoken") >= 1


def test_the_apps_form_tokens_belong_to_one_sign_in() -> None:
    from django.db import transaction

    from examples.django_host.clinic import samtycke_glue as glue

    practice, owner = add_practice()
    with transaction.atomic():
        glue.set_active(practice, "samtycke", True, {"require_consent_for_online_booking": False})
    first, second = signed_in(owner), signed_in(owner)
    tokens = [hidden_fields(page(b.get(f"{PREFIX}/text")))["csrf_token"] for b in (first, second)]
    assert tokens[0] != tokens[1]
    stale = second.post(f"{PREFIX}/text", {"csrf_token": tokens[0], "action": "edit",
                                           "expected_major": "1"})
    assert stale.status_code in (400, 403)

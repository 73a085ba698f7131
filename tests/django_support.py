"""The example Django clinic under test: Django set up once per test process with the
clinic's settings, and its ``default`` database pointed at a fresh SQLite file or a
fresh PostgreSQL database per test module (always real commits, as in production:
``TestCase``'s wrapping transaction would hide exactly what these tests check)."""

from __future__ import annotations

import html
import os
import re
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The example is not an installed package: reach it from the repository root, appended
# last so the installed samtycke_plugin still wins over the source tree.
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

BASE_URL = "http://clinic.test"
PREFIX = "/apps/samtycke"


def setup_django() -> None:
    """``django.setup()`` with the clinic's settings (once per process)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_host.settings"
    os.environ.setdefault("CLINIC_INSTANCE_DIR", tempfile.mkdtemp(prefix="clinic-test-"))
    os.environ.setdefault("CLINIC_SECRET_KEY", "django-test-" + uuid.uuid4().hex)
    os.environ["CLINIC_BASE_URL"] = BASE_URL
    os.environ["CLINIC_EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


def use_database(url: str) -> None:
    """Point Django's ``default`` database at ``url`` (closing every open connection)."""
    from django.conf import settings
    from django.db import connections

    from examples.django_host.settings import database

    connections.close_all()
    settings.DATABASES["default"] = database(url)
    connections.configure_settings(settings.DATABASES)  # fills in the defaults, in place
    if connections.settings is not settings.DATABASES:
        connections.settings["default"] = settings.DATABASES["default"]
    try:
        del connections["default"]
    except AttributeError:
        pass  # never opened in this thread


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@contextmanager
def clinic_database(kind: str, tmp: Path, pg_admin: str | None) -> Iterator[str]:
    """A migrated clinic database (``sqlite`` or ``postgres``); yields its URL."""
    setup_django()
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'clinic.sqlite3'}"
    else:
        assert pg_admin is not None
        url = create_pg_database(pg_admin)
    use_database(url)
    migrate()
    try:
        yield url
    finally:
        from django.db import connections

        connections.close_all()
        if kind != "sqlite":
            assert pg_admin is not None
            drop_pg_database(pg_admin, url)


def create_pg_database(admin_url: str) -> str:
    """A fresh, empty PostgreSQL database on the test server; returns its URL."""
    import psycopg

    name = f"clinic_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(admin_url: str, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the clinic's data --------------------------------------------------------------------


def add_practice(*, owner: str | None = None, record: bool = True) -> tuple[Any, Any]:
    """A new practice and its owner (a signed-in-able user, password "pw")."""
    from django.contrib.auth.models import User

    from examples.django_host.clinic.models import Practice, StaffMember

    slug = "p-" + uuid.uuid4().hex[:10]
    practice = Practice.objects.create(slug=slug, name="Mottagning " + slug[-4:],
                                       email=f"{slug}@clinic.example")
    user = User.objects.create_user(owner or "u-" + slug, password="pw", first_name="Owner")
    StaffMember.objects.create(user=user, practice=practice, is_owner=True,
                               can_record_consent=record)
    return practice, user


def signed_in(user: Any) -> Any:
    from django.test import Client

    browser = Client(HTTP_USER_AGENT="pytest")
    assert browser.login(username=user.username, password="pw")
    return browser


def page(response: Any) -> str:
    return response.content.decode()


def hidden_fields(text: str) -> dict[str, str]:
    """Every ``<input type="hidden">`` of a page: name → value."""
    found = {}
    for tag in re.findall(r"<input[^>]*>", text):
        if 'type="hidden"' in tag:
            name = re.search(r'name="([^"]+)"', tag)
            value = re.search(r'value="([^"]*)"', tag)
            if name:
                found[name.group(1)] = html.unescape(value.group(1) if value else "")
    return found


def book(practice: Any, *, name: str, email: str, consent: bool | None,
         browser: Any = None) -> Any:
    """Post the public booking form as a client would (consent box ticked or not)."""
    from django.test import Client

    browser = browser or Client(HTTP_USER_AGENT="pytest")
    form = page(browser.get(f"/book/{practice.slug}/"))
    slot = re.search(r'<option value="([^"]+)"', form)
    assert slot, form
    data = {**hidden_fields(form), "name": name, "email": email,
            "slot": html.unescape(slot.group(1))}
    if consent:
        data["samtycke_consent"] = "yes"
    return browser.post(f"/book/{practice.slug}/", data)


def complete_setup(browser: Any, *, required: bool) -> None:
    """The activation wizard's settings step, as the owner would send it."""
    step = page(browser.get(f"{PREFIX}/setup?step=3"))
    response = browser.post(f"{PREFIX}/setup", {
        **hidden_fields(step), "step": "3", "ask_new_clients": "yes",
        "ask_clients_without_consent": "yes",
        "require_consent_for_online_booking": "yes" if required else "no",
        "validity_days": "", "request_link_days": "14"})
    assert response.status_code in (302, 303), page(response)

"""Fixtures for the example Django clinic: one migrated database per module and backend
(SQLite file; PostgreSQL marked ``postgres``), Django's locmem mailbox emptied per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django_support import clinic_database, setup_django

setup_django()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                                marks=pytest.mark.postgres)])
def clinic_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[str]:
    """The clinic's database, migrated (its own tables and, by post_migrate, the app's)."""
    admin = request.getfixturevalue("pg_server") if request.param == "postgres" else None
    with clinic_database(request.param, tmp_path_factory.mktemp("clinic"), admin):
        yield request.param


@pytest.fixture
def mailbox() -> Iterator[list]:
    from django.core import mail

    mail.outbox = []
    yield mail.outbox
    mail.outbox = []

"""The example platform on a fresh database of its own, for a test module's fixture:
an SQLite file, or a database created on the PostgreSQL server and dropped after."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import create_pg_database, drop_pg_database
from flask import Flask

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))

from examples.host_app import create_app  # noqa: E402
from examples.host_app.testing import platform_of  # noqa: E402

#: A module fixture's ``params``: each test of the module runs on both databases.
BACKENDS: list[Any] = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def example_platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                     label: str) -> Iterator[Flask]:
    """The body of a ``platform_app`` fixture parametrised with :data:`BACKENDS`: the
    platform migrated on an empty database (``label`` names the file and the secret)."""
    admin = url = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp(label) / 'booking.sqlite'}"
    else:
        admin = request.getfixturevalue("pg_server")
        url = create_pg_database(admin)
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": f"{label}-" + "x" * 40,
                      "BASE_URL": "http://booking.test", "STRICT_APPS": True})
    app.config["TESTING"] = True
    yield app
    platform_of(app).sessions.remove()
    platform_of(app).engine.dispose()
    if admin is not None:
        drop_pg_database(admin, url)

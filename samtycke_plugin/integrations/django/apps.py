"""The Django app: ``INSTALLED_APPS += ["samtycke_plugin.integrations.django"]``.

Django's ``migrate`` then also runs Samtycke's own migrations (its ``samtycke_``
tables and ``samtycke_alembic_version``; Django's migration table never lists them)
on the database the app shares with the host (``SAMTYCKE["DATABASE"]``, default
``"default"``), and ``manage.py check`` warns about a SQLite database without the
options the app needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models.signals import post_migrate

from samtycke_plugin.integrations.django.host import app_settings, sqlite_options


def upgrade_app_tables(using: str) -> None:
    """Samtycke's migrations on the database ``using``, in one transaction of their own
    (idempotent: an up-to-date database is left as it is)."""
    from samtycke_plugin import db

    with transaction.atomic(using=using):
        wrapper = connections[using]
        wrapper.ensure_connection()
        db.upgrade(wrapper.connection)


def _after_migrate(sender: AppConfig, using: str, plan: Any = None, **_kwargs: Any) -> None:
    # post_migrate is sent once per installed app; run once, for ours.
    if sender is apps.get_app_config(SamtyckeConfig.label) and using == database_alias():
        upgrade_app_tables(using)


def database_alias() -> str:
    return str(app_settings().get("DATABASE", DEFAULT_DB_ALIAS))


def sqlite_problems(databases: Mapping[str, Mapping[str, Any]], alias: str
                    ) -> list[checks.CheckMessage]:
    """A warning when the shared database is SQLite without :func:`sqlite_options`'
    immediate transactions (read-then-write units would fail on the lock upgrade)."""
    config = databases.get(alias, {})
    if not str(config.get("ENGINE", "")).endswith("sqlite3"):
        return []
    options = config.get("OPTIONS", {})
    if str(options.get("transaction_mode", "")).upper() == "IMMEDIATE":
        return []
    return [checks.Warning(
        f"DATABASES[{alias!r}] is SQLite without OPTIONS['transaction_mode'] = 'IMMEDIATE'.",
        hint=f"Set OPTIONS to samtycke_plugin.integrations.django.sqlite_options() "
        f"({sqlite_options()!r}).",
        id="samtycke.W001",
    )]


def _check_database(app_configs: Any = None, **_kwargs: Any) -> list[checks.CheckMessage]:
    return sqlite_problems(settings.DATABASES, database_alias())


class SamtyckeConfig(AppConfig):
    name = "samtycke_plugin.integrations.django"
    label = "samtycke"
    verbose_name = "Samtycke"
    default = True

    def ready(self) -> None:
        post_migrate.connect(_after_migrate, dispatch_uid="samtycke-upgrade")
        checks.register(_check_database)

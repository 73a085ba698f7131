"""The Django app: ``INSTALLED_APPS += ["samtycke_plugin.integrations.django"]``.

Django's ``migrate`` then also runs Samtycke's own migrations (its ``samtycke_``
tables and ``samtycke_alembic_version``; Django's migration table never lists them).
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.db import connections, transaction
from django.db.models.signals import post_migrate


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
    if sender is apps.get_app_config(SamtyckeConfig.label):
        upgrade_app_tables(using)


class SamtyckeConfig(AppConfig):
    name = "samtycke_plugin.integrations.django"
    label = "samtycke"
    verbose_name = "Samtycke"
    default = True

    def ready(self) -> None:
        post_migrate.connect(_after_migrate, dispatch_uid="samtycke-upgrade")

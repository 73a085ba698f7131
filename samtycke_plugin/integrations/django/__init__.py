"""Samtycke for Django projects: a Django app a host adds to ``INSTALLED_APPS``.

What a Django host writes itself is a :class:`DjangoHost` subclass (its clients,
practices, signed-in practitioners and activation store) named in settings::

    INSTALLED_APPS = [..., "samtycke_plugin.integrations.django"]
    SAMTYCKE = {"HOST": "clinic.samtycke_glue.ClinicHost", "BASE_URL": "https://…"}
    DATABASES = {"default": {..., "OPTIONS": sqlite_options()}}  # SQLite only
    # urls.py
    path("", include("samtycke_plugin.integrations.django.urls"))

Everything else is here: the database bridge (:mod:`.host`), the app's migrations
from ``migrate`` (:mod:`.apps`), its pages mounted as Django views (:mod:`.mount`),
the host's page layout around them (:mod:`.layout`), ``{% load samtycke %}``
(:mod:`.templatetags.samtycke`), queryset helpers (:mod:`.queries`), the process's
facade (:func:`samtycke`) and ``manage.py samtycke …``.  Importing the package needs
no ``django.setup()`` (settings modules import :func:`sqlite_options` from it).
"""

from __future__ import annotations

from samtycke_plugin.integrations.django.clients import DjangoClients
from samtycke_plugin.integrations.django.host import DjangoHost, sqlite_options
from samtycke_plugin.integrations.django.layout import DjangoPageLayout
from samtycke_plugin.integrations.django.queries import client_select, filter_clients, ref_column
from samtycke_plugin.integrations.django.runtime import Samtycke, samtycke

__all__ = [
    "DjangoClients",
    "DjangoHost",
    "DjangoPageLayout",
    "Samtycke",
    "client_select",
    "filter_clients",
    "ref_column",
    "samtycke",
    "sqlite_options",
]

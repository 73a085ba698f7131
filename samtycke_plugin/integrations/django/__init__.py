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
facade (:func:`samtycke`) and ``manage.py samtycke …``.  Names are imported from
their modules (this package imports nothing of Django's before ``django.setup()``).
"""

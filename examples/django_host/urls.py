"""The clinic's URLs, and the apps' pages at their own prefixes."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("", include("examples.django_host.clinic.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("samtycke_plugin.integrations.django.urls")),
]

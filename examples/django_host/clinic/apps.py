from __future__ import annotations

from django.apps import AppConfig


class ClinicConfig(AppConfig):
    name = "examples.django_host.clinic"
    label = "clinic"
    default_auto_field = "django.db.models.BigAutoField"

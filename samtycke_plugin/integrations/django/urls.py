"""``path("", include("samtycke_plugin.integrations.django.urls"))``: every app's pages
at its own prefix (Samtycke's at ``/apps/samtycke/``)."""

from __future__ import annotations

from samtycke_plugin.integrations.django.mount import mount_patterns

app_name = "samtycke"
urlpatterns = mount_patterns()

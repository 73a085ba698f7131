"""Samtycke's hook implementations: thin adapters onto :mod:`samtycke_plugin`.

This package is the object registered under the entry point ``samtycke`` in the
``booking.apps`` group; pluggy finds the implementations imported here.
"""

from __future__ import annotations

from hookimpls.app import (
    booking_app_activated,
    booking_app_deactivated,
    booking_app_info,
    booking_web_mounts,
)
from hookimpls.booking import (
    booking_client_created,
    booking_form_render,
    booking_submit_check,
    booking_submitted,
)
from hookimpls.privacy import booking_client_erased
from hookimpls.views import (
    booking_client_consent_page,
    booking_client_list_badges,
    booking_client_list_filter_clause,
    booking_client_list_filters,
    booking_client_profile_render,
    booking_consent_lookup,
)

__all__ = [
    "booking_app_activated",
    "booking_app_deactivated",
    "booking_app_info",
    "booking_client_consent_page",
    "booking_client_created",
    "booking_client_erased",
    "booking_client_list_badges",
    "booking_client_list_filter_clause",
    "booking_client_list_filters",
    "booking_client_profile_render",
    "booking_consent_lookup",
    "booking_form_render",
    "booking_submit_check",
    "booking_submitted",
    "booking_web_mounts",
]

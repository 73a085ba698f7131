"""Kliniken: a small Django clinic (practices, staff, clients, bookings) that installs
Samtycke through :mod:`samtycke_plugin.integrations.django`.

``python -m examples.django_host`` migrates, seeds demo data and serves it.
"""

"""``{% load samtycke %}``: the apps' fragments on the host's own pages.

* ``{% samtycke_form tenant client %}`` — the booking-form fragments (``client`` may
  be ``None`` for a new client); ``{% samtycke_form_fragments tenant client as f %}``
  gives ``(key, html, field_names)`` triples for a custom layout;
* ``{% samtycke_panels client %}`` — the profile panels, for the signed-in practitioner;
* ``{% samtycke_list_filters as filters %}`` — ``(key, label)`` pairs for the list;
* ``{% samtycke_badges clients as badges %}`` once per page, then
  ``{{ badges|samtycke_badge:client.pk }}`` per row.

Only HTML the app escaped is marked safe (its fragments, panels and badges); every
label is plain text that Django autoescapes.  The language is Django's active one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django import template
from django.http import HttpRequest
from django.utils import translation
from django.utils.safestring import SafeString, mark_safe

from hookspecs.types import BookingFormContext, ClientRef, TenantRef
from samtycke_plugin.integrations.django.runtime import samtycke

register = template.Library()


def _locale() -> str:
    return translation.get_language() or "sv"


def _ref(value: object) -> str:
    return str(getattr(value, "pk", value))


def _request(context: Mapping[str, Any]) -> HttpRequest:
    request = context.get("request")
    if not isinstance(request, HttpRequest):
        raise template.TemplateSyntaxError(
            "samtycke tags need 'django.template.context_processors.request'"
        )
    return request


@register.simple_tag
def samtycke_form_fragments(tenant: object, client: object) -> list[tuple[str, SafeString,
                                                                            tuple[str, ...]]]:
    form = BookingFormContext(tenant=TenantRef(_ref(tenant)), locale=_locale(),
                              client=ClientRef(_ref(client)) if client else None)
    return [
        (f.key, mark_safe(f.html), f.field_names)  # noqa: S308 - escaped by the app
        for f in samtycke().hooks.form_fragments(form)
    ]


@register.simple_tag
def samtycke_form(tenant: object, client: object) -> SafeString:
    return mark_safe("\n".join(html for _k, html, _n in samtycke_form_fragments(tenant, client)))  # noqa: S308


@register.simple_tag(takes_context=True)
def samtycke_panels(context: Mapping[str, Any], client: object) -> SafeString:
    apps = samtycke()
    signed_in = apps.staff(_request(context))
    if signed_in is None:
        return mark_safe("")
    tenant, staff = signed_in
    panels = apps.hooks.profile_panels(tenant, ClientRef(_ref(client)), staff, _locale())
    return mark_safe("\n".join(p.html for p in panels))  # noqa: S308 - escaped by the app


@register.simple_tag(takes_context=True)
def samtycke_list_filters(context: Mapping[str, Any]) -> list[tuple[str, str]]:
    apps = samtycke()
    signed_in = apps.staff(_request(context))
    if signed_in is None:
        return []
    return [(f.key, f.label) for f in apps.hooks.list_filters(signed_in[0], _locale())]


@register.simple_tag(takes_context=True)
def samtycke_badges(context: Mapping[str, Any], clients: Iterable[object]
                    ) -> dict[str, SafeString]:
    apps = samtycke()
    signed_in = apps.staff(_request(context))
    refs = [ClientRef(_ref(c)) for c in clients]
    if signed_in is None or not refs:
        return {}
    badges = apps.hooks.list_badges(signed_in[0], refs, _locale())
    return {ref: mark_safe(" ".join(b.html for b in row))  # noqa: S308 - escaped by the app
            for ref, row in badges.items()}


@register.filter
def samtycke_badge(badges: Mapping[str, SafeString], client: object) -> SafeString:
    return badges.get(_ref(client), mark_safe(""))

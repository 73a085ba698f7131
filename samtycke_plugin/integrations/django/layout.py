"""The host's own page layout around the app's practitioner pages, from a Django
template (:class:`hookspecs.host.PageLayout`)."""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from hookspecs.types import AppPage, ClientRef, TenantRef
from samtycke_plugin.integrations.django.runtime import current_request


class DjangoPageLayout:
    """Mix into the host class to show the app's pages inside ``layout_template``.

    The template gets ``page`` (:class:`hookspecs.types.AppPage`: ``page.title`` and
    ``page.back`` are plain text, autoescaped as usual), ``app_head`` and ``app_body``
    (the app's already-escaped HTML, marked safe here and nowhere else) and the
    request, so ``{% csrf_token %}``, ``user`` and the host's context processors work
    as on any page of the host.
    """

    layout_template: str = "samtycke_page.html"

    def page_layout(self, page: AppPage) -> str:
        context = {
            "page": page,
            # The app escaped/sanitized both (contract: AppPage.head_html, body_html).
            "app_head": mark_safe(page.head_html),  # noqa: S308
            "app_body": mark_safe(page.body_html),  # noqa: S308
        }
        return render_to_string(self.layout_template, context, request=current_request.get())

    def client_path(self, tenant: TenantRef, client: ClientRef) -> str | None:
        """The client's profile page in the host (override; ``None``: no link)."""
        return None

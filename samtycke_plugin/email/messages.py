"""Rendering an outbox row into the mail the client receives (a request, a receipt, or
the request to confirm consent ticked in an online booking), in the client's language,
with the link derived again from the request's nonce.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from attrs import frozen
from sqlalchemy.orm import Session

from hookspecs.types import OutgoingEmail, TenantRef
from samtycke_plugin import common, hostdb, practices, receipts
from samtycke_plugin.email import addresses, branding, confirm, outbox, tokens
from samtycke_plugin.email.purpose_names import purpose_names
from samtycke_plugin.errors import InputError, SettingsError
from samtycke_plugin.i18n import N_, lang, t
from samtycke_plugin.models import (
    KIND_REQUEST,
    ConsentEvent,
    ConsentRequest,
    OutboxMessage,
    Practice,
    TextVersion,
)
from samtycke_plugin.plaintext import render_plain
from samtycke_plugin.purposes import DEFAULT_PURPOSE
from samtycke_plugin.render import render, trusted_html
from samtycke_plugin.rules import State

if TYPE_CHECKING:
    from hookspecs.host import Host


log = logging.getLogger("samtycke.mail")

#: The languages a consent text is written in, named in the client's language.
TEXT_LANGUAGES = {"sv": N_("Swedish"), "en": N_("English")}


@frozen(kw_only=True)
class Rendered:
    """A message ready to hand over (no database objects)."""

    outbox_id: int
    tenant: str
    to_addr: str
    to_name: str
    from_name: str
    reply_to: str | None
    subject: str
    text: str
    html: str
    message_id: str
    attachments: tuple[tuple[str, bytes], ...] = ()

    def outgoing(self) -> OutgoingEmail:
        headers = {"Auto-Submitted": "auto-generated"}
        if self.reply_to:
            headers["Reply-To"] = self.reply_to
        return OutgoingEmail(
            to=self.to_addr, subject=self.subject, text=self.text, html=self.html,
            message_id=self.message_id, headers=headers,
        )

    def email(self, from_addr: str, now: datetime) -> EmailMessage:
        """The MIME message (text + HTML alternative, attachments).  Raises
        :class:`ValueError` if any header would contain a line break."""
        msg = EmailMessage()
        msg["Subject"] = self.subject
        msg["From"] = Address(display_name=self.from_name, addr_spec=from_addr)
        msg["To"] = Address(display_name=self.to_name, addr_spec=self.to_addr)
        if self.reply_to:
            msg["Reply-To"] = self.reply_to
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = self.message_id
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(self.text)
        msg.add_alternative(self.html, subtype="html")
        for filename, data in self.attachments:
            msg.add_attachment(data, maintype="application", subtype="json", filename=filename)
        return msg


class RenderError(Exception):
    """A queued message that can never be rendered (its data is gone or unusable)."""


def _logo(host: Host, tenant: str) -> str | None:
    """The practice's logo URL for the mail header (``None``: the name alone)."""
    info = host.practice_info(TenantRef(tenant))
    return branding.logo_url(getattr(info, "logo_url", None)) if info is not None else None


def _practice_contact(host: Host, tenant: str) -> tuple[str, str | None, str | None]:
    info = host.practice_info(TenantRef(tenant))
    name = addresses.practice_name(host, tenant)
    email = phone = None
    if info is not None:
        if info.email:
            try:
                email = addresses.normalise_address(info.email)
            except InputError:
                email = None
        if info.phone and addresses.header_safe(info.phone):
            phone = info.phone.strip()
    return name, email, phone


def _palette(practice: Practice | None) -> branding.Palette:
    """The practice's mail colours; damaged settings give the app's own (the mail goes)."""
    if practice is None:
        return branding.palette(None)
    try:
        colour = practices.settings_of(practice).brand_colour
    except SettingsError:
        log.warning("practice %s: unreadable settings; mail sent in the app's colours",
                    practice.tenant_ref)
        colour = None
    return branding.palette(colour)


def _receipt_json(host: Host, tenant: str, event_id: int) -> bytes | None:
    """The consent receipt (Kantara field names) to attach, or ``None`` when it cannot be
    built: the mail still goes out, with its link, and the failure is logged."""
    try:
        receipt = receipts.build_receipt(host, tenant, event_id)
    except Exception:
        log.exception("practice %s: building the receipt JSON failed; mail sent without it",
                      tenant)
        return None
    return json.dumps(receipt, ensure_ascii=False, indent=2, default=str).encode("utf-8")


def _request_mail(
    locale: str, shared: dict[str, Any], occasion: object = None
) -> tuple[str, str, str]:
    """A request mail's subject, text and HTML (``occasion``: ``renewal`` for consent
    about to lapse, ``reminder`` for a request not answered yet; else a plain request)."""
    if occasion == "renewal":
        subject = t(locale, "%(practice)s asks you to renew your consent",
                    practice=shared["practice"])
    elif occasion == "reminder":
        subject = t(locale, "Reminder: %(practice)s asks for your consent",
                    practice=shared["practice"])
    else:
        subject = t(locale, "%(practice)s asks for your consent", practice=shared["practice"])
    text_body = render("mail_request.txt", locale, **shared)
    html_body = render("mail_request.html", locale, subject=subject, **shared)
    return subject, text_body, html_body


@frozen(kw_only=True)
class MailPreview:
    """A request mail as a client will get it (its link an example that opens nothing)."""

    subject: str
    text: str
    locale: str


def preview_request(
    host: Host, tenant: str, *, client_name: str, locale: str | None, expires_at: datetime,
    purposes: Sequence[str] = (),
) -> MailPreview:
    """The request mail the batch sends, rendered as :func:`render_message` renders it,
    for a client named ``client_name`` in ``locale``.  Raises :class:`InputError` when
    the practice's name cannot go into a mail (the batch would stop on it too)."""
    language = lang(locale)
    name, reply_to, phone = _practice_contact(host, tenant)
    url = host.absolute_url(
        TenantRef(tenant), tokens.link_path(tokens.PURPOSE_CONSENT, EXAMPLE_LINK)
    )
    shared: dict[str, Any] = {
        "practice": name, "practice_email": reply_to, "practice_phone": phone,
        "client_name": client_name, "url": url, "expires_at": expires_at,
        "palette": branding.palette(None), "logo_url": _logo(host, tenant),
        "purpose_names": _names_of(host, tenant, language,
                                                                       purposes),
    }
    subject, text_body, _html = _request_mail(language, shared)
    return MailPreview(subject=subject, text=text_body, locale=language)


def _names_of(host: Host, tenant: str, language: str, keys: Sequence[str]) -> list[str]:
    """The names a request mail lists (none for the default purpose alone: the mail
    reads as it did before purposes)."""
    if list(keys) in ([], [DEFAULT_PURPOSE]):
        return []
    with hostdb.session(host) as session:
        names = purpose_names(session, tenant, language)
    return [names.get(k, k) for k in keys]


def _page_url(host: Host, session: Session, row: OutboxMessage) -> str | None:
    """The link to the client's own page a receipt carries (``None``: revoked since)."""
    from samtycke_plugin.email import page_links

    link_id = row.payload.get("page_link")
    return page_links.url_of(session, host, link_id) if isinstance(link_id, int) else None


#: Stands for a client's own link in a previewed mail (no request has this token).
EXAMPLE_LINK = "example"


def render_message(host: Host, session: Session, row: OutboxMessage) -> Rendered:
    """Render one outbox row in the client's language (the link is derived again)."""
    from samtycke_plugin.email import page_mail

    if row.kind in page_mail.KINDS:
        return page_mail.render(host, session, row)
    tenant = row.tenant_ref
    req = session.get(ConsentRequest, row.request_id) if row.request_id is not None else None
    practice = session.get(Practice, tenant)
    if req is None or practice is None or req.tenant_ref != tenant or not row.to_addr:
        raise RenderError("the request or practice of this message no longer exists")
    key = tokens.link_key(host)
    token = tokens.token_for(key, req)
    if tokens.token_hash(token) != req.token_hash:
        # Never re-key silently: a relay running with another secret than the web pages
        # would otherwise mail links that cannot be opened.
        raise RenderError(
            "the link key differs from the one this request was made with (the host's "
            "secret was rotated, or this relay does not use the web app's secret); "
            "send the client a new request"
        )
    url = host.absolute_url(TenantRef(tenant), tokens.link_path(req.purpose, token))
    locale = lang(row.locale)
    name, reply_to, phone = _practice_contact(host, tenant)
    to_name = str(row.payload.get("name") or "")
    if not addresses.header_safe(to_name):
        raise InputError("name", addresses.BAD_CLIENT_NAME)
    shared: dict[str, Any] = {
        "practice": name, "practice_email": reply_to, "practice_phone": phone,
        "client_name": to_name, "url": url, "expires_at": req.expires_at,
        "palette": _palette(practice), "logo_url": _logo(host, tenant), "purpose_names": [],
    }
    attachments: tuple[tuple[str, bytes], ...] = ()
    names = purpose_names(session, tenant, locale)
    if row.kind == KIND_REQUEST:
        asked = req.purpose_majors if isinstance(req.purpose_majors, dict) else {}
        if list(asked) not in ([], [DEFAULT_PURPOSE]):
            shared["purpose_names"] = [names.get(str(k), str(k)) for k in asked]
        subject, text_body, html_body = _request_mail(
            locale, shared, row.payload.get("occasion"))
    elif row.kind == outbox.KIND_RECEIPT:
        event_id = row.payload.get("event_id")
        event = session.get(ConsentEvent, event_id) if isinstance(event_id, int) else None
        if event is None or event.tenant_ref != tenant or event.client_ref != row.client_ref:
            raise RenderError("the consent event of this receipt no longer exists")
        version = (
            session.get(TextVersion, event.text_version_id)
            if event.text_version_id is not None else None
        )
        if version is None:
            raise RenderError("the text version of this receipt no longer exists")
        subject = t(locale, "Receipt: your consent to %(practice)s", practice=name)
        context = {
            **shared,
            "renewed": event.state == State.RENEWED.value,
            "given_at": event.given_at or event.occurred_at,
            "recorded_at": event.occurred_at,
            "version": common.version_label(version.major, version.minor),
            "text_language": version.language,
            "text_language_name": t(
                locale, TEXT_LANGUAGES.get(version.language, version.language)
            ),
            "text_sha256": version.sha256,
            "text_plain": render_plain(version.body),
            "text_html": trusted_html(version.html),
            "consent_expires_at": event.expires_at,
            "event_seq": event.seq,
            "purpose_name": names.get(event.purpose_key, event.purpose_key),
            "page_url": _page_url(host, session, row),
        }
        text_body = render("mail_receipt.txt", locale, **context)
        html_body = render("mail_receipt.html", locale, subject=subject, **context)
        receipt = _receipt_json(host, tenant, event.id)
        if receipt is not None:
            attachments = ((t(locale, "consent-receipt") + ".json", receipt),)
    elif row.kind == confirm.KIND_CONFIRM:
        shared.update(confirm.mail_context(session, tenant, req, locale))
        subject = t(locale, "Confirm your consent to %(practice)s", practice=name)
        text_body = render("mail_confirm.txt", locale, **shared)
        html_body = render("mail_confirm.html", locale, subject=subject, **shared)
    else:
        raise RenderError(f"unknown message kind {row.kind!r}")
    return Rendered(
        outbox_id=row.id, tenant=tenant, to_addr=row.to_addr, to_name=to_name,
        from_name=name, reply_to=reply_to, subject=subject, text=text_body, html=html_body,
        message_id=row.message_id, attachments=attachments,
    )

"""The platform's own e-mail (booking confirmations): the development mailbox in
demo mode, or SMTP when ``BOOKING_SMTP_HOST`` is set."""

from __future__ import annotations

import logging
import smtplib
import uuid
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from examples.host_app.models import Booking, Client, DevMail, Practice
from examples.host_app.runtime import db, platform

log = logging.getLogger(__name__)

RETURNING_MAX_AGE = 365 * 24 * 3600


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(platform().settings["SECRET_KEY"], salt="returning-client")


def returning_token(client: Client) -> str:
    """A link token that lets a client book again as themselves (no account needed)."""
    return _serializer().dumps({"p": client.practice_id, "c": client.id})


def returning_client(token: str, practice_id: int) -> Client | None:
    try:
        data = _serializer().loads(token, max_age=RETURNING_MAX_AGE)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("p") != practice_id:
        return None
    client = db().get(Client, data.get("c")) if isinstance(data.get("c"), int) else None
    return client if client is not None and client.practice_id == practice_id else None


def to_dev_mailbox(session: Session, at: datetime, practice_id: int | None, source: str,
                   to: str, subject: str, text: str, html: str | None, message_id: str) -> None:
    """Store a message in the development mailbox, in the caller's transaction; a
    message resent with the same Message-ID is stored once."""
    if session.scalar(select(DevMail.id).where(DevMail.message_id == message_id)) is None:
        session.add(DevMail(practice_id=practice_id, source=source, to=to, subject=subject,
                            text=text, html=html, message_id=message_id, sent_at=at))
        session.flush()


def send(practice: Practice, to: str, subject: str, text: str) -> bool:
    """Deliver in the caller's transaction (dev mailbox) or by SMTP (best effort);
    returns whether the message was handed over."""
    settings = platform().settings
    if settings["DEV_MAILBOX"]:
        to_dev_mailbox(db(), platform().now(), practice.id, "platform", to, subject, text,
                       None, f"<{uuid.uuid4().hex}@booking.example>")
        return True
    message = EmailMessage()
    message["From"] = settings["SMTP_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="booking.example")
    message.set_content(text)
    try:
        with smtplib.SMTP(settings["SMTP_HOST"], settings["SMTP_PORT"], timeout=10) as smtp:
            if settings["SMTP_STARTTLS"]:
                smtp.starttls()
            if settings["SMTP_USER"]:
                smtp.login(settings["SMTP_USER"], settings["SMTP_PASSWORD"])
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException):
        log.exception("the platform's e-mail could not be sent")
        return False
    return True


def confirmation_text(booking: Booking, practice: Practice, language: str, book_again: str,
                      when: str, service: str, consents: str | None = None) -> tuple[str, str]:
    from examples.host_app.i18n import translate

    subject = translate(language, "Your booking at %(practice)s") % {"practice": practice.name}
    lines = [
        translate(language, "Hello %(name)s,") % {"name": booking.client.name},
        "",
        translate(language, "Your booking is confirmed:"),
        f"  {service}",
        f"  {when}",
        f"  {practice.name}" + (f", {practice.city}" if practice.city else ""),
        "",
        translate(language, "Book your next visit with this link:"),
        book_again,
        "",
        translate(language, "To change or cancel, contact the practice: %(contact)s")
        % {"contact": ", ".join(x for x in (practice.phone, practice.email) if x)},
    ]
    if consents:
        lines += ["", translate(language, "See, give or withdraw your consents:"), consents]
    return subject, "\n".join(lines)

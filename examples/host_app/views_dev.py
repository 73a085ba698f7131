"""The development mailbox: what the platform and its apps "sent" in demo mode."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from markupsafe import Markup, escape
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from examples.host_app.i18n import gettext as _
from examples.host_app.models import DevMail, Practice
from examples.host_app.runtime import db, platform

bp = Blueprint("dev", __name__, url_prefix="/dev")

_URL = re.compile(r"https?://[^\s<>\"']+")


def _enabled() -> None:
    if not platform().settings["DEV_MAILBOX"]:
        abort(404)  # real SMTP is configured: there is no development mailbox


def linkify(text: str) -> Markup:
    """Escape the plain-text body, then turn its http(s) links into anchors."""
    out: list[str] = []
    pos = 0
    for match in _URL.finditer(text):
        out.append(str(escape(text[pos:match.start()])))
        url = escape(match.group(0))
        out.append(f'<a href="{url}">{url}</a>')
        pos = match.end()
    out.append(str(escape(text[pos:])))
    return Markup("".join(out))  # noqa: S704 - every piece above is escaped


@bp.get("/mailbox")
def mailbox() -> Any:
    _enabled()
    to = request.args.get("to", "").strip()[:254]
    query = select(DevMail, Practice.name).outerjoin(Practice, Practice.id == DevMail.practice_id)
    if to:
        query = query.where(func.lower(DevMail.to) == to.lower())
    rows = db().execute(query.order_by(DevMail.id.desc()).limit(100)).all()
    return render_template("mailbox.html", rows=rows, to=to)


@bp.get("/mailbox/<id:mail_id>")
def message(mail_id: int) -> Any:
    _enabled()
    row = db().get(DevMail, mail_id)
    if row is None:
        abort(404)
    return render_template("mail.html", mail=row, body=linkify(row.text))


@bp.post("/mailbox/send")
def send_now() -> Response:
    _enabled()
    sent = platform().apps.send_outbox()
    flash(_("Queued e-mail was sent: %(n)s.", n=sent) if sent else _("No e-mail was waiting."))
    return redirect(url_for("dev.mailbox"))

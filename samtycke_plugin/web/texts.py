"""The text editor (a correction or a change of content, with the diff and the number
of clients who must consent again shown before saving) and the text versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from werkzeug.exceptions import BadRequest, NotFound
from werkzeug.wrappers import Request, Response

from hookspecs.types import Permission
from samtycke_plugin import common, hostdb, practice_texts, practices, status_text
from samtycke_plugin.errors import Conflict, InputError
from samtycke_plugin.errors import NotFound as NotFound_
from samtycke_plugin.i18n import N_, t, tn
from samtycke_plugin.inputs import record_id, whole_number
from samtycke_plugin.purposes import DEFAULT_PURPOSE, PurposeInfo
from samtycke_plugin.render import trusted_html
from samtycke_plugin.roles import TEXT_REFUSED
from samtycke_plugin.rules import asks_at_booking
from samtycke_plugin.text import LANGUAGES, normalise_body
from samtycke_plugin.web.base import (
    Handler,
    requires,
)
from samtycke_plugin.web.purposes_page import active_purposes, find_purpose, purpose_name
from samtycke_plugin.web.setup import _text_error, _text_rows
from samtycke_plugin.web.staff import (
    Ctx,
    _actor,
    _damaged,
    _free_text_error,
    _language_name,
    _number,
    _who,
    check_csrf,
    context,
    redirect,
    render_page,
)

KIND_LABELS = {
    "initial": N_("Original text"),
    "correction": N_("Correction"),
    "content": N_("Change of content"),
}


def text_version(request: Request, text_id: str) -> Response:
    ctx = context(request)
    number = record_id(text_id)  # not Werkzeug's int converter: its \d takes "٣" as 3
    if number is None:
        raise NotFound()
    with hostdb.session(ctx.host) as session:
        text = practice_texts.text_by_id(session, ctx.tenant, number)
        try:
            current_major = practices.purpose_major(session, ctx.practice, text.purpose_key)
        except NotFound_:
            current_major = None  # a purpose no longer asked for: no current content
        return render_page(
            ctx,
            "practice_text_version.html",
            active="text",
            text=text,
            label=common.version_label(text.major, text.minor),
            language_name=_language_name(ctx, text.language),
            kind=status_text.code_label(KIND_LABELS, text.change_kind, ctx.locale),
            who=_who(ctx, text.created_by),
            html=trusted_html(text.html),
            is_current=text.major == current_major,
        )


def _versions(ctx: Ctx, purpose: PurposeInfo) -> list[dict[str, Any]]:
    with hostdb.session(ctx.host) as session:
        major = practices.purpose_major(session, ctx.practice, purpose.key)
        return [
            {
                "id": v.id,
                "label": common.version_label(v.major, v.minor),
                "language": _language_name(ctx, v.language),
                "kind": status_text.code_label(KIND_LABELS, v.change_kind, ctx.locale),
                "who": _who(ctx, v.created_by),
                "at": v.created_at,
                "reason": v.reason,
                "current": v.major == major,
            }
            for v in practice_texts.text_versions(session, ctx.tenant, purpose.key)
        ]


def _major(ctx: Ctx, purpose: PurposeInfo) -> int:
    with hostdb.session(ctx.host) as session:
        return practices.purpose_major(session, ctx.practice, purpose.key)


def _purpose_of(ctx: Ctx, key: str | None) -> PurposeInfo:
    """The purpose the page edits (``?purpose=`` / the form's ``purpose``; none: the
    default one), within the signed-in practice only."""
    return find_purpose(ctx, key or DEFAULT_PURPOSE)


def _choices(ctx: Ctx, purpose: PurposeInfo) -> list[dict[str, Any]]:
    return [
        {"key": p.key, "name": purpose_name(ctx, p), "current": p.key == purpose.key}
        for p in active_purposes(ctx)
    ]


def _editor(
    ctx: Ctx, purpose: PurposeInfo, *, bodies: Mapping[str, str] | None = None,
    status: int = 200, **values: Any,
) -> Response:
    return render_page(
        ctx,
        "practice_text.html",
        status=status,
        active="text",
        texts=_text_rows(ctx, bodies, purpose.key),
        expected_major=_major(ctx, purpose),
        versions=_versions(ctx, purpose),
        asks_at_booking=asks_at_booking(practices.settings_of(ctx.practice)),
        purpose=purpose,
        purpose_label=purpose_name(ctx, purpose),
        choices=_choices(ctx, purpose),
        **values,
    )


def _content_saved(ctx: Ctx, raw_affected: str, purpose: PurposeInfo) -> str:
    """The message after a change of content of one purpose: how many clients must consent
    again, and when they are asked, as the practice's settings say."""
    message = _content_saved_count(ctx, raw_affected)
    if purpose.key == DEFAULT_PURPOSE and len(active_purposes(ctx)) == 1:
        return message
    return message + " " + t(
        ctx.locale,
        "This concerns only the purpose “%(purpose)s”: the clients who had consented to it "
        "are asked for it alone, and their consent to your other purposes stays as it is.",
        purpose=purpose_name(ctx, purpose),
    )


def _content_saved_count(ctx: Ctx, raw_affected: str) -> str:
    affected = int(raw_affected) if raw_affected.isdigit() and len(raw_affected) < 10 else 0
    if affected == 0:
        return t(
            ctx.locale,
            "The new text was saved. No client had valid consent to the earlier text, so "
            "no consent became outdated.",
        )
    if asks_at_booking(practices.settings_of(ctx.practice)):
        return tn(
            ctx.locale,
            "The new text was saved. %(count)s client who had consented must consent again: "
            "they are asked at their next online booking, and you can e-mail them a "
            "request now under “Ask clients”.",
            "The new text was saved. %(count)s clients who had consented must consent again: "
            "they are asked at their next online booking, and you can e-mail them a "
            "request now under “Ask clients”.",
            affected,
            count=_number(ctx, affected),
        )
    return tn(
        ctx.locale,
        "The new text was saved. %(count)s client who had consented must consent again. "
        "Your settings ask no one at online booking, so they are asked only if you "
        "e-mail them a request under “Ask clients”.",
        "The new text was saved. %(count)s clients who had consented must consent again. "
        "Your settings ask no one at online booking, so they are asked only if you "
        "e-mail them a request under “Ask clients”.",
        affected,
        count=_number(ctx, affected),
    )


@requires(Permission.MANAGE_SETTINGS, TEXT_REFUSED)
def text_editor(request: Request) -> Response:
    ctx = context(request)
    if request.method != "POST":
        purpose = _purpose_of(ctx, request.args.get("purpose"))
        if request.args.get("done") == "content":
            return _editor(
                ctx, purpose,
                notice=_content_saved(ctx, request.args.get("affected", ""), purpose),
            )
        return _editor(ctx, purpose)
    form = check_csrf(ctx)
    purpose = _purpose_of(ctx, form.get("purpose"))
    here = {"purpose": purpose.key} if purpose.key != DEFAULT_PURPOSE else {}
    action = form.get("action")
    expected = whole_number(form.get("expected_major", ""), max_digits=9)
    if expected is None:
        return _damaged(ctx, "expected_major")
    bodies = {lang: form[f"text_{lang}"] for lang in LANGUAGES if f"text_{lang}" in form}
    if action == "edit":
        return _editor(ctx, purpose, bodies=bodies)
    if action not in ("preview", "save"):
        raise BadRequest()
    with hostdb.session(ctx.host) as session:
        current = practice_texts.current_texts(session, ctx.practice, purpose.key)
        bodies = {lang: body for lang, body in bodies.items() if lang in current}
        changed = [lang for lang, body in bodies.items()
                   if normalise_body(body) != current[lang].body]
        if action == "save" and bodies and not changed:
            # The preview refuses an unchanged text, so this is the same save posted again
            # (double click) or someone saved exactly this text meanwhile: it is saved.
            return redirect(ctx, "/text", **here, done="already")
        if expected != practices.purpose_major(session, ctx.practice, purpose.key):
            raise Conflict(practice_texts.TEXT_CHANGED_MEANWHILE)
        if not changed:
            return _editor(
                ctx,
                purpose,
                bodies=bodies,
                status=400,
                errors={"text": t(ctx.locale,
                                  "You have not changed the text. Edit it, then preview.")},
            )
        previews: list[dict[str, Any]] = []
        affected = 0
        for lang in changed:
            try:
                content = practice_texts.preview_text_change(
                    ctx.host, ctx.tenant, language=lang, body=bodies[lang], kind="content",
                    purpose=purpose.key,
                )
                correction = practice_texts.preview_text_change(
                    ctx.host, ctx.tenant, language=lang, body=bodies[lang], kind="correction",
                    purpose=purpose.key,
                )
            except InputError as exc:
                return _editor(
                    ctx, purpose, bodies=bodies, status=400,
                    errors={exc.field: _text_error(ctx, exc.field)},
                )
            affected = content.affected  # the same for every language: clients, not texts
            previews.append(
                {
                    "language": lang,
                    "name": _language_name(ctx, lang),
                    "diff": content.diff,
                    "correction_label": common.version_label(
                        correction.new_major, correction.new_minor
                    ),
                    "content_label": common.version_label(content.new_major, content.new_minor),
                }
            )
        kind = form.get("kind", "")
        reason = form.get("reason", "")
        if action == "save":
            errors: dict[str, str] = {}
            if kind not in ("correction", "content"):
                errors["kind"] = t(
                    ctx.locale,
                    "Choose whether this is a correction or a change of content, then save.",
                )
            if (reason_error := _free_text_error(ctx, "reason", reason)) is not None:
                errors["reason"] = reason_error
            if not errors:
                publish = bodies if kind == "content" else {lang: bodies[lang] for lang in changed}
                practice_texts.publish_text(
                    ctx.host,
                    ctx.tenant,
                    bodies=publish,
                    kind=kind,
                    reason=reason,
                    actor=_actor(ctx),
                    expected_major=expected,
                    purpose=purpose.key,
                )
                if kind == "content":
                    return redirect(ctx, "/text", **here, done=kind, affected=affected)
                return redirect(ctx, "/text", **here, done=kind)
            status_code = 400
        else:
            errors, status_code = {}, 200
        unchanged = [_language_name(ctx, lang) for lang in bodies if lang not in changed]
        return render_page(
            ctx,
            "practice_text_preview.html",
            status=status_code,
            active="text",
            previews=previews,
            bodies=bodies,
            expected_major=expected,
            affected=affected,
            affected_sentence=tn(
                ctx.locale,
                "%(n)s client who has consented now will need to consent again.",
                "%(n)s clients who have consented now will need to consent again.",
                affected,
            ),
            unchanged=unchanged,
            asks_at_booking=asks_at_booking(practices.settings_of(ctx.practice)),
            kind=kind,
            reason=reason,
            errors=errors,
            purpose=purpose,
            purpose_label=purpose_name(ctx, purpose),
        )


#: (path, endpoint, handler, methods).
ROUTES: list[tuple[str, str, Handler, tuple[str, ...]]] = [
    ("/text", "practice.text", text_editor, ("GET", "POST")),
    ("/texts/<text_id>", "practice.text_version", text_version, ("GET",)),
]

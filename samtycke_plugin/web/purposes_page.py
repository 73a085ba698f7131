"""The practice's purposes: the list (requirement, validity, legal-basis note, current
text, clients with valid consent), adding one from the catalogue or from scratch,
editing and archiving.

The purpose a page concerns comes from the query string or the form (``key``), always
looked up within the signed-in practice, so another practice's purpose is never found.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from werkzeug.exceptions import BadRequest, NotFound
from werkzeug.wrappers import Request, Response

from hookspecs.types import Permission, TenantRef
from samtycke_plugin import common, hostdb, practice_texts, purpose_catalogue, purposes
from samtycke_plugin.errors import Conflict, InputError
from samtycke_plugin.i18n import N_, t
from samtycke_plugin.inputs import whole_number
from samtycke_plugin.purposes import DEFAULT_PURPOSE, PurposeInfo
from samtycke_plugin.text import LANGUAGES
from samtycke_plugin.web.base import Handler, requires
from samtycke_plugin.web.staff import (
    DONE,
    Ctx,
    _actor,
    _language_name,
    _number,
    _rollback,
    check_csrf,
    context,
    redirect,
    render_page,
)

DONE.update({
    "purpose_added": N_("The purpose was added. Clients are asked for it from now on."),
    "purpose_saved": N_("Your changes to the purpose were saved."),
    "purpose_archived": N_(
        "The purpose was removed: clients are no longer asked for it. Its history is kept."
    ),
})

#: Where the add form returns to: the purposes page, or the wizard's purposes step.
_BACK = {"purposes": ("/purposes", {}), "setup": ("/setup", {"step": 2})}


def purpose_name(ctx: Ctx, info: PurposeInfo) -> str:
    """The purpose's name as the page shows it (the default purpose without a name of its
    own goes by the catalogue's)."""
    if not info.names and info.key == DEFAULT_PURPOSE:
        return purpose_catalogue.CARE.name.get(ctx.locale)
    return info.name(ctx.locale)


def find_purpose(ctx: Ctx, key: object) -> PurposeInfo:
    """The practice's (unarchived) purpose ``key``; anything else → 404."""
    for info in active_purposes(ctx):
        if info.key == key:
            return info
    raise NotFound()


def active_purposes(ctx: Ctx) -> list[PurposeInfo]:
    with hostdb.session(ctx.host) as session:
        return purposes.list_purposes(session, ctx.tenant)


def all_purposes(ctx: Ctx) -> list[PurposeInfo]:
    """Every purpose the practice has had, archived ones too (history and exports)."""
    with hostdb.session(ctx.host) as session:
        return purposes.list_purposes(session, ctx.tenant, include_archived=True)


def _validity(ctx: Ctx, days: int | None) -> str:
    if days is None:
        return t(ctx.locale, "Until withdrawn")
    return t(ctx.locale, "%(days)s days", days=_number(ctx, days))


def _rows(ctx: Ctx) -> list[dict[str, Any]]:
    now = common.now_utc(ctx.host)
    rows = []
    with hostdb.session(ctx.host) as session:
        for info in purposes.list_purposes(session, ctx.tenant):
            texts = practice_texts.current_texts(session, ctx.practice, info.key)
            rows.append({
                "key": info.key,
                "name": purpose_name(ctx, info),
                "default": info.key == DEFAULT_PURPOSE,
                "required": info.required,
                "validity": _validity(ctx, info.validity_days),
                "legal_basis": info.legal_basis.get(ctx.locale)
                or next(iter(info.legal_basis.values()), ""),
                "versions": [
                    (_language_name(ctx, lang), common.version_label(v.major, v.minor))
                    for lang, v in sorted(texts.items())
                ],
                "valid": _number(
                    ctx, practice_texts.count_valid(session, ctx.practice, now, info.key)),
            })
    return rows


def _offers(ctx: Ctx) -> list[dict[str, str]]:
    """The catalogue's optional purposes the practice has not added (archived keys are
    never reused, so those are not offered again either)."""
    with hostdb.session(ctx.host) as session:
        used = {p.key for p in purposes.list_purposes(session, ctx.tenant, include_archived=True)}
    return [
        {"key": p.key, "name": p.name.get(ctx.locale), "legal_basis": p.legal_basis.get(ctx.locale)}
        for p in purpose_catalogue.OPTIONAL
        if p.key not in used
    ]


@requires(Permission.MANAGE_SETTINGS)
def purposes_list(request: Request) -> Response:
    ctx = context(request)
    if request.method == "POST":
        form = check_csrf(ctx)
        if form.get("action") != "archive":
            raise BadRequest()
        info = find_purpose(ctx, form.get("key"))
        if info.key == DEFAULT_PURPOSE:
            raise BadRequest()
        with hostdb.session(ctx.host) as session:
            purposes.archive(session, ctx.tenant, info.key, common.now_utc(ctx.host))
        return redirect(ctx, "/purposes", done="purpose_archived")
    return render_page(
        ctx, "practice_purposes.html", active="purposes", purposes=_rows(ctx), offers=_offers(ctx)
    )


def _blank(ctx: Ctx, source: str) -> dict[str, Any]:
    """The add form's first values: the catalogue entry's (with the practice's name and
    contact filled into its texts), or empty for a purpose of the practice's own."""
    entry = purpose_catalogue.by_key(source)
    if entry is None or entry.key == DEFAULT_PURPOSE:
        return {"key": "", "required": "no", "validity_days": "",
                **{f"name_{x}": "" for x in LANGUAGES}, **{f"legal_{x}": "" for x in LANGUAGES},
                **{f"text_{x}": "" for x in LANGUAGES}}
    info = ctx.host.practice_info(TenantRef(ctx.tenant))
    name = info.name if info else ctx.tenant
    contact = ", ".join(x for x in (info.email, info.phone) if x) if info else ""
    values: dict[str, Any] = {
        "key": entry.key,
        "required": "yes" if entry.required else "no",
        "validity_days": "" if entry.validity_days is None else str(entry.validity_days),
    }
    for x in LANGUAGES:
        values[f"name_{x}"] = entry.name.get(x)
        values[f"legal_{x}"] = entry.legal_basis.get(x)
        values[f"text_{x}"] = entry.text(x, practice_name=name, practice_contact=contact or name)
    return values


def _parse(
    ctx: Ctx, form: Mapping[str, str], *, with_texts: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """(values to re-show, errors by field); the values' ``validity`` is the parsed days."""
    shown: dict[str, Any] = {name: form.get(name, "") for name in (
        "key", "required", "validity_days",
        *(f"name_{x}" for x in LANGUAGES), *(f"legal_{x}" for x in LANGUAGES),
        *((f"text_{x}" for x in LANGUAGES) if with_texts else ()),
    )}
    errors: dict[str, str] = {}
    if not any(shown[f"name_{x}"].strip() for x in LANGUAGES):
        errors[f"name_{LANGUAGES[0]}"] = t(ctx.locale, "Give the purpose a name.")
    if shown["required"] not in ("yes", "no"):
        errors["required"] = t(
            ctx.locale, "Choose whether online booking requires this consent or only asks for it."
        )
    raw = shown["validity_days"].strip()
    shown["validity"] = None
    if raw:
        days = whole_number(raw, max_digits=4)
        if days is None or not 1 <= days <= 3650:
            errors["validity_days"] = t(
                ctx.locale,
                "Write the validity as a whole number of days from 1 to 3650, or leave it "
                "empty if consent should not lapse by itself.",
            )
        shown["validity"] = days
    return shown, errors


def _form_page(
    ctx: Ctx, *, mode: str, values: Mapping[str, Any], back: str = "purposes",
    status: int = 200, errors: Mapping[str, str] | None = None, info: PurposeInfo | None = None,
) -> Response:
    return render_page(
        ctx,
        "practice_purpose_form.html",
        status=status,
        active="purposes",
        mode=mode,
        values=values,
        return_to=back,
        languages=[(x, _language_name(ctx, x)) for x in LANGUAGES],
        errors=dict(errors or {}),
        is_default=info is not None and info.key == DEFAULT_PURPOSE,
        purpose=info,
    )


@requires(Permission.MANAGE_SETTINGS)
def purpose_add(request: Request) -> Response:
    ctx = context(request)
    if request.method != "POST":
        back = request.args.get("back", "purposes")
        return _form_page(
            ctx, mode="add", values=_blank(ctx, request.args.get("from", "")),
            back=back if back in _BACK else "purposes",
        )
    form = check_csrf(ctx)
    back = form.get("back", "purposes")
    back = back if back in _BACK else "purposes"
    shown, errors = _parse(ctx, form, with_texts=True)
    try:
        purposes.check_key(shown["key"])
    except InputError:
        errors["key"] = t(
            ctx.locale,
            "Write a short key of lower-case letters a–z, digits, “-” or “_”, starting with "
            "a letter (at most 32 characters), such as “newsletter”.",
        )
    if not errors:
        try:
            with hostdb.session(ctx.host) as session:
                purposes.add(
                    session, ctx.tenant, key=shown["key"],
                    names={x: shown[f"name_{x}"] for x in LANGUAGES},
                    legal_basis={x: shown[f"legal_{x}"] for x in LANGUAGES},
                    required=shown["required"] == "yes", validity_days=shown["validity"],
                    bodies={x: shown[f"text_{x}"] for x in LANGUAGES if shown[f"text_{x}"].strip()},
                    actor=_actor(ctx), now=common.now_utc(ctx.host),
                )
        except Conflict:
            _rollback(ctx)
            errors["key"] = t(
                ctx.locale,
                "The practice already has, or has had, a purpose with this key. Choose another "
                "key.",
            )
        except InputError as exc:
            _rollback(ctx)
            field = "text_" + LANGUAGES[0] if exc.field == "text" else exc.field
            errors[field if field in shown else f"name_{LANGUAGES[0]}"] = t(
                ctx.locale,
                "Check the name, the legal-basis note and the texts: a name has at most 120 "
                "characters, and each text at least 20.",
            )
    if errors:
        return _form_page(ctx, mode="add", values=shown, back=back, status=400, errors=errors)
    path, params = _BACK[back]
    return redirect(ctx, path, **params, done="purpose_added")


@requires(Permission.MANAGE_SETTINGS)
def purpose_edit(request: Request) -> Response:
    ctx = context(request)
    if request.method != "POST":
        # Without a key: the default purpose, which every practice has.
        info = find_purpose(ctx, request.args.get("key") or DEFAULT_PURPOSE)
        values: dict[str, Any] = {
            "key": info.key,
            "required": "yes" if info.required else "no",
            "validity_days": "" if info.validity_days is None else str(info.validity_days),
        }
        for x in LANGUAGES:
            values[f"name_{x}"] = info.names.get(x, "")
            values[f"legal_{x}"] = info.legal_basis.get(x, "")
        if info.key == DEFAULT_PURPOSE and not info.names:
            for x in LANGUAGES:
                values[f"name_{x}"] = purpose_catalogue.CARE.name.get(x)
                care_basis = purpose_catalogue.CARE.legal_basis.get(x)
                values[f"legal_{x}"] = values[f"legal_{x}"] or care_basis
        return _form_page(ctx, mode="edit", values=values, info=info)
    form = check_csrf(ctx)
    info = find_purpose(ctx, form.get("key"))
    posted = dict(form.items())
    if info.key == DEFAULT_PURPOSE:
        # The default purpose's requirement and lifetime are the wizard's settings.
        posted["required"] = "yes" if info.required else "no"
        posted["validity_days"] = "" if info.validity_days is None else str(info.validity_days)
    shown, errors = _parse(ctx, posted, with_texts=False)
    shown["key"] = info.key
    if not errors:
        try:
            with hostdb.session(ctx.host) as session:
                purposes.update(
                    session, ctx.tenant, info.key,
                    names={x: shown[f"name_{x}"] for x in LANGUAGES},
                    legal_basis={x: shown[f"legal_{x}"] for x in LANGUAGES},
                    required=shown["required"] == "yes", validity_days=shown["validity"],
                )
        except InputError:
            _rollback(ctx)
            errors[f"name_{LANGUAGES[0]}"] = t(
                ctx.locale,
                "Check the name and the legal-basis note: each has at most 120 characters.",
            )
    if errors:
        return _form_page(ctx, mode="edit", values=shown, status=400, errors=errors, info=info)
    return redirect(ctx, "/purposes", done="purpose_saved")


ROUTES: list[tuple[str, str, Handler, tuple[str, ...]]] = [
    ("/purposes", "practice.purposes", purposes_list, ("GET", "POST")),
    ("/purposes/add", "practice.purpose_add", purpose_add, ("GET", "POST")),
    ("/purposes/edit", "practice.purpose_edit", purpose_edit, ("GET", "POST")),
]

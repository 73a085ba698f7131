"""What a staff member may do in the app (:class:`hookspecs.types.Permission`), checked
in one place: :func:`require` (the pages' :func:`samtycke_plugin.web.base.requires`,
the downloads and the domain functions that take a :class:`StaffContext` call it).

A refusal is a :class:`~samtycke_plugin.errors.PermissionDenied` whose message says
what was refused and who may do it; the pages answer it with a 403 page in the
practitioner's language, and links to actions the person may not do are left out
(with the same sentence as the reason, see :func:`allowed`).

The host maps its own roles onto permissions (:func:`role_permissions`): the
integrations and the example platforms take a mapping such as
``{"owner": ["record_consent", "manage_settings", ...], "staff": ["record_consent"]}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hookspecs.types import ALL_PERMISSIONS, Permission, StaffContext
from samtycke_plugin.errors import PermissionDenied
from samtycke_plugin.i18n import N_, t

#: What each permission allows and who to ask, said when it is refused.
REFUSED: dict[Permission, str] = {
    Permission.RECORD_CONSENT: N_(
        "Only staff who may record consent can record consent given outside the app or end "
        "a consent on the practice's side. Ask the practice's owner, or send the client a "
        "request by e-mail."
    ),
    Permission.MANAGE_SETTINGS: N_(
        "Only staff who may manage the consent text and settings can change them. Ask the "
        "practice's owner."
    ),
    Permission.SEND_BATCH: N_(
        "Only staff who may send batch requests can ask many clients at once. Ask the "
        "practice's owner. You can still send one client a request from their profile."
    ),
    Permission.VIEW_HISTORY: N_(
        "Only staff who may view consent history can see a client's history. Ask the "
        "practice's owner."
    ),
    Permission.EXPORT: N_(
        "Only staff who may export consent records can download them. Ask the practice's "
        "owner."
    ),
}

#: A refusal that names the page's own subject (the consent text rather than "settings").
TEXT_REFUSED = N_(
    "Only staff who may manage the consent text can change it. Ask the practice's owner."
)


def require(staff: StaffContext, permission: Permission, message: str | None = None) -> None:
    """Nothing when ``staff`` may do ``permission``; else :class:`PermissionDenied` with
    ``message`` (an untranslated sentence) or the permission's own refusal."""
    if not staff.may(permission):
        raise PermissionDenied(message or REFUSED[permission])


def allowed(staff: StaffContext, locale: str) -> dict[str, str]:
    """For a template: each permission's name → ``""`` when ``staff`` has it, else the
    sentence saying who may do it (so ``{% if not refused.export %}`` shows a link and
    ``{{ refused.export }}`` says why it is missing)."""
    return {
        p.value: "" if staff.may(p) else t(locale, REFUSED[p]) for p in Permission
    }


def role_permissions(
    mapping: Mapping[str, Iterable[Permission | str]], role: str, can_record_consent: bool = True
) -> frozenset[Permission]:
    """The permissions a host's ``role`` has under its ``mapping`` (role → permission
    names; ``"*"`` as a name means every permission).  A role the mapping does not
    name has none (a new role gets nothing until the host says what it may do).
    ``can_record_consent=False`` withholds recording from one person whose role may
    record (a host's per-person flag of the older contract)."""
    names = mapping.get(role)
    if names is None:
        return frozenset()
    if isinstance(names, str):
        raise ValueError(f"the permissions of role {role!r} must be a list of names")
    listed = list(names)
    allowed = ALL_PERMISSIONS if "*" in listed else Permission.parse(listed)
    if not can_record_consent:
        allowed -= {Permission.RECORD_CONSENT}
    return allowed


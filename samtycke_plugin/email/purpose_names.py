"""The names of a practice's purposes as mails and public pages show them."""

from __future__ import annotations

from sqlalchemy.orm import Session

from samtycke_plugin.i18n import lang
from samtycke_plugin.purpose_catalogue import by_key
from samtycke_plugin.purposes import list_purposes


def purpose_names(session: Session, tenant: str, locale: str | None) -> dict[str, str]:
    """``{purpose key: name in the language of locale}`` of the practice's purposes
    (archived ones too), in the order the practice asks for them.  A purpose without a
    name of the practice's own (the default purpose from before names) gets the
    catalogue's name for its key, else the key."""
    language = lang(locale)
    out: dict[str, str] = {}
    for info in list_purposes(session, tenant, include_archived=True):
        entry = by_key(info.key)
        if info.names or entry is None:
            out[info.key] = info.name(language)
        else:
            out[info.key] = entry.name.get(language)
    return out

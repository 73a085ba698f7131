"""Ready-written purposes the activation wizard offers (pure).

Each entry carries what a practice's purpose needs to start from: a key, a name and a
legal-basis note in every language, whether online booking requires it, a suggested
validity, and a consent text shipped as Markdown with the same placeholders as the default
text. The practitioner adds, edits or skips them; nothing here is stored until they do.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from attrs import field, frozen
from attrs.validators import and_, ge, instance_of, le, matches_re, min_len, optional

from samtycke_plugin.purposes import DEFAULT_PURPOSE, KEY_PATTERN
from samtycke_plugin.text import LANGUAGES, fill_template

#: The range the wizard's validity field accepts (days).
MAX_VALIDITY_DAYS = 3650


def _language(language: str) -> str:
    return language if language in LANGUAGES else "en"


@frozen(kw_only=True)
class Localised:
    """One short string per supported language."""

    sv: str = field(validator=and_(instance_of(str), min_len(1)))
    en: str = field(validator=and_(instance_of(str), min_len(1)))

    def get(self, language: str) -> str:
        """The string in ``language`` (anything unsupported → English)."""
        return self.sv if _language(language) == "sv" else self.en


@frozen(kw_only=True)
class CataloguePurpose:
    """A purpose as the wizard offers it, before a practice makes it its own."""

    key: str = field(validator=matches_re(KEY_PATTERN))
    name: Localised
    legal_basis: Localised
    required: bool = False
    validity_days: int | None = field(
        default=None,
        validator=optional(and_(instance_of(int), ge(1), le(MAX_VALIDITY_DAYS))),
    )

    def template(self, language: str) -> str:
        """The shipped consent text in ``language``, placeholders unfilled."""
        return _template(self.key, _language(language))

    def text(self, language: str, *, practice_name: str, practice_contact: str) -> str:
        """The consent text in ``language`` with the practice's name and contact filled in."""
        return fill_template(
            self.template(language), practice_name=practice_name, practice_contact=practice_contact
        )


@cache
def _template(key: str, language: str) -> str:
    texts = files("samtycke_plugin") / "texts"
    if key == DEFAULT_PURPOSE:
        # The default purpose's text is the practice's first text since before purposes
        # existed; it keeps its place so that activation reads the same file.
        return (texts / f"default_{language}.md").read_text("utf-8")
    return (texts / "purposes" / f"{key}_{language}.md").read_text("utf-8")


CARE = CataloguePurpose(
    key=DEFAULT_PURPOSE,
    name=Localised(
        sv="Hälsouppgifter för din behandling", en="Health information for your treatment"
    ),
    legal_basis=Localised(
        sv="Uttryckligt samtycke (GDPR art. 6.1 a och 9.2 a)",
        en="Explicit consent (GDPR art. 6.1 a and 9.2 a)",
    ),
    # Whether online booking requires it is the practitioner's decision in the wizard;
    # the wizard's advice when unsure is not to require it.
    required=False,
    # Lasts until withdrawn: the text says how long the notes are kept.
    validity_days=None,
)

REMINDERS = CataloguePurpose(
    key="reminders",
    name=Localised(sv="Påminnelser om bokningar", en="Booking reminders"),
    legal_basis=Localised(sv="Samtycke (GDPR art. 6.1 a)", en="Consent (GDPR art. 6.1 a)"),
    # Lasts until withdrawn: every reminder reaches the client, who can stop them at any
    # time, and the data used is the contact details the practice keeps anyway.
    validity_days=None,
)

NEWSLETTER = CataloguePurpose(
    key="newsletter",
    name=Localised(sv="Nyhetsbrev", en="Newsletter"),
    legal_basis=Localised(
        sv="Samtycke (GDPR art. 6.1 a; för e-postreklam även 19 § marknadsföringslagen)",
        en="Consent (GDPR art. 6.1 a; for e-mail marketing also section 19 of the Swedish "
        "Marketing Act)",
    ),
    # Marketing consent goes stale as a client drifts away from the practice, so it is
    # refreshed at an interval; two years covers a client who visits once a year or less,
    # and the text tells the client about it.
    validity_days=730,
)

PHOTOS = CataloguePurpose(
    key="photos",
    name=Localised(sv="Före- och efterbilder", en="Before and after photos"),
    legal_basis=Localised(
        sv="Uttryckligt samtycke (GDPR art. 6.1 a och 9.2 a), då bilderna kan visa hälsouppgifter",
        en="Explicit consent (GDPR art. 6.1 a and 9.2 a), as the photos may show health data",
    ),
    # Lasts until withdrawn: the photos document a course of treatment, which a lapse in the
    # middle would cut in two; the text says how long the photos are kept.
    validity_days=None,
)

#: Every entry, the default purpose first, then in the order the wizard offers them.
CATALOGUE: tuple[CataloguePurpose, ...] = (CARE, REMINDERS, NEWSLETTER, PHOTOS)
#: The entries a practitioner may add to the default purpose.
OPTIONAL: tuple[CataloguePurpose, ...] = tuple(p for p in CATALOGUE if p.key != DEFAULT_PURPOSE)


def by_key(key: str) -> CataloguePurpose | None:
    """The catalogue entry with ``key``, or None if the catalogue has none."""
    return next((p for p in CATALOGUE if p.key == key), None)

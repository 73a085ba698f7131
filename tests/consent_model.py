"""The pure model the state machine (tests/reliability/test_model.py) checks the app
against: per practice its purposes, per (client, purpose) the decisive state and its
facts, the pause, and the e-mailed links.  No database, no app code: what the product
promises, written down a second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

GRANTED = ("given", "renewed")
#: Statuses the booking form asks about under every setting that asks at all: consent
#: that no longer holds, and an e-mailed request not answered yet.
ASK_AGAIN = ("outdated", "expired", "requested", "bounced", "undelivered", "deferred")
#: The key of every practice's first purpose.
DEFAULT = "care"


@dataclass
class LinkModel:
    token: str
    client: str
    kind: str  # consent or withdraw
    created: datetime
    expires: datetime
    state: str = "open"  # open, used, revoked, erased
    delivery: str = "queued"  # queued, sent, bounced, cancelled
    #: a consent link: the purposes it asks for at their content versions; a withdrawal
    #: link: the purposes it covers
    majors: dict[str, int] = field(default_factory=dict)
    #: the ledger events its one use recorded (one per purpose answered or withdrawn)
    events: int = 0
    #: its request's id, once seen (the events keep it after erasure removes the link)
    request_id: int | None = None


@dataclass
class PurposeState:
    """One client's decisive state for one purpose."""

    state: str | None = None  # None: no event yet
    major: int | None = None
    expires: datetime | None = None
    delivery: str | None = None
    since: datetime | None = None  # when the decisive state was recorded


@dataclass
class ClientModel:
    email: str
    per: dict[str, PurposeState] = field(default_factory=dict)
    events: int = 0

    def of(self, key: str) -> PurposeState:
        return self.per.setdefault(key, PurposeState())


@dataclass
class PurposeModel:
    key: str
    required: bool
    validity_days: int | None
    major: int = 1
    #: every text version id per major (forms rendered earlier carry older ids)
    texts: dict[int, list[int]] = field(default_factory=dict)

    def text(self, major: int | None = None) -> int:
        return self.texts[self.major if major is None else major][-1]


@dataclass
class PracticeModel:
    tenant: str
    #: "ask new clients" is the only asking setting on (the clients here are returning)
    only_new: bool = False
    #: days a client who declined or withdrew is not asked again (0: no pause)
    pause_days: int = 365
    #: the practice's purposes in the order it asks for them (the default one first)
    purposes: dict[str, PurposeModel] = field(default_factory=dict)
    clients: dict[str, ClientModel] = field(default_factory=dict)
    erased: dict[str, ClientModel] = field(default_factory=dict)
    links: dict[str, LinkModel] = field(default_factory=dict)

    def client(self, ref: str) -> ClientModel:
        return self.clients.get(ref) or self.erased[ref]

    def status(self, ref: str, key: str, now: datetime) -> str:
        s = self.client(ref).of(key)
        if s.state is None:
            return "unknown"
        if s.state in GRANTED:
            if s.major != self.purposes[key].major:
                return "outdated"
            if s.expires is not None and s.expires <= now:
                return "expired"
            return "valid"
        if s.state == "requested" and s.delivery == "bounced":
            return "bounced"
        return s.state

    def paused(self, ref: str, key: str, now: datetime) -> bool:
        """Did the client decline or withdraw the purpose within the practice's pause?"""
        s = self.client(ref).of(key)
        return (s.state in ("refused", "withdrawn") and self.pause_days > 0
                and s.since is not None and now < s.since + timedelta(days=self.pause_days))

    def asks(self, ref: str, key: str, now: datetime) -> bool:
        """Does the booking form show a returning client the purpose's box?  A required
        purpose is asked of everyone without valid consent to it, also in the pause (the
        booking cannot go ahead without it)."""
        status = self.status(ref, key, now)
        if status == "valid":
            return False
        if self.purposes[key].required:
            return True
        return not self.paused(ref, key, now) and (not self.only_new or status in ASK_AGAIN)

    def outcome(self, ref: str, key: str, now: datetime, *, ticked: bool,
                shown_major: int | None) -> str | None:
        """What a booking does for one purpose: ``given``, ``refused``, a veto
        (``required``, ``text_changed``) or nothing (``None``)."""
        major = self.purposes[key].major
        if not self.asks(ref, key, now):
            # a box the client ticked on a form that showed it before the pause began:
            # their own act
            if self.paused(ref, key, now) and ticked and shown_major == major:
                return "given"
            return None
        if ticked:
            return "given" if shown_major == major else "text_changed"
        return "required" if self.purposes[key].required else "refused"

    def batch_reason(self, ref: str, key: str, now: datetime) -> str | None:
        """Why a batch request for the purpose leaves the client out (``None``: mailed).
        Every client here has a usable address and nothing waits in the outbox."""
        if self.status(ref, key, now) == "valid":
            return "valid"
        if self.paused(ref, key, now):
            return str(self.client(ref).of(key).state)
        major = self.purposes[key].major
        if any(link.client == ref and link.kind == "consent" and link.state == "open"
               and link.expires > now and link.majors.get(key) == major
               for link in self.links.values()):
            return "pending"
        return None

    def expiry(self, key: str, given_at: datetime) -> datetime | None:
        days = self.purposes[key].validity_days
        return given_at + timedelta(days=days) if days else None

    def apply(self, ref: str, key: str, state: str, major: int | None,
              expires: datetime | None, at: datetime) -> None:
        """One new ledger event: a request keeps consent still given for the same or a
        newer content version; every other event replaces the state."""
        c = self.client(ref)
        c.events += 1
        s = c.of(key)
        if state == "requested" and s.state in GRANTED and s.major is not None \
                and major is not None and s.major >= major:
            return
        c.per[key] = PurposeState(state=state, major=major, expires=expires, since=at)

    def grant(self, ref: str, key: str, given_at: datetime, at: datetime) -> str:
        """Consent given (``renewed`` when it was given before, for any version)."""
        state = "renewed" if self.client(ref).of(key).state in GRANTED else "given"
        self.apply(ref, key, state, self.purposes[key].major, self.expiry(key, given_at), at)
        return state

    def standing(self, ref: str) -> dict[str, int]:
        """The purposes whose consent stands (given or renewed, perhaps outdated or
        lapsed) with the content version given: what a withdrawal link can end."""
        return {k: int(s.major or 0) for k, s in self.client(ref).per.items()
                if s.state in GRANTED}

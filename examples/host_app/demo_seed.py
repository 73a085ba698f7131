"""Demo data: three practices with staff, services, clients, bookings and a real
consent ledger.

Consent states are created the way they arise in use: online bookings go
through the same two-phase hooks as the booking page (check, then record in the
booking transaction).  States that a practitioner creates on the app's own pages
(manual record, withdrawal, a text change, e-mailed requests) are made with the
app's domain functions here, because those pages are the app's, not the
platform's.  This demo fixture is, besides ``apps_glue``, the only module that
imports ``samtycke_plugin``; the platform's booking code never does.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from examples.host_app.models import Booking, Client, Practice, Service, Staff
from examples.host_app.runtime import Platform
from examples.host_app.scheduling import ZONE
from hookspecs.types import ALL_PERMISSIONS, StaffContext, StaffRef
from samtycke_plugin import consent, practice_texts, practices, purposes
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.purpose_catalogue import REMINDERS

PASSWORDS = {"lugn-och-ro": "lugn-demo", "fysio-norr": "norr-demo", "kroppsterapi-syd": "syd-demo"}

PRACTICES: list[dict[str, Any]] = [
    {
        "slug": "lugn-och-ro", "name": "Lugn & Ro Massage", "city": "Stockholm",
        "email": "info@lugnochro.example", "phone": "08-123 45 67",
        "staff": [("Anna Lind", "anna@lugnochro.example", "owner", True),
                  ("Erik Berg", "erik@lugnochro.example", "staff", False)],
        "services": [("Klassisk massage", "Classic massage", 60, 750),
                     ("Kort massage", "Short massage", 30, 450),
                     ("Aromamassage", "Aroma massage", 60, 850)],
        "samtycke": {"require_consent_for_online_booking": False, "ask_new_clients": True,
                     "ask_clients_without_consent": True},
        "reminders": True,  # the catalogue's "reminders" purpose, added in the wizard
        "clients": 30,
    },
    {
        "slug": "fysio-norr", "name": "Fysio Norr", "city": "Umeå",
        "email": "kontakt@fysionorr.example", "phone": "090-12 34 56",
        "staff": [("Sara Nilsson", "sara@fysionorr.example", "owner", True)],
        "services": [("Nybesök fysioterapi", "First physiotherapy visit", 60, 900),
                     ("Återbesök", "Follow-up visit", 30, 550)],
        "samtycke": {"require_consent_for_online_booking": True, "ask_new_clients": True,
                     "ask_clients_without_consent": True},
        "clients": 30,
    },
    {
        "slug": "kroppsterapi-syd", "name": "Kroppsterapi Syd", "city": "Malmö",
        "email": "hej@kroppsterapisyd.example", "phone": "040-98 76 54",
        "staff": [("Omar Haddad", "omar@kroppsterapisyd.example", "owner", True)],
        "services": [("Samtal och kroppsterapi", "Talk and body therapy", 60, 980)],
        "samtycke": None,  # not activated: the demo's activation wizard starts here
        "clients": 12,
    },
]

FIRST = ["Alva", "Björn", "Cecilia", "David", "Elin", "Fredrik", "Greta", "Hassan", "Ida", "Johan",
         "Karin", "Lars", "Maja", "Nils", "Olivia", "Per", "Rut", "Sofia", "Tobias", "Ulla",
         "Vera", "William", "Yasmin", "Zeynep", "Amir", "Britt", "Chloe", "Dan", "Emma", "Filip",
         "Hanna", "Isak"]
LAST = ["Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson",
        "Persson", "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Jansson", "Hansson",
        "Bengtsson", "Lindberg", "Jakobsson", "Magnusson", "Lindström", "Axelsson", "Berg",
        "Holm", "Ali", "Yilmaz", "Ek", "Sandberg", "Forsberg", "Wallin", "Björk", "Engström",
        "Lund", "Nyberg"]
_TEXT_ID = re.compile(r'name="samtycke_text" value="(\d+)"')


class _Clock:
    def __init__(self, start: datetime) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at

    def tick(self, **delta: float) -> None:
        self.at += timedelta(**delta)


def logins() -> list[tuple[str, str, str]]:
    return [(p["name"], email, PASSWORDS[p["slug"]]) for p in PRACTICES
            for _n, email, _r, _c in p["staff"]]


def seed(platform: Platform, *, rng: random.Random | None = None) -> bool:
    """Fill an empty database with demo data; returns False if it already has practices."""
    session = platform.db()
    if session.scalar(select(func.count()).select_from(Practice)):
        session.rollback()
        return False
    rng = rng or random.Random(4)
    real_clock = platform.host.clock
    clock = _Clock(datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=120))
    platform.host.clock = clock
    try:
        for spec in PRACTICES:
            _seed_practice(platform, spec, rng, clock)
            clock.at = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=120)
    finally:
        platform.host.clock = real_clock
        platform.sessions.remove()
    if platform.settings["DEV_MAILBOX"]:
        platform.apps.send_outbox()  # receipts and requests land in the development mailbox
        platform.sessions.remove()
    return True


def _seed_practice(platform: Platform, spec: dict[str, Any], rng: random.Random,
                   clock: _Clock) -> None:
    session, apps, host = platform.db(), platform.apps, platform.host
    practice = Practice(slug=spec["slug"], name=spec["name"], city=spec["city"],
                        email=spec["email"], phone=spec["phone"], locale="sv",
                        created_at=clock())
    session.add(practice)
    session.flush()
    staff = []
    for name, email, role, can_record in spec["staff"]:
        member = Staff(practice_id=practice.id, name=name, email=email, role=role,
                       can_record_consent=can_record,
                       password_hash=generate_password_hash(PASSWORDS[spec["slug"]]))
        session.add(member)
        staff.append(member)
    services = []
    for name_sv, name_en, minutes, price in spec["services"]:
        services.append(Service(practice_id=practice.id, name_sv=name_sv, name_en=name_en,
                                minutes=minutes, price_sek=price))
    session.add_all(services)
    session.flush()
    owner = StaffContext(ref=StaffRef(str(staff[0].id)), name=staff[0].name,
                         permissions=ALL_PERMISSIONS)
    if spec["samtycke"] is not None:
        # What the owner does in the app menu and the app's setup wizard.
        apps.set_active(practice.id, "samtycke", True, staff[0].id, spec["samtycke"])
        if spec.get("reminders"):
            _add_reminders_purpose(session, practice, owner, clock)
    session.commit()

    slots = _slot_maker(practice.id, clock)
    people = _people(rng, spec["clients"], practice.slug)
    tenant = str(practice.id)
    for index, (name, email, locale) in enumerate(people):
        clock.tick(hours=rng.randint(20, 70))
        kind = _plan(index, spec)
        if kind in ("given", "refused", "withdrawn", "given_late"):
            client = _book_online(platform, practice, services[index % len(services)], slots(),
                                  name, email, locale, tick=kind != "refused")
            if kind == "withdrawn":
                clock.tick(days=rng.randint(2, 10))
                consent.withdraw(host, tenant, str(client.id), actor=f"staff:{owner.ref}",
                                 channel="manual", method="email", by_client=True,
                                 note="Bad om att ta bort samtycket per e-post.")
                session.commit()
        else:
            client = Client(practice_id=practice.id, name=name, email=email, locale=locale,
                            phone=f"07{rng.randint(0, 9)}-{rng.randint(100, 999)} "
                                  f"{rng.randint(10, 99)} {rng.randint(10, 99)}",
                            created_by="staff", created_at=clock())
            session.add(client)
            session.flush()
            apps.client_created(practice.id, client.id, "staff")
            session.add(Booking(practice_id=practice.id, client_id=client.id,
                                service_id=services[0].id, starts_at=(at := slots()),
                                ends_at=at + timedelta(minutes=services[0].minutes),
                                channel="staff", created_at=clock()))
            session.commit()
            if kind == "manual":
                consent.record_manual(
                    host, tenant, str(client.id), owner,
                    method=rng.choice(["paper", "verbal", "other_system"]),
                    given_at=clock() - timedelta(days=rng.randint(0, 20)),
                    note="Samtycke på papper vid första besöket, inskannat i journalen.",
                )
                session.commit()
            elif kind == "requested":
                _request_by_email(platform, tenant, str(client.id), owner)
        if spec["samtycke"] is not None and index == 9:
            clock.tick(days=2)  # a content change: consents so far become outdated
            _content_change(platform, tenant, owner)
    # A few upcoming bookings for the calendar (made by staff).
    clients = list(session.scalars(select(Client).where(Client.practice_id == practice.id)))
    clock.at = datetime.now(UTC).replace(second=0, microsecond=0)
    for client in rng.sample(clients, min(6, len(clients))):
        start = _future_slot(session, practice.id, rng)
        session.add(Booking(practice_id=practice.id, client_id=client.id,
                            service_id=services[0].id, starts_at=start,
                            ends_at=start + timedelta(minutes=services[0].minutes),
                            channel="staff", created_at=clock()))
    session.commit()
    if spec.get("reminders"):
        _reminder_consents(platform, practice, owner, clock)


def _add_reminders_purpose(session: Any, practice: Practice, owner: StaffContext,
                           clock: _Clock) -> None:
    """The wizard's "add" of the catalogue's reminders purpose, with its shipped texts."""
    contact = ", ".join(x for x in (practice.email, practice.phone) if x)
    purposes.add(
        session, str(practice.id), key=REMINDERS.key,
        names={"sv": REMINDERS.name.sv, "en": REMINDERS.name.en},
        legal_basis={"sv": REMINDERS.legal_basis.sv, "en": REMINDERS.legal_basis.en},
        required=REMINDERS.required, validity_days=REMINDERS.validity_days,
        bodies={language: REMINDERS.text(language, practice_name=practice.name,
                                         practice_contact=contact) for language in ("sv", "en")},
        actor=f"staff:{owner.ref}", now=clock(),
    )


def _reminder_consents(platform: Platform, practice: Practice, owner: StaffContext,
                       clock: _Clock) -> None:
    """Two of three of the first 18 clients agreed to reminders on paper, two of them
    withdrew since; three of them have a booking tomorrow (when the practice is open)."""
    session, host, tenant = platform.db(), platform.host, str(practice.id)
    clients = list(session.scalars(select(Client).where(Client.practice_id == practice.id)
                                   .order_by(Client.id)))[:18]
    agreed = [c for i, c in enumerate(clients) if i % 3 != 2]
    for client in agreed:
        consent.record_manual(host, tenant, str(client.id), owner, method="paper",
                              given_at=clock() - timedelta(days=30), purpose=REMINDERS.key,
                              note="Kryssade i rutan för påminnelser på inskrivningsblanketten.")
        session.commit()
    for client in agreed[-2:]:
        consent.withdraw(host, tenant, str(client.id), actor=f"staff:{owner.ref}",
                         channel="manual", method="email", by_client=True,
                         purpose=REMINDERS.key, note="Vill inte ha påminnelser.")
        session.commit()
    day = clock().astimezone(ZONE).date() + timedelta(days=1)
    if day.weekday() >= 5:
        return
    taken = set(session.scalars(select(Booking.starts_at).where(
        Booking.practice_id == practice.id)))
    service = session.scalars(select(Service).where(Service.practice_id == practice.id)
                              .order_by(Service.id)).first()
    hours = (datetime.combine(day, time(h), tzinfo=ZONE).astimezone(UTC) for h in range(9, 17))
    free = [start for start in hours if start not in taken]
    for client, start in zip((agreed[0], agreed[-1], clients[2]), free, strict=False):
        assert service is not None
        session.add(Booking(practice_id=practice.id, client_id=client.id, service_id=service.id,
                            starts_at=start, ends_at=start + timedelta(minutes=service.minutes),
                            channel="staff", created_at=clock()))
    session.commit()


def _plan(index: int, spec: dict[str, Any]) -> str:
    if spec["samtycke"] is None:
        return "never"
    required = spec["samtycke"]["require_consent_for_online_booking"]
    plan = (["given"] * 8 + ["withdrawn"] * 2 + ["refused" if not required else "given"] * 3
            + ["manual"] * 4 + ["requested"] * 3 + ["given_late"] * 5 + ["never"] * 5)
    return plan[index] if index < len(plan) else "never"


def _people(rng: random.Random, count: int, slug: str) -> list[tuple[str, str, str]]:
    first, last = FIRST[:], LAST[:]
    rng.shuffle(first)
    rng.shuffle(last)
    out = []
    for i in range(count):
        name = f"{first[i % len(first)]} {last[(i * 7) % len(last)]}"
        local = name.lower().replace(" ", ".")
        for a, b in (("å", "a"), ("ä", "a"), ("ö", "o"), ("é", "e"), ("ü", "u")):
            local = local.replace(a, b)
        out.append((name, f"{local}@{slug}.example", "en" if i % 9 == 4 else "sv"))
    return out


def _slot_maker(practice_id: int, clock: _Clock) -> Callable[[], datetime]:
    used: set[datetime] = set()

    def next_slot() -> datetime:
        day = clock().astimezone(ZONE).date()
        while True:
            day += timedelta(days=1)
            if day.weekday() >= 5:
                continue
            for hour in range(9, 17):
                start = datetime.combine(day, time(hour), tzinfo=ZONE).astimezone(UTC)
                if start not in used:
                    used.add(start)
                    return start

    return next_slot


def _future_slot(session: Any, practice_id: int, rng: random.Random) -> datetime:
    taken = set(session.scalars(select(Booking.starts_at).where(
        Booking.practice_id == practice_id)))
    today = datetime.now(ZONE).date()
    while True:
        day = today + timedelta(days=rng.randint(1, 12))
        if day.weekday() >= 5:
            continue
        start = datetime.combine(day, time(rng.randint(9, 16)), tzinfo=ZONE).astimezone(UTC)
        if start not in taken:
            return start


def _book_online(platform: Platform, practice: Practice, service: Service, slot: datetime,
                 name: str, email: str, locale: str, *, tick: bool) -> Client:
    """An online booking exactly as the booking page makes it: check, then record."""
    session, apps, host = platform.db(), platform.apps, platform.host
    fields = {"service": str(service.id), "slot": slot.strftime("%Y-%m-%dT%H:%MZ"),
              "name": name, "email": email}
    for _key, html, _names in apps.form_fragments(practice.id, None, locale):
        found = _TEXT_ID.search(str(html))
        if found:
            fields["samtycke_text"] = found.group(1)
            if tick:
                fields["samtycke_consent"] = "yes"
    submission = apps.submission(practice.id, None, is_new_client=True, channel="online",
                                 fields=fields, locale=locale, ip_address="198.51.100.23",
                                 user_agent="Mozilla/5.0 (demo data)")
    vetoes = apps.check_booking(submission)
    if vetoes:
        raise RuntimeError("demo booking was vetoed: " + "; ".join(v.message for v in vetoes))
    client = Client(practice_id=practice.id, name=name, email=email, locale=locale,
                    created_by="online", created_at=host.now())
    session.add(client)
    session.flush()
    apps.client_created(practice.id, client.id, "online")
    booking = Booking(practice_id=practice.id, client_id=client.id, service_id=service.id,
                      starts_at=slot, ends_at=slot + timedelta(minutes=service.minutes),
                      channel="online", created_at=host.now())
    session.add(booking)
    session.flush()
    apps.booking_made(submission, booking.id, client.id)
    session.commit()
    return client


def _content_change(platform: Platform, tenant: str, owner: StaffContext) -> None:
    host = platform.host
    practice = practices.require_practice(host.session(), tenant)
    bodies = {}
    for language in ("sv", "en"):
        text = practice_texts.current_text(host.session(), practice, language)
        extra = ("\n\nVi sparar också dina bokningsuppgifter i vårt journalsystem."
                 if language == "sv" else
                 "\n\nWe also keep your booking details in our records system.")
        bodies[language] = text.body + extra
    practice_texts.publish_text(host, tenant, bodies=bodies, kind="content",
                         reason="Journalsystemet nämns nu i texten.",
                         actor=f"staff:{owner.ref}",
                         expected_major=practices.purpose_major(host.session(), practice))
    host.session().commit()


def _request_by_email(platform: Platform, tenant: str, client: str, owner: StaffContext) -> None:
    """The practitioner's "send a request by e-mail" on the app's obtain-consent page."""
    mail_requests.send_request(platform.host, tenant, client, actor=f"staff:{owner.ref}")
    platform.host.session().commit()

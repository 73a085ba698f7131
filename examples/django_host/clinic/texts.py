"""The clinic's own words in Swedish and English (``{{ t.key }}`` in templates)."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils import translation

TEXTS: dict[str, dict[str, str]] = {
    "sv": {
        "brand": "Kliniken", "clients": "Klienter", "apps": "Appar", "book": "Boka tid",
        "sign_in": "Logga in", "sign_out": "Logga ut", "switch": "English",
        "username": "Användarnamn", "password": "Lösenord",
        "bad_login": "Fel användarnamn eller lösenord. Kontrollera dem och försök igen.",
        "book_at": "Boka tid hos", "name": "Namn", "email": "E-post", "time": "Tid",
        "send": "Boka", "booked": "Tack! Din tid är bokad.", "all": "Alla klienter",
        "filter": "Visa", "search": "Filtrera", "no_filter": "Det filtret finns inte längre.",
        "bookings": "Bokningar", "none": "Inga klienter.", "page": "Sida",
        "prev": "Föregående", "next": "Nästa", "activate": "Aktivera",
        "deactivate": "Stäng av", "active": "Aktiv", "inactive": "Inte aktiv",
        "open": "Öppna", "practices": "Mottagningar", "back": "Tillbaka",
        "need_name": "Skriv ditt namn.", "need_email": "Skriv en e-postadress som namn@exempel.se.",
        "need_time": "Välj en av de lediga tiderna.",
        "taken": "Någon hann boka den tiden. Välj en annan tid.",
        "failed": "Vi kunde inte spara bokningen och ingenting bokades. Försök igen om en stund.",
        "owner_only": "Bara mottagningens ägare kan slå på och av appar.",
        "demo": "Demoinloggningar",
    },
    "en": {
        "brand": "Kliniken", "clients": "Clients", "apps": "Apps", "book": "Book a time",
        "sign_in": "Sign in", "sign_out": "Sign out", "switch": "Svenska",
        "username": "User name", "password": "Password",
        "bad_login": "Wrong user name or password. Check them and try again.",
        "book_at": "Book a time at", "name": "Name", "email": "E-mail", "time": "Time",
        "send": "Book", "booked": "Thank you! Your time is booked.", "all": "All clients",
        "filter": "Show", "search": "Filter", "no_filter": "That filter no longer exists.",
        "bookings": "Bookings", "none": "No clients.", "page": "Page",
        "prev": "Previous", "next": "Next", "activate": "Activate",
        "deactivate": "Switch off", "active": "Active", "inactive": "Not active",
        "open": "Open", "practices": "Practices", "back": "Back",
        "need_name": "Enter your name.",
        "need_email": "Enter an e-mail address like name@example.com.",
        "need_time": "Choose one of the free times.",
        "taken": "Someone just booked that time. Choose another time.",
        "failed": "We could not save your booking and nothing was booked. Try again in a moment.",
        "owner_only": "Only the practice owner can switch apps on and off.",
        "demo": "Demo logins",
    },
}


def language() -> str:
    return "en" if (translation.get_language() or "sv").startswith("en") else "sv"


def text(key: str) -> str:
    return TEXTS[language()][key]


def texts(request: HttpRequest) -> dict[str, object]:
    """Context processor: ``t`` (the words in the page language) and ``lang``."""
    return {"t": TEXTS[language()], "lang": language()}

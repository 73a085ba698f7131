"""Bad input (checklist B3, B7, B8, and malformed ids in every hook argument): odd
Unicode, NUL, lone surrogates and huge strings at the service and hook level; every
hook called with malformed ids; oversized bodies on every page; DST boundaries.
Either a clear error naming the field and nothing written, or storage and an identical
round trip — never a driver error, a 500 or a different result on the two databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from hostkit import START, TestHost, staff, submission
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import FIGURES, assert_invariants, book, dump, events, form_text_id
from sqlalchemy import literal_column
from werkzeug.test import Client

from hookspecs.types import (
    BookingFormContext,
    BookingSubmission,
    ClientCreated,
    ClientRef,
    ConsentAnswer,
    FilterClause,
    StaffContext,
    StaffRef,
    TenantRef,
)
from samtycke_plugin import booking as online_booking
from samtycke_plugin import booking_gate, common, consent, panels, practice_texts
from samtycke_plugin.errors import InputError, SamtyckeError
from samtycke_plugin.web import make_wsgi_app
from samtycke_plugin.web.base import MAX_BODY

STOCKHOLM = ZoneInfo("Europe/Stockholm")

#: Strings people and programs really send: direction overrides, zero-width and
#: combining characters, emoji (incl. ZWJ sequences), NUL and other controls.
ODD = [
    "Anna \u202eabc.exe\u202c Svensson",
    "Zero\u200bwidth\u200d\ufeffjoiners",
    "Z\u0351\u0308a\u0300\u0301l\u0327g\u0489o\u0310",
    "Emoji 👩🏽‍⚕️ 🇸🇪 🧘",
    "NUL\x00inside and \x07bell and \x1b[31mANSI",
    "RTL עברית العربية mixed",
    "Line\r\nbreaks\rand\ttabs",
    "' OR 1=1 --; DROP TABLE samtycke_consent_event; <script>alert(1)</script>",
]


def _activated(host: TestHost, **settings_: object) -> tuple[TenantRef, Any]:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, **settings_)
    return tenant, hooks


def _expected_note(raw: str) -> str | None:
    """What the app promises to store for a note it accepts: CR removed, surrounding
    space stripped; everything else as given (other C0 controls are refused)."""
    kept = "".join(ch for ch in raw if ch in "\n\t" or ord(ch) >= 32).strip()
    return kept or None


def _refused_note(raw: str) -> bool:
    """NUL and other C0 controls but tab and line breaks: refused, never removed."""
    return any(ord(ch) < 32 and ch not in "\t\n\r" for ch in raw)


# -- B3: odd Unicode, NUL, surrogates, huge strings --------------------------------------


@pytest.mark.parametrize("raw", ODD, ids=range(len(ODD)))
def test_odd_unicode_in_a_note_round_trips_identically(host: TestHost, raw: str) -> None:
    tenant, _ = _activated(host)
    client = host.new_client(tenant, name=raw)
    if _refused_note(raw):
        with pytest.raises(InputError) as err:
            consent.record_manual(host, tenant, client, staff(), method="paper",
                                  given_at=host.now(), note=raw)
        host.session().rollback()
        assert err.value.field == "note"
        assert consent.history(host, tenant, client) == []
        return
    consent.record_manual(host, tenant, client, staff(), method="paper",
                          given_at=host.now(), note=raw)
    host.session().commit()
    [entry] = consent.history(host, tenant, client)
    assert entry.note == _expected_note(raw)
    host.session().rollback()
    FIGURES["odd-Unicode strings tried"] += 1
    assert_invariants(host.engine, [tenant])


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_any_note_is_stored_as_promised_or_refused_naming_the_field(
    host: TestHost, raw: str
) -> None:
    """Hypothesis: any Unicode text as a note, on both databases."""
    tenant = _tenant_cache(host)
    client = host.new_client(tenant)
    FIGURES["generated notes tried"] += 1
    try:
        consent.record_manual(host, tenant, client, staff(), method="verbal",
                              given_at=host.now(), note=raw)
        host.session().commit()
    except InputError as exc:
        host.session().rollback()
        assert exc.field == "note"
        return
    [entry] = consent.history(host, tenant, client)
    host.session().rollback()
    assert entry.note == _expected_note(raw)


def _tenant_cache(host: TestHost) -> TenantRef:
    """One practice per host across Hypothesis examples (the fixture is reused)."""
    tenant: TenantRef | None = getattr(host, "_reliability_tenant", None)
    if tenant is None:
        tenant = _activated(host, require_consent_for_online_booking=False)[0]
        host._reliability_tenant = tenant  # type: ignore[attr-defined]
    return tenant


@pytest.mark.parametrize("field", ["note", "reason", "body", "user_agent"])
def test_lone_surrogates_are_refused_or_replaced_never_a_driver_error(
    host: TestHost, field: str
) -> None:
    """A host's JSON API can hand over lone surrogates (``json.loads('"\\ud800"')``),
    which no database can store: the app names the field (or, for evidence it only
    records, replaces the character) instead of failing inside the driver."""
    tenant, hooks = _activated(host, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    bad = "Anna \ud800 Svensson"
    before = dump(host.engine, [tenant])
    if field == "user_agent":
        shown = form_text_id(host, hooks, tenant, client)
        sub = submission(tenant, client, ticked=True, text_id=shown)
        sub = BookingSubmission(**{**_fields(sub), "user_agent": "Mozilla \ud800\x00/5.0"})
        assert hooks.submit_check(sub) == []
        hooks.submitted(sub, "b-1", ClientRef(client))  # type: ignore[arg-type]
        host.session().commit()
        [entry] = consent.history(host, tenant, client)
        assert entry.user_agent == "Mozilla \ufffd/5.0"
        host.session().rollback()
        return
    with pytest.raises(InputError) as err:
        if field == "note":
            consent.record_manual(host, tenant, client, staff(), method="paper",
                                  given_at=host.now(), note=bad)
        elif field == "reason":
            practice_texts.publish_text(host, tenant, bodies={"sv": "En ny text om dina uppgifter.\n"},
                                 kind="correction", reason=bad, actor="staff:s1",
                                 expected_major=1)
        else:
            practice_texts.publish_text(host, tenant, bodies={"sv": bad * 10}, kind="correction",
                                 reason=None, actor="staff:s1", expected_major=1)
    host.session().rollback()
    assert err.value.field == {"note": "note", "reason": "reason", "body": "text_sv"}[field]
    assert dump(host.engine, [tenant]) == before


def _fields(sub: BookingSubmission) -> dict[str, Any]:
    return {a: getattr(sub, a) for a in (
        "tenant", "client", "is_new_client", "channel", "fields", "locale", "ip_address",
        "user_agent")}


def test_huge_strings_are_refused_naming_the_field(host: TestHost) -> None:
    tenant, _ = _activated(host)
    client = host.new_client(tenant)
    mb = "å" * 1_000_000
    before = dump(host.engine, [tenant])
    cases: list[tuple[str, Any]] = [
        ("note", lambda: consent.record_manual(host, tenant, client, staff(), method="paper",
                                               given_at=host.now(), note=mb)),
        ("text_sv", lambda: practice_texts.publish_text(host, tenant, bodies={"sv": mb},
                                                 kind="content", reason=None,
                                                 actor="staff:s1", expected_major=1)),
        ("reason", lambda: practice_texts.publish_text(
            host, tenant, bodies={"sv": "En ny text om hur vi sparar uppgifter.\n"},
            kind="correction", reason=mb, actor="staff:s1", expected_major=1)),
        ("client", lambda: consent.record_manual(host, tenant, mb, staff(), method="paper",
                                                 given_at=host.now(), note=None)),
        ("staff", lambda: consent.record_manual(
            host, tenant, client, StaffContext(ref=StaffRef("s" * 500), name="X",
                                               can_record_consent=True),
            method="paper", given_at=host.now(), note=None)),
    ]
    for field, call in cases:
        with pytest.raises(InputError) as err:
            call()
        host.session().rollback()
        assert err.value.field == field, (field, err.value)
        assert "too long" in str(err.value) or "must be" in str(err.value)
        FIGURES["huge strings tried"] += 1
    assert dump(host.engine, [tenant]) == before


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text_field=st.one_of(st.none(), st.text(max_size=30),
                            st.sampled_from(["²", "١٢", "１", "-1", "0", "9" * 40, "1e3", " 7"])),
       consent_field=st.one_of(st.none(), st.text(max_size=10),
                               st.sampled_from(["yes", "on", "YES", "1", "true", "\x00yes"])))
def test_any_posted_consent_fields_give_a_decision_never_an_error(
    host: TestHost, text_field: str | None, consent_field: str | None
) -> None:
    """Whatever the booking form posts back in the app's two fields, the check returns
    one of its own vetoes or none (never the fail-closed "could not check" veto, which
    would tell the client to retry in vain), and recording agrees with the check."""
    tenant = _tenant_cache(host)
    client = host.new_client(tenant)
    fields = {"service": "massage"}
    if text_field is not None:
        fields[online_booking.FIELD_TEXT] = text_field
    if consent_field is not None:
        fields[online_booking.FIELD_CONSENT] = consent_field
    sub = BookingSubmission(tenant=tenant, client=ClientRef(client), is_new_client=False,
                            channel="online", fields=fields, locale="sv", ip_address=None,
                            user_agent=None)
    hooks = host.hooks()
    vetoes = hooks.submit_check(sub)
    FIGURES["generated booking-form posts tried"] += 1
    assert {v.key for v in vetoes} <= {"samtycke.consent_required", "samtycke.text_changed"}
    if vetoes:
        host.session().rollback()
        return
    hooks.submitted(sub, "b-1", ClientRef(client))  # type: ignore[arg-type]
    host.session().commit()
    evs = events(host.engine, tenant)
    mine = [e for e in evs if e.client_ref == client]
    assert len(mine) == 1 and mine[0].state in ("given", "refused")


@pytest.mark.parametrize("value", ["c1\n", "c1\r", "\nc1", "c1 ", "c1\x00", "ｃ１", "", "a" * 65])
def test_references_must_match_whole(value: str) -> None:
    """Regression: the reference pattern ended in ``$``, which also matches before a
    final newline, so ``"c1\n"`` was accepted as a client reference."""
    with pytest.raises(InputError) as err:
        common.check_ref("client", value)
    assert err.value.field == "client"


@pytest.mark.parametrize("raw", ["²", "³", "١٢", "１２", "-1", "+1", " 1", "1" * 19, 12, None])
def test_posted_text_ids_are_plain_ascii_numbers(raw: object) -> None:
    """Regression: ``"²".isdigit()`` is true but ``int("²")`` fails, which turned a
    forged form field into an exception (a "could not check, try again" veto)."""
    assert booking_gate.shown_text_id(raw) is None
    assert booking_gate.posted_text_ids({online_booking.FIELD_TEXT: raw}) == {}


@pytest.mark.parametrize("raw", ["²", "١٢", "１", "-1", "9" * 30, "", "\x00", "1 OR 1=1"])
def test_a_forged_text_field_on_the_consent_page_is_a_400_not_a_500(
    host: TestHost, raw: str
) -> None:
    """Regression (public consent page): ``int("²")`` raised inside the handler."""
    from smtp_support import Browser, form_fields, path_of

    from samtycke_plugin.email import requests as mail_requests
    from samtycke_plugin.email import tokens

    tenant, _ = _activated(host)
    client = host.new_client(tenant)
    req = mail_requests.send_request(host, tenant, client, actor="staff:s1")
    host.session().commit()
    browser = Browser(host)
    path = path_of("c", tokens.token_for(tokens.link_key(host), req))
    fields = form_fields(browser.get(path).text)
    before = dump(host.engine, [tenant])
    resp = browser.post(path, data={**fields, "text": raw, "decision": "accept"})
    assert resp.status_code == 400, resp.status_code
    assert dump(host.engine, [tenant]) == before
    # and the link still works for the real answer
    assert browser.post(path, data={**fields, "decision": "accept"}).status_code == 200


# -- malformed ids in every hook argument ----------------------------------------------------

BAD_IDS: list[Any] = [
    123, None, "", " ", "a" * 65, "client\n", "c1\x00", "../../etc/passwd",
    "x'; DROP TABLE samtycke_consent_event;--", "\u202ec1", "ｃ１", ["c1"], 1.5,
]


def _hook_args(host: TestHost, tenant: str, client: str) -> dict[str, Any]:
    """Good values for every hook argument name (a new hook argument fails the test
    until a value is added here, so new hooks are covered)."""
    return {
        "host": host,
        "tenant": TenantRef(tenant),
        "client": ClientRef(client),
        "clients": [ClientRef(client)],
        "purpose": "care",
        "staff": staff(),
        "locale": "sv",
        "app": "samtycke",
        "settings": {},
        "booking": "b-1",
        "filter_key": panels.FILTER_NOT_VALID,
        "client_ref_column": literal_column("'c'"),
        "submission": submission(tenant, client, ticked=True, text_id=1),
        "form": BookingFormContext(tenant=TenantRef(tenant), client=ClientRef(client),
                                   locale="sv"),
        "created": ClientCreated(tenant=TenantRef(tenant), client=ClientRef(client),
                                 created_by="staff", at=START),
    }


def _with_bad(
    args: dict[str, Any], good: dict[str, Any], name: str, bad: Any
) -> Iterator[dict[str, Any]]:
    """The arguments with one id replaced by ``bad`` (also inside value objects)."""
    if name in ("tenant", "client", "booking", "filter_key", "locale", "app", "purpose"):
        yield {**args, name: bad}
    elif name == "clients":
        yield {**args, "clients": [bad]}
        yield {**args, "clients": bad}
    elif name == "submission":
        sub = args["submission"]
        for attr in ("tenant", "client", "locale", "ip_address", "user_agent"):
            yield {**args, "submission": BookingSubmission(**{**_fields(sub), attr: bad})}
        yield {**args, "submission": BookingSubmission(**{**_fields(sub), "fields": {
            online_booking.FIELD_TEXT: bad, online_booking.FIELD_CONSENT: bad}})}
    elif name == "form":
        yield {**args, "form": BookingFormContext(tenant=bad, client=good["client"], locale="sv")}
        yield {**args, "form": BookingFormContext(tenant=good["tenant"], client=bad, locale="sv")}
        yield {**args, "form": BookingFormContext(tenant=good["tenant"], client=good["client"],
                                                  locale=bad)}
    elif name == "created":
        yield {**args, "created": ClientCreated(tenant=bad, client=good["client"],
                                                created_by="staff", at=START)}
        yield {**args, "created": ClientCreated(tenant=good["tenant"], client=bad,
                                                created_by="staff", at=START)}
    elif name == "staff":
        yield {**args, "staff": StaffContext(ref=bad, name="X", can_record_consent=True)}
    elif name == "settings":
        yield {**args, "settings": {"validity_days": bad}}


def test_every_hook_with_malformed_ids_gives_a_clear_error_or_nothing(host: TestHost) -> None:
    """Every hook samtycke implements (enumerated from the plugin manager), each id
    argument replaced by malformed values: the result is empty/None or a
    SamtyckeError/ValueError naming what was wrong — never a driver, type or attribute
    error — and nothing is written."""
    tenant, hooks = _activated(host, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=host.now(),
                          note=None)
    host.session().commit()
    pm = hooks.pm
    good = _hook_args(host, tenant, client)
    before = dump(host.engine, [tenant])
    calls = 0
    for hook_name in sorted(n for n in dir(pm.hook) if n.startswith("booking_")):
        caller = getattr(pm.hook, hook_name)
        impls = [i for i in caller.get_hookimpls() if i.plugin_name == "samtycke"]
        if not impls:
            continue
        argnames = impls[0].argnames
        missing = [a for a in argnames if a not in good]
        assert not missing, f"add a test value for hook argument(s) {missing} of {hook_name}"
        for name in argnames:
            for bad in BAD_IDS:
                for kwargs in _with_bad({a: good[a] for a in argnames}, good, name, bad):
                    calls += 1
                    try:
                        result = caller(**kwargs)
                    except (SamtyckeError, ValueError) as exc:
                        assert not type(exc).__module__.startswith(("sqlalchemy", "psycopg"))
                        assert str(exc), (hook_name, name, bad)
                        if isinstance(exc, InputError):
                            assert exc.field, (hook_name, name, bad)
                    else:
                        if isinstance(result, dict):  # the consent lookup
                            # an id that names nothing never gives leave to use data
                            assert all(isinstance(a, ConsentAnswer) and not a.may_use
                                       for a in result.values()), (hook_name, name, bad)
                        elif caller.spec.opts.get("firstresult"):
                            assert result is None or isinstance(result, FilterClause)
                        else:
                            assert isinstance(result, list), (hook_name, result)
                    finally:
                        host.session().rollback()
    FIGURES["hook calls with malformed ids"] += calls
    assert calls > 200
    assert dump(host.engine, [tenant]) == before
    assert_invariants(host.engine, [tenant])


@pytest.mark.parametrize("ip, agent", [
    (123, ["Mozilla"]), ("not an ip", "\x00" * 600), ("::1%eth0\n", "A" * 5000),
    ("203.0.113.9", "Mozilla/5.0 \u202e\u200b 👩🏽‍⚕️"),
])
def test_evidence_from_the_host_is_cleaned_not_fatal(host: TestHost, ip: Any, agent: Any) -> None:
    """IP address and user agent are evidence the app only records: whatever the host
    passes, the booking is recorded, with the evidence truncated/cleaned or left out."""
    tenant, hooks = _activated(host, require_consent_for_online_booking=True)
    client = host.new_client(tenant)
    shown = form_text_id(host, hooks, tenant, client)
    sub = submission(tenant, client, ticked=True, text_id=shown)
    sub = BookingSubmission(**{**_fields(sub), "ip_address": ip, "user_agent": agent})
    assert hooks.submit_check(sub) == []
    hooks.submitted(sub, "b-1", ClientRef(client))  # type: ignore[arg-type]
    host.session().commit()
    [entry] = consent.history(host, tenant, client)
    host.session().rollback()
    assert entry.state == "given"
    assert entry.ip_prefix in (None, "203.0.113.0/24", "::/48")  # truncated, never whole
    if isinstance(agent, str) and agent.strip("\x00"):
        assert entry.user_agent and len(entry.user_agent) <= 512
        assert "\x00" not in entry.user_agent
    else:
        assert entry.user_agent is None
    assert_invariants(host.engine, [tenant])


# -- B7: oversized bodies and too many fields on every page -----------------------------------


def _routes() -> list[Any]:
    return sorted(make_wsgi_app().url_map.iter_rules(), key=lambda r: r.rule)


def _url(rule: Any, client: str = "c1") -> str:
    values = {a: ("7" if "text_id" in a else client if a == "client" else "x" * 43)
              for a in rule.arguments}
    return rule.rule.replace("<int(max=9223372036854775807):text_id>", "7").replace(
        "<", "{").replace(">", "}").format(**values)


@pytest.mark.parametrize("rule", [r for r in _routes() if "POST" in r.methods],
                         ids=lambda r: r.endpoint)
def test_oversized_bodies_are_refused_with_413_and_nothing_written(
    host: TestHost, rule: Any
) -> None:
    tenant, _ = _activated(host)
    known = host.new_client(tenant)
    environ = {"booking.host": host, "booking.tenant": tenant, "booking.staff": staff()}
    before = dump(host.engine, [tenant])
    client = Client(make_wsgi_app())
    url = _url(rule, known)
    big = client.post(url, data={"note": "x" * (MAX_BODY + 1)}, environ_overrides=environ)
    many = client.post(url, data={f"f{i}": "1" for i in range(5000)}, environ_overrides=environ)
    raw = client.post(url, data=b"x" * (MAX_BODY * 4), environ_overrides=environ,
                      content_type="application/x-www-form-urlencoded")
    for resp in (big, many, raw):
        assert resp.status_code == 413, (url, resp.status_code)
        assert "Traceback" not in resp.get_data(as_text=True)
        FIGURES["oversized bodies refused"] += 1
    assert dump(host.engine, [tenant]) == before


# -- B8: DST and time zones ---------------------------------------------------------------------


@pytest.mark.parametrize("local", [
    datetime(2026, 3, 29, 1, 59, 59, tzinfo=STOCKHOLM),            # last second of winter time
    datetime(2026, 3, 29, 3, 0, 0, tzinfo=STOCKHOLM),               # first of summer time
    datetime(2026, 10, 25, 2, 30, tzinfo=STOCKHOLM),                # ambiguous, first pass
    datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=STOCKHOLM),        # ambiguous, second pass
], ids=["before-spring", "after-spring", "autumn-fold0", "autumn-fold1"])
def test_consent_given_around_a_dst_switch_is_stored_as_the_exact_instant(
    host: TestHost, local: datetime
) -> None:
    tenant, _ = _activated(host, validity_days=1)
    client = host.new_client(tenant)
    consent.record_manual(host, tenant, client, staff(), method="paper", given_at=local,
                          note=None)
    host.session().commit()
    [ev] = events(host.engine, tenant)
    assert ev.given_at == local.astimezone(UTC) and ev.given_at.tzinfo is not None
    assert ev.expires_at == local.astimezone(UTC) + timedelta(hours=24)  # a day is 24 h
    [entry] = consent.history(host, tenant, client)
    host.session().rollback()
    # the same instant (compared in UTC: Python never equates an ambiguous local time
    # with another zone's, PEP 495)
    assert entry.given_at == local.astimezone(UTC)
    assert entry.given_at.astimezone(STOCKHOLM).utcoffset() == local.utcoffset()


def test_naive_datetimes_never_reach_the_database(host: TestHost) -> None:
    tenant, _ = _activated(host)
    client = host.new_client(tenant)
    with pytest.raises(InputError) as err:
        consent.record_manual(host, tenant, client, staff(), method="paper",
                              given_at=datetime(2026, 10, 25, 2, 30), note=None)
    assert err.value.field == "given_at"
    host.clock = datetime(2026, 10, 25, 2, 30)  # a host whose clock is naive
    with pytest.raises(InputError) as err:
        consent.record_manual(host, tenant, client, staff(), method="paper",
                              given_at=START, note=None)
    assert err.value.field == "host.now"
    host.session().rollback()
    assert events(host.engine, tenant) == []


def test_events_across_the_autumn_switch_keep_seq_order_in_utc(host: TestHost) -> None:
    """A host clock stepping through 02:00-03:00 local twice (autumn): UTC instants
    increase with seq, and each event's expiry is exactly validity_days × 24 h later."""
    tenant, hooks = _activated(host, require_consent_for_online_booking=True, validity_days=30)
    start = datetime(2026, 10, 25, 0, 15, tzinfo=UTC)  # 02:15 CEST
    clients = []
    for k in range(6):
        host.clock = start + timedelta(minutes=30 * k)  # 02:15, 02:45, 02:15, 02:45 … local
        client = host.new_client(tenant)
        clients.append(client)
        shown = form_text_id(host, hooks, tenant, client)
        assert book(host, hooks, tenant, client, booking=f"b{k}", ticked=True,
                    text_id=shown) == []
    evs = events(host.engine, tenant)
    assert [e.client_ref for e in evs] == clients
    instants = [e.occurred_at for e in evs]
    assert instants == sorted(instants) and len(set(instants)) == 6
    assert all(e.expires_at == e.given_at + timedelta(days=30) for e in evs)
    locals_ = [i.astimezone(STOCKHOLM) for i in instants]
    assert [t.strftime("%H:%M") for t in locals_] == ["02:15", "02:45"] * 2 + ["03:15", "03:45"]
    assert [t.utcoffset() for t in locals_[:4]] == [timedelta(hours=2)] * 2 + [timedelta(hours=1)] * 2


def test_standalone_host_clock_around_dst_with_time_machine(engine: Any) -> None:
    """The CLI's own host reads the real clock: travel to the spring switch."""
    from samtycke_plugin.cli.context import StandaloneHost

    host = StandaloneHost(engine, "http://x.test")
    for local in (datetime(2026, 3, 29, 1, 59, 30, tzinfo=STOCKHOLM),
                  datetime(2026, 3, 29, 3, 0, 30, tzinfo=STOCKHOLM)):
        with time_machine.travel(local, tick=False):
            now = host.now()
            assert now.tzinfo is not None and now == local
            assert common.now_utc(host) == local.astimezone(UTC)  # type: ignore[arg-type]



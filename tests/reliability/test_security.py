"""Security (checklist S1, S4, S7, S8, S9, S10): every hook (enumerated from the
plugin manager) and every route (enumerated from the WSGI app's URL map) called as one
practice with another practice's ids → empty or 404, nothing of the other practice in
the answer, nothing changed; every state-changing POST without a valid CSRF token is
refused; GET/HEAD never write; the database refuses UPDATE/DELETE/TRUNCATE on the
ledger; manual recording only by permitted staff; no SQL built from strings.

New hooks and routes are covered automatically: an argument the tests have no value
for fails the test with a message saying which value to add.
"""

from __future__ import annotations

import ast
import base64
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import pytest
from hostkit import START, TestHost, staff, submission
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import FIGURES, assert_invariants, dump, events, form_text_id
from sqlalchemy import Engine, column, func, select, text, values
from sqlalchemy.exc import DBAPIError
from werkzeug.test import Client

from hookspecs.types import (
    BookingFormContext,
    BookingRef,
    ClientCreated,
    ClientRef,
    StaffContext,
    StaffRef,
    TenantRef,
)
from samtycke_plugin import consent, panels, practice_texts
from samtycke_plugin.chain import verify_chain
from samtycke_plugin.email import jobs, page_links, tokens
from samtycke_plugin.email import receipts as receipt_mail
from samtycke_plugin.email import requests as mail_requests
from samtycke_plugin.errors import PermissionDenied
from samtycke_plugin.integrations.sqlalchemy import filter_condition
from samtycke_plugin.models import ConsentEvent, TextVersion
from samtycke_plugin.web import make_wsgi_app
from samtycke_plugin.web.public import LIMITER

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class World:
    """Practice A (the caller) and practice B (the victim), each with clients,
    consent, history, texts and open links; B's strings carry a marker."""

    host: TestHost
    hooks: Any
    a: TenantRef
    b: TenantRef
    a_client: ClientRef
    a_fresh: ClientRef  # A's client without consent (for write paths)
    b_client: ClientRef
    b_text: int
    a_text: int
    b_token: str
    a_job: int  # a batch job of each practice (its progress page)
    b_job: int
    marker: str = "ZQXB-secret"


@pytest.fixture
def world(host: TestHost) -> Iterator[World]:
    hooks = host.hooks()
    a = host.new_tenant("Practice A")
    b = host.new_tenant("ZQXB-secret Practice B")
    for tenant in (a, b):
        host.activate(hooks, tenant, require_consent_for_online_booking=True)
    a_client = host.new_client(a, name="Alice A", email="alice@example.org")
    a_fresh = host.new_client(a, name="Arne A", email="arne@example.org")
    b_client = host.new_client(b, name="ZQXB-secret Bob", email="zqxb-secret@example.org")
    for tenant, client in ((a, a_client), (b, b_client)):
        consent.record_manual(host, tenant, client, staff(), method="paper",
                              given_at=host.now(), note=f"ZQXB-secret note of {tenant}"
                              if tenant == b else "note of A")
    [b_text_v] = practice_texts.publish_text(
        host, b, bodies={"sv": "ZQXB-secret text of practice B about your data.\n"},
        kind="correction", reason=None, actor="staff:s1", expected_major=1)
    host.session().commit()
    b_client2 = host.new_client(b, name="ZQXB-secret Berit", email="berit@example.org")
    req = mail_requests.send_request(host, b, b_client2, actor="staff:s1")
    host.session().commit()
    b_token = tokens.token_for(tokens.link_key(host), req)
    a_text = form_text_id(host, hooks, a, a_fresh)
    assert a_text is not None
    a_job, b_job = (jobs.start_batch(host, t, actor="staff:s1").job_id for t in (a, b))
    w = World(host=host, hooks=hooks, a=a, b=b, a_client=ClientRef(a_client),
              a_fresh=ClientRef(a_fresh), b_client=ClientRef(b_client), b_text=b_text_v.id,
              a_text=a_text, b_token=b_token, a_job=a_job, b_job=b_job)
    host.session().rollback()  # reading an expired attribute above began a transaction
    yield w
    LIMITER.reset()


def _rows(engine: Engine, tenant: str) -> dict[str, Any]:
    """Every app row of one practice (without the global row counts)."""
    return {k: v for k, v in dump(engine, [tenant]).items() if not k.endswith("#count")}


def _no_marker(w: World, value: object, where: str) -> None:
    assert w.marker.lower() not in repr(value).lower(), f"B's data leaked into {where}"
    assert w.b not in repr(value), f"B's practice ref leaked into {where}"


# -- S1: hooks ------------------------------------------------------------------------------


def _cross_args(w: World) -> dict[str, Any]:
    """Every hook argument, as practice A calling with B's ids."""
    return {
        "host": w.host,
        "tenant": w.a,
        "client": w.b_client,
        "clients": [w.b_client],
        "purpose": "care",
        "staff": staff(),
        "locale": "en",
        "app": "samtycke",
        "settings": {},
        "booking": "b-cross",
        "filter_key": panels.FILTER_VALID,
        "client_ref_column": "refs.ref",
        "submission": submission(w.a, w.b_client, ticked=True, text_id=w.b_text),
        "form": BookingFormContext(tenant=w.a, client=w.b_client, locale="en"),
        "created": ClientCreated(tenant=w.a, client=w.b_client, created_by="staff", at=START),
    }


def test_every_hook_with_another_practices_ids_leaks_and_changes_nothing(world: World) -> None:
    w = world
    pm = w.hooks.pm
    args = _cross_args(w)
    before_b = dump(w.host.engine, [w.b])
    called = []
    for name in sorted(n for n in dir(pm.hook) if n.startswith("booking_")):
        caller = getattr(pm.hook, name)
        impls = [i for i in caller.get_hookimpls() if i.plugin_name == "samtycke"]
        if not impls:
            continue
        argnames = impls[0].argnames
        missing = [a for a in argnames if a not in args]
        assert not missing, f"add a cross-practice value for {missing} of {name}"
        kwargs = {a: args[a] for a in argnames}
        try:
            result = caller(**kwargs)
            if name == "booking_client_list_filter_clause":
                # the clause, applied to B's client refs, must match none of them
                refs = values(column("ref"), name="refs").data([(w.b_client,)])
                matched = w.host.session().execute(
                    select(refs.c.ref).where(filter_condition(result))).all()
                assert matched == [], "A's 'valid' filter matched B's client"
            w.host.session().commit()
        except Exception as exc:
            w.host.session().rollback()
            result = exc
        _no_marker(w, result, name)
        if name == "booking_client_profile_render":
            [[panel]] = result
            assert panel.tone != "ok"  # B's valid consent is not A's
        if name == "booking_client_list_badges":
            [[badge]] = result
            assert badge.tone != "ok"
        if name == "booking_app_deactivated":
            w.host.activate(w.hooks, w.a, require_consent_for_online_booking=True)
        assert dump(w.host.engine, [w.b]) == before_b, f"{name} changed practice B"
        called.append(name)
    FIGURES["hooks called with another practice's ids"] += len(called)
    assert {"booking_submitted", "booking_client_erased", "booking_client_profile_render",
            "booking_client_list_badges", "booking_submit_check"} <= set(called)
    assert_invariants(w.host.engine, [w.a, w.b])


# -- S1: routes ------------------------------------------------------------------------------


def _rules() -> list[Any]:
    return sorted(make_wsgi_app().url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint))


PRACTICE_RULES = [r for r in _rules() if not r.endpoint.startswith("public.")]
TOKEN_RULES = [r for r in _rules() if "token" in r.arguments]
#: Public pages without a token: the practice's "send me my link" form.
PUBLIC_FORM_RULES = [r for r in _rules()
                     if r.endpoint.startswith("public.") and "token" not in r.arguments]


def _path(rule: Any, ids: dict[str, object]) -> str:
    missing = set(rule.arguments) - set(ids)
    assert not missing, f"add a value for route argument(s) {missing} of {rule.rule}"
    adapter = make_wsgi_app().url_map.bind("x.test")
    return str(adapter.build(rule.endpoint, {a: ids[a] for a in rule.arguments}))


def _environ(w: World, tenant: str, who: StaffContext | None = None) -> dict[str, Any]:
    return {"booking.host": w.host, "booking.tenant": tenant, "booking.staff": who or staff(),
            "booking.session": "sign-in-1", "REMOTE_ADDR": "198.51.100.23"}


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf(w: World, tenant: str, who: StaffContext | None = None) -> str:
    """A valid CSRF token of the signed-in practitioner, read from a page."""
    for path in ("/setup", "/text", "/batch", f"/clients/{w.a_fresh}/obtain"):
        body = Client(make_wsgi_app()).get(path, environ_overrides=_environ(w, tenant, who))
        found = _CSRF.search(body.get_data(as_text=True))
        if found:
            return found.group(1)
    raise AssertionError("no practitioner page carries a CSRF token")


#: plausible form data for every practitioner POST (so only authorization decides)
FORM = {"method": "paper", "given_at": "2026-11-28", "note": "x", "kind": "correction",
        "text_sv": "En ändrad text om hur vi sparar dina uppgifter.\n", "expected_major": "1",
        "by": "client", "decision": "accept", "confirm": "yes", "step": "1", "reason": "r",
        "who": "without", "text": "1", "action": "record", "given_on": "2026-11-28"}


@pytest.mark.parametrize("rule", PRACTICE_RULES, ids=lambda r: f"{r.endpoint}")
def test_every_practitioner_route_with_another_practices_ids_is_404(
    world: World, rule: Any
) -> None:
    w = world
    ids = {"client": w.b_client, "text_id": w.b_text, "job_id": w.b_job}
    path = _path(rule, ids)
    app = Client(make_wsgi_app())
    env = _environ(w, w.a)
    before_b = _rows(w.host.engine, w.b)
    token = _csrf(w, w.a)
    responses = []
    for method in sorted(rule.methods - {"OPTIONS"}):
        if method == "POST":
            resp = app.post(path, data={**FORM, "csrf_token": token}, environ_overrides=env)
        else:
            resp = app.open(path, method=method, environ_overrides=env)
        responses.append((method, resp))
    for method, resp in responses:
        body = resp.get_data(as_text=True)
        _no_marker(w, (body, dict(resp.headers)), f"{method} {rule.rule}")
        if rule.arguments:  # an id of B in the path: not found, whatever the method
            assert resp.status_code == 404, (method, path, resp.status_code)
        else:
            assert resp.status_code < 500, (method, path, resp.status_code)
        FIGURES["route calls with another practice's ids"] += 1
    assert _rows(w.host.engine, w.b) == before_b  # A may change its own data, never B's
    assert_invariants(w.host.engine, [w.a, w.b])


def test_routes_are_enumerated_from_the_app() -> None:
    """The route lists above come from the URL map (so new routes are covered)."""
    endpoints = {r.endpoint for r in _rules()}
    assert {"practice.obtain", "practice.withdraw", "practice.history",
            "public.consent", "public.withdraw"} <= endpoints
    assert len(PRACTICE_RULES) + len(TOKEN_RULES) + len(PUBLIC_FORM_RULES) == len(_rules())
    assert {r.endpoint for r in PUBLIC_FORM_RULES} == {"public.send_me_my_link"}


# -- S7: CSRF on every state-changing POST ------------------------------------------------------


def _csrf_variants(w: World) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    other_staff = StaffContext(ref=StaffRef("s2"), name="Other", can_record_consent=True)
    return [
        ("missing", {}, {}),
        ("empty", {"csrf_token": ""}, {}),
        ("garbage", {"csrf_token": "x" * 43}, {}),
        ("huge", {"csrf_token": "x" * 5000}, {}),
        ("other practice's", {"csrf_token": _csrf(w, w.b)}, {}),
        ("other staff member's", {"csrf_token": _csrf(w, w.a, other_staff)}, {}),
    ]


@pytest.mark.parametrize("rule", [r for r in PRACTICE_RULES if "POST" in r.methods],
                         ids=lambda r: r.endpoint)
def test_every_practitioner_post_without_a_valid_csrf_token_is_refused(
    world: World, rule: Any
) -> None:
    w = world
    path = _path(rule, {"client": w.a_fresh, "text_id": w.a_text})
    before = dump(w.host.engine, [w.a, w.b])
    app = Client(make_wsgi_app())
    for label, token, headers in _csrf_variants(w):
        resp = app.post(path, data={**FORM, **token}, headers=headers,
                        environ_overrides=_environ(w, w.a))
        assert resp.status_code == 403, (label, path, resp.status_code)
        assert "Traceback" not in resp.get_data(as_text=True)
        FIGURES["POSTs without a valid CSRF token refused"] += 1
    assert dump(w.host.engine, [w.a, w.b]) == before


def _page_token(w: World, client: str) -> str:
    """A new link to the client's own page ("Mina samtycken"), its token."""
    url = page_links.new_url(w.host, w.a, client, actor="test")
    w.host.session().commit()
    return url.rsplit("/", 1)[1]


@pytest.mark.parametrize("rule", [r for r in TOKEN_RULES if "POST" in r.methods],
                         ids=lambda r: r.endpoint)
def test_every_link_post_without_its_csrf_token_or_cross_site_is_refused(
    world: World, rule: Any
) -> None:
    w = world
    req = mail_requests.send_request(w.host, w.a, w.a_fresh, actor="staff:s1")
    w.host.session().commit()
    if rule.endpoint == "public.withdraw":  # a withdraw link needs consent to withdraw
        consent.record_manual(w.host, w.a, w.a_fresh, staff(), method="paper",
                              given_at=w.host.now(), note=None)
        w.host.session().commit()
        req = _withdraw_request(w)
    if rule.endpoint == "public.confirm":  # a confirm link needs a consent to confirm
        req = _confirm_request(w)
    token = tokens.token_for(tokens.link_key(w.host), req)
    if rule.endpoint == "public.my_page":  # the client's own page has a token of its own
        token = _page_token(w, w.a_fresh)
    path = _path(rule, {"token": token})
    app = Client(make_wsgi_app())
    env = {"booking.host": w.host, "REMOTE_ADDR": "198.51.100.24"}
    page = app.get(path, environ_overrides=env).get_data(as_text=True)
    good = _CSRF.search(page)
    assert good, "the link page carries no CSRF token"
    before = dump(w.host.engine, [w.a])
    data = {"decision": "accept", "text": str(w.a_text), "action": "give", "purpose": "care"}
    for label, form, headers in [
        ("missing", data, {}),
        ("garbage", {**data, "csrf_token": "x" * 43}, {}),
        ("cross-site", {**data, "csrf_token": good.group(1)}, {"Sec-Fetch-Site": "cross-site"}),
        ("foreign origin", {**data, "csrf_token": good.group(1)},
         {"Origin": "https://evil.example"}),
    ]:
        resp = app.post(path, data=form, headers=headers, environ_overrides=env)
        assert resp.status_code in (400, 403), (label, resp.status_code)
        FIGURES["POSTs without a valid CSRF token refused"] += 1
    assert dump(w.host.engine, [w.a]) == before


def _confirm_request(w: World) -> Any:
    """The confirm link of a consent ticked by a booker who was not signed in."""
    from samtycke_plugin.models import ConsentRequest

    sub = attrs.evolve(submission(w.a, w.a_fresh, ticked=True, text_id=w.a_text),
                       booker_signed_in=False)
    w.hooks.submitted(sub, BookingRef("b-confirm"), w.a_fresh)
    w.host.session().commit()
    return w.host.session().scalars(
        select(ConsentRequest).where(ConsentRequest.tenant_ref == w.a,
                                     ConsentRequest.client_ref == w.a_fresh,
                                     ConsentRequest.purpose == tokens.PURPOSE_CONFIRM)).one()


@pytest.mark.parametrize("rule", PUBLIC_FORM_RULES, ids=lambda r: r.endpoint)
def test_every_public_form_post_without_its_csrf_token_or_cross_site_is_refused(
    world: World, rule: Any
) -> None:
    w = world
    path = _path(rule, {"practice": w.a})
    app = Client(make_wsgi_app())
    env = {"booking.host": w.host, "REMOTE_ADDR": "198.51.100.25"}
    good = _CSRF.search(app.get(path, environ_overrides=env).get_data(as_text=True))
    assert good, "the form carries no CSRF token"
    before = dump(w.host.engine, [w.a, w.b])
    data = {"email": "arne@example.org"}
    for label, form, headers in [
        ("missing", data, {}),
        ("garbage", {**data, "csrf_token": "x" * 43}, {}),
        ("other practice's", {**data, "csrf_token": _CSRF.search(app.get(
            _path(rule, {"practice": w.b}), environ_overrides=env).get_data(as_text=True)
        ).group(1)}, {}),
        ("cross-site", {**data, "csrf_token": good.group(1)}, {"Sec-Fetch-Site": "cross-site"}),
        ("foreign origin", {**data, "csrf_token": good.group(1)},
         {"Origin": "https://evil.example"}),
    ]:
        resp = app.post(path, data=form, headers=headers, environ_overrides=env)
        assert resp.status_code == 403, (label, resp.status_code)
        FIGURES["POSTs without a valid CSRF token refused"] += 1
    assert dump(w.host.engine, [w.a, w.b]) == before


def _withdraw_request(w: World) -> Any:
    """The withdraw link the receipt of a consent carries (queued by the receipt)."""
    from samtycke_plugin.models import ConsentRequest

    ev = w.host.session().scalars(
        select(ConsentEvent).where(ConsentEvent.tenant_ref == w.a,
                                   ConsentEvent.client_ref == w.a_fresh)
        .order_by(ConsentEvent.seq.desc())).first()
    assert ev is not None
    receipt_mail.queue_receipt(w.host, ev)
    w.host.session().commit()
    req = w.host.session().scalars(
        select(ConsentRequest).where(ConsentRequest.tenant_ref == w.a,
                                     ConsentRequest.client_ref == w.a_fresh,
                                     ConsentRequest.purpose == tokens.PURPOSE_WITHDRAW,
                                     ConsentRequest.used_at.is_(None),
                                     ConsentRequest.revoked_at.is_(None))).one()
    w.host.session().rollback()
    return req


# -- S4: GET and HEAD never write ---------------------------------------------------------------


@pytest.mark.parametrize("rule", [r for r in _rules() if "GET" in r.methods],
                         ids=lambda r: r.endpoint)
def test_get_and_head_never_write_even_with_form_data_in_the_query(
    world: World, rule: Any
) -> None:
    """Mail scanners and prefetchers send HEAD and GET (also with the form's fields in
    the query string): nothing is ever written, whatever the route."""
    w = world
    req = mail_requests.send_request(w.host, w.a, w.a_fresh, actor="staff:s1")
    w.host.session().commit()
    token = tokens.token_for(tokens.link_key(w.host), req)
    seq = 1
    if rule.endpoint.startswith("public.my_"):  # the client's own page and its receipts
        token = _page_token(w, w.a_client)
        seq = int(w.host.session().scalar(select(func.max(ConsentEvent.seq)).where(
            ConsentEvent.tenant_ref == w.a, ConsentEvent.client_ref == w.a_client)) or 1)
        w.host.session().rollback()
    path = _path(rule, {"client": w.a_fresh, "text_id": w.a_text, "token": token,
                        "job_id": w.a_job, "practice": w.a, "seq": seq})
    before = dump(w.host.engine, [w.a])
    app = Client(make_wsgi_app())
    query = {**FORM, "csrf_token": _csrf(w, w.a), "samtycke_consent": "yes"}
    for method in ("HEAD", "GET"):
        for q in (None, query):
            resp = app.open(path, method=method, query_string=q,
                            environ_overrides=_environ(w, w.a),
                            headers={"User-Agent": "Mozilla/5.0 (compatible; SafeLinks)"})
            assert resp.status_code < 500, (method, path)
            assert "Traceback" not in resp.get_data(as_text=True)
            FIGURES["GET/HEAD requests that wrote nothing"] += 1
    after = dump(w.host.engine, [w.a])
    if rule.endpoint == "practice.history":
        # The one accepted write of a GET that shows a client's consent data: its
        # access-log row (one per GET, none for HEAD), and nothing else.
        new = after["samtycke_access_log"][len(before["samtycke_access_log"]):]
        assert [(r[3], r[4], r[6]) for r in new] == [("staff:s1", "view_history", w.a_fresh)] * 2
        for key in ("samtycke_access_log", "samtycke_access_log#count"):
            after[key] = before[key]
    assert after == before


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(forged=st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/?#"), max_size=80),
    st.binary(min_size=32, max_size=32).map(
        lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
))
def test_forged_tokens_never_open_a_link(world: World, forged: str) -> None:
    """B2/S2: random strings and random well-formed 256-bit tokens never open a link
    (same 404 page, nothing written); checked with a fresh source address each time so
    the per-source rate limit does not hide the answer."""
    from smtp_support import Browser

    w = world
    if forged == w.b_token or not forged.strip():
        return
    before = dump(w.host.engine, [w.a, w.b])
    for purpose in ("c", "w"):
        resp = Browser(w.host).post(f"/apps/samtycke/{purpose}/{quote(forged, safe='')}",
                                    data={"decision": "accept"})
        assert resp.status_code in (404, 405), resp.status_code
        FIGURES["tokens forged (random)"] += 1
    assert dump(w.host.engine, [w.a, w.b]) == before


def test_every_one_character_mutation_of_a_real_token_is_refused(world: World) -> None:
    """Each position of a real token changed, the token cut short or extended, and the
    right token under the other purpose: never a usable link; the real one still works."""
    from smtp_support import Browser, form_fields

    w = world
    token = w.b_token
    alphabet = string.ascii_letters + string.digits + "-_"
    forged = {token[:i] + alphabet[(alphabet.index(ch) + 7) % len(alphabet)] + token[i + 1:]
              for i, ch in enumerate(token)}
    forged |= {token[:-1], token + "A", token.upper(), token[::-1]}
    before = dump(w.host.engine, [w.b])
    for bad in sorted(forged):
        for purpose in ("c", "w"):
            resp = Browser(w.host).get(f"/apps/samtycke/{purpose}/{bad}")
            assert resp.status_code == 404, (bad, resp.status_code)
            FIGURES["tokens forged (mutations of a real one)"] += 1
    assert Browser(w.host).get(f"/apps/samtycke/w/{token}").status_code == 404  # wrong purpose
    assert dump(w.host.engine, [w.b]) == before
    browser = Browser(w.host)
    page = browser.get(f"/apps/samtycke/c/{token}")
    assert page.status_code == 200
    done = browser.post(f"/apps/samtycke/c/{token}",
                        data={**form_fields(page.text), "decision": "accept"})
    assert done.status_code == 200


# -- S9: the database refuses changes to the ledger ------------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE samtycke_consent_event SET state = 'given' WHERE tenant_ref = :t",
    "UPDATE samtycke_consent_event SET row_hash = prev_hash WHERE tenant_ref = :t",
    "DELETE FROM samtycke_consent_event WHERE tenant_ref = :t",
    "UPDATE samtycke_text_version SET body = 'changed' WHERE tenant_ref = :t",
    "DELETE FROM samtycke_text_version WHERE tenant_ref = :t",
    "TRUNCATE samtycke_consent_event CASCADE",
    "TRUNCATE samtycke_text_version CASCADE",
])
def test_the_database_refuses_to_change_the_ledger(
    world: World, engine: Engine, statement: str
) -> None:
    w = world
    if statement.startswith("TRUNCATE") and engine.dialect.name == "sqlite":
        # SQLite's truncate is an unqualified DELETE
        statement = statement.replace("TRUNCATE", "DELETE FROM").replace(" CASCADE", "")
    before = dump(engine, [w.a, w.b])
    with pytest.raises(DBAPIError) as err, engine.begin() as conn:
        conn.execute(text(statement), {"t": w.b})
    assert "append-only" in str(err.value)
    assert dump(engine, [w.a, w.b]) == before
    with engine.connect() as conn:
        from sqlalchemy.orm import Session

        with Session(bind=conn) as s:
            assert verify_chain(s, w.b).ok
        conn.rollback()
    FIGURES[f"ledger changes refused by the database ({engine.dialect.name})"] += 1


def test_orm_changes_to_an_event_or_text_are_refused_too(world: World) -> None:
    w = world
    s = w.host.session()
    ev = s.scalars(select(ConsentEvent).where(ConsentEvent.tenant_ref == w.b)).first()
    assert ev is not None
    ev.state = "withdrawn"
    with pytest.raises(DBAPIError):
        s.commit()
    s.rollback()
    tv = s.get(TextVersion, w.b_text)
    assert tv is not None
    s.delete(tv)
    with pytest.raises(DBAPIError):
        s.commit()
    s.rollback()
    assert verify_chain(s, w.b).ok
    s.rollback()


# -- S10: manual consent only for permitted staff --------------------------------------------------


def test_manual_recording_only_by_permitted_staff(world: World) -> None:
    w = world
    clerk = StaffContext(ref=StaffRef("clerk"), name="Clerk", can_record_consent=False)
    before = dump(w.host.engine, [w.a])
    with pytest.raises(PermissionDenied):
        consent.record_manual(w.host, w.a, w.a_fresh, clerk, method="paper",
                              given_at=w.host.now(), note=None)
    w.host.session().rollback()
    [[panel]] = w.hooks.pm.hook.booking_client_profile_render(
        host=w.host, tenant=w.a, client=w.a_fresh, staff=clerk, locale="en")
    assert "/obtain" not in panel.html or "Record consent" not in panel.html
    w.host.session().rollback()
    app = Client(make_wsgi_app())
    token = _csrf(w, w.a, clerk)
    resp = app.post(f"/clients/{w.a_fresh}/obtain", data={**FORM, "csrf_token": token},
                    environ_overrides=_environ(w, w.a, clerk))
    assert resp.status_code == 403
    assert "behörighet" in resp.get_data(as_text=True)  # says what to do (Swedish page)
    assert dump(w.host.engine, [w.a]) == before
    # a permitted practitioner's manual event names them, keeps the stated date apart
    consent.record_manual(w.host, w.a, w.a_fresh, staff(), method="verbal",
                          given_at=w.host.now().replace(day=1), note="Ringde")
    w.host.session().commit()
    ev = events(w.host.engine, w.a)[-1]
    assert (ev.actor, ev.channel, ev.method) == ("staff:s1", "manual", "verbal")
    assert ev.given_at == w.host.now().replace(day=1) and ev.occurred_at == w.host.now()


# -- S13: erasure ------------------------------------------------------------------------------


def test_ids_of_erased_requests_and_mail_are_never_reused(host: TestHost) -> None:
    """Regression: SQLite reuses the highest rowid after a delete, so once erasure
    removed a client's request and outbox rows, the next request got the same id; the
    erased client's chained ``requested`` event then named another client's request,
    and a relay still holding the old outbox id could mark the new mail as sent."""
    from samtycke_plugin.models import ConsentRequest, OutboxMessage

    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant, require_consent_for_online_booking=True)
    erased, other = host.new_client(tenant), host.new_client(tenant, email="o@example.org")
    old = mail_requests.send_request(host, tenant, erased, actor="staff:s1")
    host.session().commit()
    old_id = old.id
    old_mail = host.session().scalar(
        select(OutboxMessage.id).where(OutboxMessage.request_id == old_id))
    hooks.client_erased(tenant, ClientRef(erased))
    host.session().commit()
    new = mail_requests.send_request(host, tenant, other, actor="staff:s1")
    host.session().commit()
    new_mail = host.session().scalar(
        select(OutboxMessage.id).where(OutboxMessage.request_id == new.id))
    assert new.id != old_id and new_mail != old_mail
    host.session().rollback()
    [requested] = [e for e in events(host.engine, tenant)
                   if e.client_ref == erased and e.state == "requested"]
    assert requested.request_id == old_id
    gone = select(ConsentRequest.id).where(ConsentRequest.id == old_id)
    assert host.session().scalar(gone) is None  # gone, not someone else's
    host.session().rollback()
    assert_invariants(host.engine, [tenant])


# -- S8: no SQL built from strings -------------------------------------------------------------------

SQL_CALLS = {"text", "exec_driver_sql", "execute", "executescript", "executemany"}
SCANNED = ["samtycke_plugin", "hookspecs", "hookimpls", "examples"]


def _constant(node: ast.expr, consts: dict[str, bool]) -> bool:
    """Is ``node`` built only from string literals (and names bound to them)?"""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        return consts.get(node.id, False)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _constant(node.left, consts) and _constant(node.right, consts)
    if isinstance(node, ast.JoinedStr):  # f-strings: literals and int(...) only
        return all(isinstance(v, ast.Constant) or _int_cast(v) for v in node.values)
    return False


def _int_cast(node: ast.expr) -> bool:
    """``{int(x)}`` in an f-string cannot carry SQL (PRAGMAs take no bound parameters)."""
    return (isinstance(node, ast.FormattedValue) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name) and node.value.func.id == "int")


def string_built_sql(source: str, filename: str) -> list[str]:
    """Calls of text()/execute()/exec_driver_sql() whose SQL argument is an f-string,
    a %-format, .format() or a concatenation involving non-constants."""
    tree = ast.parse(source, filename)
    consts: dict[str, bool] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            consts[node.targets[0].id] = _constant(node.value, consts)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else \
            func.id if isinstance(func, ast.Name) else ""
        if name not in SQL_CALLS:
            continue
        arg = node.args[0]
        bad = (
            (isinstance(arg, ast.JoinedStr) and not _constant(arg, consts))
            or (isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Mod)
                and isinstance(arg.left, ast.Constant) and isinstance(arg.left.value, str))
            or (isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add)
                and not _constant(arg, consts))
            or (isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute)
                and arg.func.attr == "format")
        )
        if bad:
            found.append(f"{filename}:{node.lineno}: {name}({ast.unparse(arg)[:60]})")
    return found


#: String-built SQL that is reviewed and safe: identifiers from code, never from input.
ALLOWED = {
    # DDL in the migration, table names from a constant tuple
    "samtycke_plugin/migrations/versions/0001_initial_schema.py",
    # DDL and copies between a table and its copy, table names from module constants
    "samtycke_plugin/migrations/versions/0004_purposes.py",
}


def test_the_sql_lint_catches_what_it_should() -> None:
    bad = '''
from sqlalchemy import text
def f(conn, name, x):
    conn.execute(text(f"SELECT * FROM t WHERE name = '{name}'"))
    conn.execute(text("SELECT * FROM t WHERE id = %s" % x))
    conn.exec_driver_sql("DELETE FROM t WHERE id = " + x)
    conn.execute(text("SELECT {}".format(x)))
    cursor.execute(f"PRAGMA busy_timeout = {x}")
    cursor.execute(f"PRAGMA busy_timeout = {int(x) + 1}")
'''
    good = '''
from sqlalchemy import text
Q = "SELECT 1"
def f(conn, name):
    conn.execute(text("SELECT * FROM t WHERE name = :n"), {"n": name})
    conn.execute(text(Q + " UNION SELECT 2"))
    conn.execute(text(f"SELECT 1"))
    cursor.execute(f"PRAGMA busy_timeout = {int(x)}")
'''
    assert len(string_built_sql(bad, "bad.py")) == 6
    assert string_built_sql(good, "good.py") == []


def test_no_sql_is_built_from_strings() -> None:
    """A lint that fails the build: every SQL call in the shipped code (app, contract,
    adapters, example host) takes constant SQL with bound parameters."""
    problems: list[str] = []
    scanned = 0
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            scanned += 1
            found = string_built_sql(path.read_text("utf-8"), rel)
            if rel in ALLOWED:
                continue
            problems.extend(found)
    assert scanned > 30
    assert problems == [], "string-built SQL:\n" + "\n".join(problems)


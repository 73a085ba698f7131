"""The batch page: a preview of who a request to everyone would reach and who it
leaves out, and a confirmation that starts the job.

The preview (a GET) writes nothing.  Its confirm form carries a key issued with it:
an HMAC of the practitioner's sign-in session, the practice, the newest batch job
when the preview was made, and the time.  A job started since (by this confirmation,
a second tab or a colleague) makes every earlier key useless, and so does an hour's
wait, so a stale tab or a replayed POST sends nothing; a double click finds the job
its first click started.  No state is stored for the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Request, Response

from hookspecs.types import Permission
from samtycke_plugin import common, hostdb
from samtycke_plugin.email import jobs
from samtycke_plugin.email.batch_preview import (
    REASON_LABELS,
    REASONS,
    BatchPreview,
    preview_batch,
)
from samtycke_plugin.email.purpose_names import purpose_names
from samtycke_plugin.i18n import N_, t
from samtycke_plugin.purposes import DEFAULT_PURPOSE, list_purposes
from samtycke_plugin.web.base import requires, session_of
from samtycke_plugin.web.staff import (
    Ctx,
    _actor,
    _counts,
    _operational,
    check_csrf,
    context,
    redirect,
    render_page,
)

#: The confirm form's field with the key.
KEY_FIELD = "confirm_key"

#: How long a preview can be confirmed (seconds).
KEY_TTL = 3600

STALE_PREVIEW = N_(
    "Nothing was sent: this preview is out of date, or it was already confirmed. Check "
    "the new preview below and confirm again if it is what you want."
)


def _mac(secret: bytes, session: str, ctx: Ctx, latest: int, issued: int,
         purpose: str = DEFAULT_PURPOSE) -> str:
    # JSON keeps the parts apart: refs may contain ":" and a host's session id anything.
    # The purpose is signed too: a confirmation sends what its preview showed.
    message = json.dumps(
        ["batch-confirm", session, ctx.tenant, ctx.staff.ref, latest, issued, purpose],
        ensure_ascii=True,
    ).encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue_key(ctx: Ctx, latest: int, purpose: str = DEFAULT_PURPOSE) -> str:
    """The key of a preview for ``purpose`` made while ``latest`` was the practice's
    newest job."""
    session = session_of(ctx.request)
    if session is None:  # every POST is refused then: there is nothing to sign
        return ""
    issued = int(common.now_utc(ctx.host).timestamp())
    secret = ctx.host.app_secret(common.APP_KEY)
    return f"{issued}.{latest}.{_mac(secret, session, ctx, latest, issued, purpose)}"


def _key_parts(
    ctx: Ctx, key: str | None, purpose: str = DEFAULT_PURPOSE
) -> tuple[int, int] | None:
    """``(issued, latest)`` of a key this practitioner's session was given, or ``None``."""
    session = session_of(ctx.request)
    if session is None or not key or len(key) > 200:
        return None
    issued_s, _, rest = key.partition(".")
    latest_s, _, mac = rest.partition(".")
    if not (issued_s.isdigit() and latest_s.isdigit() and len(issued_s) <= 12
            and len(latest_s) <= 20):
        return None
    issued, latest = int(issued_s), int(latest_s)
    secret = ctx.host.app_secret(common.APP_KEY)
    if not hmac.compare_digest(mac, _mac(secret, session, ctx, latest, issued, purpose)):
        return None
    return issued, latest


def _purposes(ctx: Ctx) -> list[tuple[str, str]]:
    """``(key, name)`` of the purposes a batch can ask for, in the practice's order."""
    with hostdb.session(ctx.host) as session:
        names = purpose_names(session, ctx.tenant, ctx.locale)
        return [(p.key, names.get(p.key, p.key)) for p in list_purposes(session, ctx.tenant)]


def _chosen(ctx: Ctx, raw: str | None, offered: list[tuple[str, str]]) -> str:
    """The purpose asked for (none given: the default one; one the practice does not
    ask for: 400)."""
    if not raw:
        return DEFAULT_PURPOSE
    if raw not in {key for key, _name in offered}:
        raise BadRequest()
    return raw


def _page(ctx: Ctx, *, status: int = 200, error: str | None = None,
          purpose: str = DEFAULT_PURPOSE, offered: list[tuple[str, str]] | None = None
          ) -> Response:
    latest = jobs.latest_job(ctx.host, ctx.tenant)
    running = jobs.unfinished_job(ctx.host, ctx.tenant)
    preview = None if running else preview_batch(ctx.host, ctx.tenant, purpose=purpose)
    offered = offered if offered is not None else _purposes(ctx)
    return render_page(
        ctx,
        "practice_batch.html",
        status=status,
        active="batch",
        counts=_counts(ctx, purpose),  # the chosen purpose's, as the preview's
        running=running,
        preview=preview,
        reasons=_reasons(ctx, preview),
        mail_problem=(t(ctx.locale, preview.mail_problem)
                      if preview is not None and preview.mail_problem else ""),
        confirm_key=issue_key(ctx, latest, purpose),
        key_field=KEY_FIELD,
        key_error=error,
        purposes=offered if len(offered) > 1 else [],
        purpose=purpose,
        purpose_name=dict(offered).get(purpose, purpose),
    )


def _reasons(ctx: Ctx, preview: BatchPreview | None) -> list[dict[str, Any]]:
    if preview is None:
        return []
    return [
        {
            "key": reason.value,
            "label": t(ctx.locale, REASON_LABELS[reason.value]),
            "count": preview.counts[reason],
            "clients": preview.left_out[reason],
            "unlisted": preview.unlisted(reason),
        }
        for reason in REASONS
    ]


@requires(Permission.SEND_BATCH)
def batch(request: Request) -> Response:
    ctx = context(request)
    if request.method == "POST":
        form = check_csrf(ctx)
        if (gone := _operational(ctx)) is not None:
            return gone
        offered = _purposes(ctx)
        purpose = _chosen(ctx, form.get("purpose"), offered)
        parts = _key_parts(ctx, form.get(KEY_FIELD), purpose)
        latest = jobs.latest_job(ctx.host, ctx.tenant)
        now = int(common.now_utc(ctx.host).timestamp())
        if parts is not None and parts[1] != latest:
            # A job started after this preview: a second click of the same form finds
            # the job its first click started; a finished one is not started again.
            running = jobs.unfinished_job(ctx.host, ctx.tenant)
            if running is not None and running > parts[1]:
                return redirect(ctx, f"/batch/jobs/{running}")
            parts = None
        if parts is None or not (now - KEY_TTL <= parts[0] <= now + 60):
            return _page(ctx, status=409, error=t(ctx.locale, STALE_PREVIEW), purpose=purpose,
                         offered=offered)
        # The work is a job the relay runs; two confirmations at the same moment find one
        # job (a practice has at most one unfinished), so nobody is asked twice.
        started = jobs.start_batch(ctx.host, ctx.tenant, actor=_actor(ctx), purpose=purpose)
        return redirect(ctx, f"/batch/jobs/{started.job_id}")
    if (gone := _operational(ctx)) is not None:
        return gone
    offered = _purposes(ctx)
    return _page(ctx, purpose=_chosen(ctx, request.args.get("purpose"), offered),
                 offered=offered)

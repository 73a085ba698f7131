"""The practitioner's access log ("Åtkomstlogg"): who viewed or exported which client's
consent data, practice-wide, newest first, paginated and filtered by client (as CSV:
``samtycke access-log --format csv``).  A GET that changes nothing and records nothing:
the log names staff and opaque client references, not the clients' consent data."""

from __future__ import annotations

from collections.abc import Sequence

from werkzeug.exceptions import Forbidden
from werkzeug.wrappers import Request, Response

from hookspecs.types import Permission
from samtycke_plugin import access_log, common, hostdb
from samtycke_plugin.access_log import Entry, Viewer
from samtycke_plugin.errors import InputError
from samtycke_plugin.i18n import t
from samtycke_plugin.inputs import record_id
from samtycke_plugin.web.base import Handler, cross_site_fetch, requires
from samtycke_plugin.web.staff import Ctx, _who, context, render_page

#: Entries of one client shown on their history page (the rest: the access-log page).
RECENT = 5


def rows(ctx: Ctx, entries: Sequence[Entry]) -> list[dict[str, object]]:
    """Entries as the templates show them."""
    return [
        {
            "entry": e,
            "who": _who(ctx, e.actor) if not e.actor.startswith("cli:") else t(
                ctx.locale, "Command line (%(user)s)", user=e.actor.removeprefix("cli:")),
            "action": t(ctx.locale, access_log.ACTIONS.get(e.action, e.action)),
            "via": t(ctx.locale, access_log.VIA.get(e.via, e.via)),
        }
        for e in entries
    ]


def log_view_of_history(ctx: Ctx, client: str) -> list[dict[str, object]]:
    """Record that the signed-in practitioner views ``client``'s history (in the page's
    unit of work) and give the latest entries of the client, this view first.

    A request another site made the browser send is refused first: the row would
    otherwise be written in the practitioner's name without them opening the page.
    """
    if cross_site_fetch(ctx.request):
        raise Forbidden()
    if ctx.request.method == "GET":  # HEAD shows nothing
        with hostdb.session(ctx.host) as session:
            access_log.record(session, ctx.host, ctx.tenant, Viewer.staff(ctx.staff),
                              "view_history", client=client)
    page = access_log.entries(ctx.host, ctx.tenant, client=client, limit=RECENT)
    return rows(ctx, page.entries)


def _filters(ctx: Ctx) -> tuple[str | None, int | None, str | None]:
    """The client filter and the page (``before``) from the query; an error message
    for a client reference that cannot be one."""
    args = ctx.request.args
    raw_client = args.get("client", "").strip()
    client: str | None = None
    error = None
    if raw_client:
        try:
            client = common.check_ref("client", raw_client)
        except InputError:
            error = t(ctx.locale, "That is not a client reference. Check it and try again.")
    before = record_id(args.get("before", ""))
    return client, before, error


@requires(Permission.VIEW_HISTORY)
def access_log_page(request: Request) -> Response:
    ctx = context(request)
    client, before, error = _filters(ctx)
    if error is not None:
        page = access_log.Page(entries=(), older=None)
    else:
        page = access_log.entries(ctx.host, ctx.tenant, client=client, before=before)
    return render_page(
        ctx,
        "practice_access_log.html",
        status=400 if error else 200,
        active="access_log",
        rows=rows(ctx, page.entries),
        older=ctx.url("/access-log", client=client, before=page.older) if page.older else None,
        newest=ctx.url("/access-log", client=client) if before else None,
        client_filter=ctx.request.args.get("client", "").strip()[:64],
        filtered=client,
        errors={"client": error} if error else {},
    )


ROUTES: list[tuple[str, str, Handler, tuple[str, ...]]] = [
    ("/access-log", "practice.access_log", access_log_page, ("GET",)),
]

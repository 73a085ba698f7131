"""The practitioner's proof of paper consent: choosing the text version the client
signed, reading the attached scan from the form, and downloading a stored scan from
the client's history (see :mod:`samtycke_plugin.attachments`)."""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import Forbidden, NotFound
from werkzeug.wrappers import Request, Response

from hookspecs.types import Permission
from samtycke_plugin import access_log, attachments, common, hostdb, practice_texts
from samtycke_plugin.access_log import Viewer
from samtycke_plugin.errors import InputError
from samtycke_plugin.i18n import t
from samtycke_plugin.inputs import whole_number
from samtycke_plugin.web.base import Handler, cross_site_fetch, requires, secure_headers
from samtycke_plugin.web.staff import Ctx, _language_name, context

#: The form field of the scan, and of the chosen text version ("": the one in force on
#: the day the client signed).
SCAN_FIELD = "scan"
VERSION_FIELD = "text_version"

#: The download is a file, never a page: nothing in it may run or load anything.
DOWNLOAD_CSP = "default-src 'none'; sandbox"


def version_choices(ctx: Ctx, session: Any, purpose: str) -> list[dict[str, object]]:
    """Every text version of the purpose, newest first, as the form offers them."""
    return [
        {
            "id": v.id,
            "label": t(
                ctx.locale, "Version %(version)s, %(language)s, from %(date)s",
                version=common.version_label(v.major, v.minor),
                language=_language_name(ctx, v.language),
                date=v.created_at.strftime("%Y-%m-%d"),
            ),
        }
        for v in practice_texts.text_versions(session, ctx.tenant, purpose)
    ]


def chosen_version(raw: str, choices: list[dict[str, object]]) -> tuple[int | None, bool]:
    """The text version the form names (``None``: the default) and whether the field
    was one the page offered (a damaged or forged form otherwise)."""
    if not raw:
        return None, True
    number = whole_number(raw)
    if number is None or not any(c["id"] == number for c in choices):
        return None, False
    return number, True


def read_scan(ctx: Ctx, request: Request) -> tuple[bytes | None, str | None]:
    """The attached file's bytes (``None``: nothing attached) or why it cannot be
    taken, checked by its size and first bytes."""
    upload: FileStorage | None = request.files.get(SCAN_FIELD)
    if upload is None:
        return None, None
    # One byte more than the limit tells a file that is too large.
    data = upload.stream.read(attachments.MAX_ATTACHMENT_BYTES + 1)
    if not data and not upload.filename:  # the field was left empty
        return None, None
    try:
        attachments.check(data)
    except attachments.AttachmentRefused as exc:
        return None, t(ctx.locale, exc.reason)
    return data, None


@requires(Permission.VIEW_HISTORY)
def download(request: Request, client: str, sha256: str) -> Response:
    """A stored scan of the client's, as a file: one access-log row for each download
    (a GET whose only write is that row, see :mod:`samtycke_plugin.access_log`)."""
    ctx = context(request)
    try:
        ref = common.check_ref("client", client)
    except InputError:
        raise NotFound() from None
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise NotFound()
    if cross_site_fetch(request):
        raise Forbidden()
    with hostdb.session(ctx.host) as session:
        stored, data = attachments.content(session, ctx.tenant, ref, sha256)
        if request.method == "GET":
            access_log.record(session, ctx.host, ctx.tenant, Viewer.staff(ctx.staff),
                              "download_attachment", client=ref, detail=f"sha256={sha256}")
    response = Response(data, content_type=stored.content_type)
    secure_headers(response, public=False, csp=DOWNLOAD_CSP)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="samtycke-{ref}-{stored.file_name}"'
        if all(c.isalnum() or c in "-_." for c in ref)
        else f'attachment; filename="samtycke-{stored.file_name}"'
    )
    return response


ROUTES: list[tuple[str, str, Handler, tuple[str, ...]]] = [
    ("/clients/<client>/attachments/<sha256>", "practice.attachment", download, ("GET",)),
]

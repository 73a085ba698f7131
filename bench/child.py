"""C6 and C7 in a process of their own, so the peak memory measured is theirs alone.

``python -m bench.child batch URL STAFF_EMAIL``: the practitioner presses "send to all"
on the app's batch page of the example platform (POST through its request handlers),
which records a job and returns; then the job is run as the platform's relay runs it
(:func:`samtycke_plugin.email.jobs.run_pending`).  The request's time, the job's wall
time and the job's peak memory are measured.

``python -m bench.child verify URL TENANT``: ``samtycke verify --tenant`` (the app's
command line, in this process).

``python -m bench.child export URL STAFF_EMAIL``: the practice's status list as CSV from
the platform's client list page (streamed; the body is read chunk by chunk and dropped).

Each prints one JSON line last: times, counts and the process's peak resident set size.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select


def _status_kb(field: str) -> int:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of this process, in kB.

    ``ru_maxrss`` is no substitute on Linux: it survives ``exec`` and so would report the
    parent's size at the fork (the parent holds the generated data)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _start_peak() -> int:
    """Reset the peak to the present size (``/proc/self/clear_refs``), so the peak
    measured after it is the work's, not the start-up's (imports, the app's set-up);
    returns the present size in kB."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


def _requests_queued(app: Any, tenant: str) -> int:
    from examples.host_app.testing import platform_of
    from samtycke_plugin.models import KIND_REQUEST, OutboxMessage

    platform = platform_of(app)
    try:
        return int(platform.db().scalar(
            select(func.count()).select_from(OutboxMessage)
            .where(OutboxMessage.tenant_ref == tenant, OutboxMessage.kind == KIND_REQUEST)) or 0)
    finally:
        platform.sessions.remove()


def batch(url: str, email: str) -> dict[str, Any]:
    from bench.site import close_app, make_app, signed_in
    from examples.host_app.models import Staff
    from examples.host_app.testing import csrf_from, platform_of
    from samtycke_plugin.email import jobs

    app = make_app(url, migrate=False)
    staff = signed_in(app, email)
    t_preview = time.perf_counter()
    page = staff.get("/apps/samtycke/batch")  # the preview: who is mailed, who is left out
    preview_s = time.perf_counter() - t_preview
    platform = platform_of(app)
    tenant = str(platform.db().scalar(select(Staff.practice_id).where(Staff.email == email)))
    platform.sessions.remove()
    before = _requests_queued(app, tenant)
    t0 = time.perf_counter()
    # the confirm form: the CSRF token and the one-time key issued with the preview
    confirm = page.text[page.text.index('<form method="post" action="/apps/samtycke/batch">'):]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                             confirm[:confirm.index("</form>")]))
    assert fields.get("csrf_token") == csrf_from(page.text), "the preview has no confirm form"
    response = staff.post("/apps/samtycke/batch", data=fields)
    request_s = time.perf_counter() - t0
    at_response = _requests_queued(app, tenant) - before
    # The job, run as the relay runs it (its first step), in this process: its wall time
    # and the peak memory of running it.
    rss_start = _start_peak()
    t1 = time.perf_counter()
    with app.app_context():
        ran = jobs.run_pending(platform.host, tenant=tenant)
        platform.sessions.remove()
    job_s = time.perf_counter() - t1
    peak = _status_kb("VmHWM")
    queued = _requests_queued(app, tenant) - before
    close_app(app)
    return {"status": response.status_code, "location": response.headers.get("Location", ""),
            "preview_s": preview_s, "request_s": request_s, "job_s": job_s, "jobs_run": ran,
            "queued_at_response": at_response, "queued": queued, "rss_start_kb": rss_start,
            "peak_rss_kb": peak}


def verify(url: str, tenant: str) -> dict[str, Any]:
    from samtycke_plugin.cli import main as samtycke
    from samtycke_plugin.db import normalise_url

    rss_start = _start_peak()
    out = io.StringIO()
    t0 = time.perf_counter()
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            samtycke(["--database-url", normalise_url(url), "verify", "--tenant", tenant],
                     standalone_mode=False)
        except SystemExit as exc:
            code = int(exc.code or 0)
    elapsed = time.perf_counter() - t0
    return {"elapsed_s": elapsed, "exit": code, "output": out.getvalue().strip()[-300:],
            "rss_start_kb": rss_start, "peak_rss_kb": _status_kb("VmHWM")}


def export(url: str, email: str) -> dict[str, Any]:
    from bench.site import close_app, make_app, signed_in

    app = make_app(url, migrate=False)
    staff = signed_in(app, email)
    rss_start = _start_peak()
    t0 = time.perf_counter()
    response = staff.get("/clients/consent-status.csv", buffered=False)
    size = lines = 0
    for chunk in response.response:
        data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
        size += len(data)
        lines += data.count(b"\n")
    response.close()
    elapsed = time.perf_counter() - t0
    close_app(app)
    return {"status": response.status_code, "elapsed_s": elapsed, "bytes": size,
            "lines": lines, "rss_start_kb": rss_start, "peak_rss_kb": _status_kb("VmHWM")}


def main(argv: list[str]) -> int:
    command, *args = argv
    result = {"batch": batch, "verify": verify, "export": export}[command](*args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

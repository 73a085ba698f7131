"""The app's web pages as one WSGI application: public link pages (consent,
withdrawal, the client's own page) and practitioner pages (setup wizard, obtain consent,
text editing, history, batch requests, exports, the access log).  See
:mod:`samtycke_plugin.web.base` for what the host must put in the WSGI environ."""

from __future__ import annotations

from samtycke_plugin.web.base import WebApp, redact_path

__all__ = ["WebApp", "make_wsgi_app", "redact_path"]


def make_wsgi_app() -> WebApp:
    """The WSGI application a host mounts at :data:`samtycke_plugin.common.MOUNT_PREFIX`.

    Build it once, at start-up, and share it between threads: it holds no per-request
    state.  Building it compiles Werkzeug's URL rules with :mod:`ast`, which CPython
    3.11 does not make safe to run in two threads at once.
    """
    from samtycke_plugin.web import (
        access_page,
        clients,
        mypage,
        public,
        purposes_page,
        setup,
        texts,
    )

    return WebApp([
        *public.ROUTES, *setup.ROUTES, *texts.ROUTES, *purposes_page.ROUTES, *clients.ROUTES,
        *access_page.ROUTES, *mypage.ROUTES,
    ])

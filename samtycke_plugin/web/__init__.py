"""The app's web pages as one WSGI application: public link pages (consent,
withdrawal) and practitioner pages (setup wizard, obtain consent, text editing,
history, batch requests, exports).  See :mod:`samtycke_plugin.web.base` for what
the host must put in the WSGI environ."""

from __future__ import annotations

from samtycke_plugin.web.base import WebApp


def make_wsgi_app() -> WebApp:
    """The WSGI application a host mounts at :data:`samtycke_plugin.service.MOUNT_PREFIX`."""
    from samtycke_plugin.web import practice, public

    return WebApp([*public.ROUTES, *practice.ROUTES])

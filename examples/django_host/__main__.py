"""``python -m examples.django_host``: migrate, seed demo data, print the URL and the
demo logins, and serve the clinic on 127.0.0.1 (as ``python -m examples.host_app``)."""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        # Paths below the app's mount carry link tokens: no access log keeps them.
        return None


def _mail_worker(every: float) -> None:
    from django.db import connection

    from examples.django_host.clinic import samtycke_glue

    while True:
        time.sleep(every)
        try:
            samtycke_glue.send_outbox()
        except Exception:
            logging.getLogger(__name__).exception("sending queued e-mail failed; it stays queued")
        finally:
            connection.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.django_host",
                                     description="Run Kliniken, the example Django clinic.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--no-demo-data", action="store_true", help="do not add demo data")
    args = parser.parse_args(argv)

    base_url = os.environ.get("CLINIC_BASE_URL") or f"http://{args.host}:{args.port}"
    os.environ["CLINIC_BASE_URL"] = base_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_host.settings")
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)  # the clinic's tables and, by post_migrate, the app's
    from examples.django_host.clinic import demo_seed
    from examples.django_host.wsgi import application

    if not args.no_demo_data and demo_seed.seed():
        print("Demo data added (2 practices, their staff, clients and bookings).")
    threading.Thread(target=_mail_worker, args=(10.0,), daemon=True).start()
    database = settings.DATABASES["default"]
    print()
    print(f"  Kliniken (example Django clinic) runs at {base_url}/")
    print(f"  Database: {database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}")
    print(f"  E-mail: {settings.EMAIL_BACKEND}")
    if not args.no_demo_data:
        print("  Demo logins (user name / password):")
        for practice, user, password in demo_seed.logins():
            print(f"    {practice:<20} {user:<8} {password}")
    print("  Stop with Ctrl+C.")
    print(flush=True)  # the banner must show even when stdout is a pipe (process managers)
    with make_server(args.host, args.port, application, server_class=_ThreadingServer,
                     handler_class=_QuietHandler) as server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

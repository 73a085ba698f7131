"""``python -m examples.host_app``: migrate, seed demo data, print the URL and the demo
logins, and serve the platform on 127.0.0.1; ``python -m examples.host_app remind``:
send tomorrow's booking reminders (run it once a day, e.g. from cron)."""

from __future__ import annotations

import argparse
import logging
import os

from flask import Flask
from werkzeug.serving import run_simple

from examples.host_app import create_app, demo_seed, reminders
from examples.host_app.serving import redacting_handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.host_app",
                                     description="Run the Praktika example booking platform.")
    parser.add_argument("command", nargs="?", choices=("serve", "remind"), default="serve",
                        help="serve the platform (default), or send tomorrow's reminders")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on")
    parser.add_argument("--no-demo-data", action="store_true", help="do not add demo data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    base_url = os.environ.get("BOOKING_BASE_URL") or f"http://{args.host}:{args.port}"
    app = create_app({"BASE_URL": base_url})
    platform = app.extensions["booking"]
    if args.command == "remind":
        remind(app)
        return
    if not args.no_demo_data:
        if demo_seed.seed(platform):
            print("Demo data added (3 practices, their clients, bookings and consent history).")
        platform.settings["DEMO_LOGINS"] = demo_seed.logins()
    # Batch jobs and queued mail, outside the requests (in dev mode the mail of a form
    # is also sent right after it, so the mailbox shows it at once).
    platform.apps.start_worker(2.0 if platform.settings["DEV_MAILBOX"] else 15.0)

    url = platform.engine.url.render_as_string(hide_password=True)
    print()
    print(f"  Praktika (example booking platform with Samtycke) runs at {base_url}/")
    print(f"  Database: {url}")
    if platform.settings["DEV_MAILBOX"]:
        print(f"  E-mail goes to the development mailbox: {base_url}/dev/mailbox")
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print("  WARNING: the development mailbox (with every consent link) is open to "
                  "anyone who can reach this address. Set BOOKING_SMTP_HOST to turn it off.")
    if not args.no_demo_data:
        print("  Demo logins (e-mail / password):")
        for practice, email, password in demo_seed.logins():
            print(f"    {practice:<20} {email:<32} {password}")
    print("  Stop with Ctrl+C.")
    print(flush=True)  # the banner must show even when stdout is a pipe (process managers)
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False,
               request_handler=redacting_handler(platform.apps.log_path))


def remind(app: Flask) -> None:
    """Send every practice's reminders for tomorrow's bookings and say what was done."""
    platform = app.extensions["booking"]
    with app.app_context():
        try:
            batches = reminders.send_all(platform.db(), platform.now())
            for batch in batches:
                print(f"{batch.practice.name}: {len(batch.sent)} reminder(s) sent, "
                      f"{len(batch.not_allowed)} client(s) may not be contacted, "
                      f"{len(batch.no_email)} without an e-mail address")
            if not batches:
                print("No reminders are due.")
        finally:
            platform.sessions.remove()


if __name__ == "__main__":
    main()

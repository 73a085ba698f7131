"""``manage.py samtycke …``: the app's command line (``samtycke --help``), with the host
built from ``settings.SAMTYCKE["HOST"]`` on Django's database."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

#: The CLI's ``--host`` factory: the project's host, as the web process builds it.
HOST_FACTORY = "samtycke_plugin.integrations.django.runtime:build_host"


def run_cli(args: list[str], prog_name: str = "manage.py samtycke") -> int:
    """Run ``samtycke <args>`` against the project's host; returns the exit code."""
    from samtycke_plugin.cli import main

    try:
        main.main(args=["--host", HOST_FACTORY, *args], prog_name=prog_name)
    except SystemExit as exc:  # click always ends so; on an error it has printed why
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


class Command(BaseCommand):
    help = "Samtycke's command line (verify, export, outbox …) on this project's database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cli_args", nargs=argparse.REMAINDER,
                            help="the samtycke command and its options (try: --help)")

    def run_from_argv(self, argv: list[str]) -> None:
        # Every option goes to the app's click CLI as typed, --help included.
        raise SystemExit(run_cli(argv[2:], prog_name=f"{argv[0]} {argv[1]}"))

    def handle(self, *args: Any, **options: Any) -> None:
        code = run_cli([*options.get("cli_args", []), *args])
        if code:
            raise SystemExit(code)

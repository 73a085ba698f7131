"""Chromium for the browser tests: the Debian package at /usr/bin/chromium (never a
downloaded browser), driven by Playwright.  Under CI=true a missing browser or a
missing Playwright is a failure; elsewhere the test is skipped."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pytest
from hostkit import CI

CHROMIUM = os.environ.get("SAMTYCKE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def _unavailable(message: str) -> None:
    if CI:
        pytest.fail(f"{message} (required under CI=true)")
    pytest.skip(message)


def playwright_sync_api() -> Any:
    """``playwright.sync_api``, once the browser is known to be there."""
    if not Path(CHROMIUM).exists():
        _unavailable(f"Chromium not found at {CHROMIUM}")
    try:
        return importlib.import_module("playwright.sync_api")
    except ImportError as exc:
        _unavailable(f"Playwright cannot be imported: {exc}")
        raise  # not reached: _unavailable fails or skips


def launch(playwright: Any) -> Any:
    """Headless Chromium from the Debian package."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=CHROMIUM_ARGS)

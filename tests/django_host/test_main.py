"""``python -m examples.django_host`` migrates, seeds, prints the URL and the demo logins,
and serves the clinic (as ``python -m examples.host_app`` does)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django_support import ROOT


def test_python_m_examples_django_host_starts_and_prints_the_logins(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CLINIC_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
           "CLINIC_INSTANCE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for key in ("CLINIC_BASE_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(key, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.django_host", "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        printed = ""
        deadline = time.monotonic() + 90
        while "Stop with Ctrl+C" not in printed and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            printed += line
        assert f"runs at http://127.0.0.1:{port}/" in printed, printed
        assert "anna" in printed and "lugn-demo" in printed and "norr-demo" in printed
        body = ""
        for _attempt in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/book/lugn-och-ro/") as page:
                    body = page.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert "Boka tid hos Lugn &amp; Ro Massage" in body and "samtycke_consent" in body
    finally:
        process.terminate()
        process.wait(timeout=20)

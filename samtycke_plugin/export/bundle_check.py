"""Checking a proof bundle on its own, without the practice's database.

A bundle holds ``MANIFEST.sha256`` (the SHA-256 of every other file) and
``history.json``, whose events carry every field their ledger hash covers.  The check
recomputes each event's ``row_hash`` from those fields and its ``prev_hash`` (so a
field changed in ``history.json`` shows), and the SHA-256 of each attached scan
against the ``attachment_sha256`` its event recorded (so a swapped or altered scan
shows even with a rewritten manifest).  That the hashes belong to the practice's
unbroken chain is what ``verification.json`` and the signed checkpoints answer.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import datetime
from typing import Any

from samtycke_plugin.canonical import row_hash

MANIFEST = "MANIFEST.sha256"


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _fields(history: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """The event's chained fields (see :data:`samtycke_plugin.canonical.CHAINED_FIELDS`)."""
    return {
        "tenant_ref": history["practice"]["ref"],
        "seq": event["seq"],
        "client_ref": history["client"]["ref"],
        "state": event["state"],
        "text_version_id": event["text_version_id"],
        "text_major": event["text_major"],
        "text_sha256": event["text_sha256"],
        "language": event["language"],
        "channel": event["channel"],
        "method": event["method"],
        "actor": event["actor"],
        "given_at": _when(event["given_at"]),
        "occurred_at": _when(event["occurred_at"]),
        "expires_at": _when(event["expires_at"]),
        "booking_ref": event["booking_ref"],
        "request_id": event["request_id"],
        "evidence_sha256": event["evidence_sha256"],
        "purpose_key": event["purpose"],
        "change_note_sha256": event["change_note_sha256"],
        "attachment_sha256": event["attachment_sha256"],
    }


def _manifest_problems(zf: zipfile.ZipFile) -> list[str]:
    names = set(zf.namelist())
    if MANIFEST not in names:
        return [f"{MANIFEST} is missing"]
    listed: dict[str, str] = {}
    for line in zf.read(MANIFEST).decode("utf-8", "replace").splitlines():
        digest, _sep, name = line.partition("  ")
        listed[name] = digest
    problems = [f"{name}: listed in {MANIFEST} but not in the bundle"
                for name in sorted(set(listed) - names)]
    for name in sorted(names - {MANIFEST}):
        if name not in listed:
            problems.append(f"{name}: not listed in {MANIFEST}")
        elif hashlib.sha256(zf.read(name)).hexdigest() != listed[name]:
            problems.append(f"{name}: its SHA-256 differs from {MANIFEST}")
    return problems


def _event_problems(zf: zipfile.ZipFile, history: dict[str, Any]) -> list[str]:
    names = set(zf.namelist())
    problems = []
    for event in history["events"]:
        seq = event["seq"]
        try:
            fields = _fields(history, event)
        except (KeyError, TypeError, ValueError):
            problems.append(f"event #{seq}: history.json lacks fields its hash covers")
            continue
        if row_hash(event["prev_hash"], fields) != event["row_hash"]:
            problems.append(f"event #{seq}: its fields in history.json do not match its hash")
        scan = event.get("attachment")
        if event["attachment_sha256"] is None or scan is None or scan.get("erased"):
            continue
        name = scan.get("file")
        if name not in names:
            problems.append(f"event #{seq}: its attached scan is not in the bundle")
        elif hashlib.sha256(zf.read(name)).hexdigest() != event["attachment_sha256"]:
            problems.append(
                f"event #{seq}: the scan {name} does not match the SHA-256 the event recorded"
            )
    return problems


def check_bundle(data: bytes) -> list[str]:
    """What is wrong with a proof bundle (a ZIP file's bytes); empty when it checks."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            problems = _manifest_problems(zf)
            try:
                history = json.loads(zf.read("history.json"))
            except (KeyError, ValueError):
                return [*problems, "history.json is missing or not JSON"]
            return problems + _event_problems(zf, history)
    except zipfile.BadZipFile:
        return ["the file is not a ZIP file"]

"""The one-step proof bundle: everything needed to prove one client's consent, in one
ZIP file."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from samtycke_plugin import access_log, attachments
from samtycke_plugin.access_log import Viewer
from samtycke_plugin.common import check_ref, now_utc
from samtycke_plugin.db import run_in_transaction
from samtycke_plugin.export.common import csv_safe, csv_text, get_practice
from samtycke_plugin.export.history import (
    client_events,
    history_data,
    history_html,
    history_rows,
)
from samtycke_plugin.i18n import t
from samtycke_plugin.models import ConsentEvent
from samtycke_plugin.receipts import RECEIPT_STATES, receipt_for
from samtycke_plugin.rules import State

if TYPE_CHECKING:
    from hookspecs.host import Host

BUNDLE_FORMAT = "samtycke-proof-bundle/1"


def _bundle_readme(language: str, history: dict[str, Any]) -> str:
    client = history["client"]
    practice = history["practice"]
    chain = history["chain"]
    lines = [
        t(language, "Proof of consent"),
        "",
        t(language, "Practice: %(name)s (%(ref)s)", name=practice["name"] or practice["ref"],
          ref=practice["ref"]),
        t(language, "Client: %(name)s (reference %(ref)s)",
          name=client["name"] or t(language, "name not known (erased or unknown)"),
          ref=client["ref"]),
        t(language, "Produced: %(at)s", at=history["generated_at"]),
        "",
    ]
    if chain is not None and chain["ok"]:
        lines.append(t(
            language,
            "The practice's consent ledger was verified when this bundle was produced: "
            "%(n)s events, unbroken up to event #%(seq)s.",
            n=chain["events"], seq=chain["head_seq"],
        ))
    elif chain is not None:
        broken = chain["broken"]
        lines.append(t(
            language,
            "WARNING: the practice's consent ledger did NOT verify: the first broken event is "
            "#%(seq)s (%(kind)s).",
            seq=broken["seq"], kind=broken["kind"],
        ))
    if history["status"]["stored_differs"] is not None:
        lines.append(t(
            language,
            "WARNING: the status stored for this client does not match the ledger; the "
            "status shown here is the ledger's. Rebuild the stored status (samtycke "
            "rebuild-status).",
        ))
    if history["checkpoint"] is not None:
        lines.append(t(
            language,
            "The latest signed checkpoint covers event #%(seq)s (signed %(at)s with key "
            "%(key)s).",
            seq=history["checkpoint"]["seq"], at=history["checkpoint"]["created_at"],
            key=history["checkpoint"]["key_id"],
        ))
    lines += [
        "",
        t(language, "Files:"),
        t(language, "history.html: the history to read or print"),
        t(language, "history.json, history.csv: the same history for computers"),
        t(language, "receipts/: a standard receipt (Kantara, ISO/IEC TS 27560, DPV) per consent"),
        t(language, "texts/: the exact texts the client was shown"),
        t(language, "attachments/: the scans of signed paper forms, each named by its "
                    "SHA-256 in history.json and in the consent event's hash"),
        t(language, "verification.json: the ledger check and the latest checkpoint"),
        t(language, "access-log.csv: who has viewed or exported this client's consent data, "
                    "this download included"),
        t(language, "MANIFEST.sha256: the SHA-256 of every file in this bundle"),
        "",
    ]
    return "\n".join(lines)


def _scans(session: Session, tenant: str, history: dict[str, Any]) -> dict[str, bytes]:
    """The attached scans still held, as bundle files; each event's ``attachment``
    in ``history`` gets the name of its file."""
    files: dict[str, bytes] = {}
    client = history["client"]["ref"]
    for event in history["events"]:
        scan = event["attachment"]
        if scan is None or scan["erased"] or scan["missing"]:
            continue
        stored, data = attachments.content(session, tenant, client, scan["sha256"])
        scan["file"] = f"attachments/{stored.file_name}"
        files[scan["file"]] = data
    return files


def proof_bundle(
    host: Host, tenant: str, client: str, *, by: Viewer, locale: str | None = None
) -> bytes:
    """Everything needed to prove one client's consent, in one ZIP file.

    Contents: ``README.txt``, ``history.html``, ``history.json``, ``history.csv``,
    ``receipts/receipt-<seq>.json`` (one per consent given, given again, withdrawn or
    revoked), ``texts/text-<version>-<language>.md`` (the exact texts shown),
    ``attachments/scan-<hash>.<pdf|jpg|png>`` (the scans of signed paper forms still held),
    ``verification.json`` (the chain verified now and the latest checkpoint),
    ``access-log.csv`` (who has viewed or exported the client's data, ``by``'s
    download, recorded in the same transaction, included) and ``MANIFEST.sha256``.
    The practice's chain is verified once for all of them.
    """
    return run_in_transaction(host, lambda s: _bundle(s, host, tenant, client, by, locale))


def _bundle(
    session: Session, host: Host, tenant: str, client: str, by: Viewer, locale: str | None
) -> bytes:
    practice = get_practice(session, tenant)
    history = history_data(host, practice.tenant_ref, client, locale=locale)
    language = history["language"]
    access_log.record(session, host, practice.tenant_ref, by, "download_bundle",
                      client=history["client"]["ref"], detail=f"locale={language}")
    files: dict[str, bytes] = _scans(session, practice.tenant_ref, history)
    files["access-log.csv"] = csv_text(
        [csv_safe(cell) for cell in row]
        for row in access_log.csv_rows(access_log.all_entries(
            host, practice.tenant_ref, client=history["client"]["ref"]))
    ).encode()
    files["history.json"] = (json.dumps(history, ensure_ascii=False, indent=2) + "\n").encode()
    files["history.csv"] = csv_text(history_rows(history)).encode()
    files["history.html"] = history_html(session, history).encode()
    event_ids = [
        ev.id for ev, _ in client_events(session, practice.tenant_ref, history["client"]["ref"])
        if State(ev.state) in RECEIPT_STATES and ev.text_version_id
    ]
    for event_id in event_ids:
        event = session.get(ConsentEvent, event_id)
        assert event is not None
        receipt = receipt_for(host, event)
        files[f"receipts/receipt-{event.seq:06d}.json"] = (
            json.dumps(receipt, ensure_ascii=False, indent=2) + "\n"
        ).encode()
    for text in history["texts"]:
        name = f"texts/text-{text['version']}-{text['language']}.md"
        files[name] = text["body"].encode()
    files["verification.json"] = (
        json.dumps(
            {"format": BUNDLE_FORMAT, "chain": history["chain"],
             "status": {"ok": history["status"]["stored_differs"] is None,
                        "detail": history["status"]["stored_differs"]},
             "checkpoint": history["checkpoint"]},
            ensure_ascii=False, indent=2,
        )
        + "\n"
    ).encode()
    files["README.txt"] = _bundle_readme(language, history).encode()
    manifest = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items())
    )
    files["MANIFEST.sha256"] = manifest.encode()
    stamp = now_utc(host).timetuple()[:6]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in ("README.txt", *sorted(n for n in files if n != "README.txt")):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return buf.getvalue()


def bundle_filename(tenant: str, client: str, at: datetime) -> str:
    """A safe file name for a proof bundle."""
    return f"samtycke-proof-{check_ref('tenant', tenant)}-{check_ref('client', client)}-" + (
        at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") + ".zip"
    )


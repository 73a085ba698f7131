"""Proof of paper consent: the text version the client signed and the scan of the form.

A practitioner who records consent given on paper names the text version the client
signed (by default the one in force on the day they signed, see
:func:`samtycke_plugin.rules.text_in_force`) and may attach a scan or photo of the
signed form.  The app stores the file itself (``samtycke_attachment``), one row per
practice, client and content; the consent event names it by its SHA-256
(``attachment_sha256``), which the hash chain covers, so the file cannot be swapped
without the ledger showing it.

What a file is comes from its first bytes, never from the browser's content type or
the file name: only PDF, JPEG and PNG are taken.  Erasure of the client empties the
stored bytes and keeps the hash, the type and the size (no personal data), so the
chain still verifies and the history says the scan was removed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime

from attrs import frozen
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from samtycke_plugin.common import check_ref
from samtycke_plugin.errors import InputError, NotFound
from samtycke_plugin.i18n import N_, lang
from samtycke_plugin.models import Attachment, ConsentEvent, Practice, TextVersion
from samtycke_plugin.practice_texts import current_text, text_versions
from samtycke_plugin.rules import VersionFacts, text_in_force

#: The largest scan or photo taken (bytes).
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024

#: Content type → (the bytes a file of it starts with, its file-name extension).
MAGIC: dict[str, tuple[bytes, str]] = {
    "application/pdf": (b"%PDF-", "pdf"),
    "image/jpeg": (b"\xff\xd8\xff", "jpg"),
    "image/png": (b"\x89PNG\r\n\x1a\n", "png"),
}

TOO_LARGE = N_(
    "The file is larger than 10 MB, so nothing was saved. Scan the form at a lower "
    "resolution or as a PDF, and attach it again."
)
WRONG_TYPE = N_(
    "The file is not a PDF, JPEG or PNG file, so nothing was saved. Save the scan or "
    "photo in one of those formats and attach it again."
)
EMPTY = N_("The attached file is empty, so nothing was saved. Choose the file again.")


class AttachmentRefused(InputError):
    """The file cannot be attached; the message is a sentence for the practitioner."""

    def __init__(self, message: str) -> None:
        super().__init__("attachment", message)
        self.reason = message


def sniff(data: bytes) -> str | None:
    """The content type a file's first bytes say it has (PDF, JPEG, PNG), or ``None``."""
    for content_type, (magic, _ext) in MAGIC.items():
        if data.startswith(magic):
            return content_type
    return None


def check(data: bytes) -> str:
    """The file's content type, after checking its size and first bytes
    (:class:`AttachmentRefused` with the reason otherwise)."""
    if not data:
        raise AttachmentRefused(EMPTY)
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise AttachmentRefused(TOO_LARGE)
    content_type = sniff(data)
    if content_type is None:
        raise AttachmentRefused(WRONG_TYPE)
    return content_type


def extension(content_type: str) -> str:
    return MAGIC[content_type][1] if content_type in MAGIC else "bin"


def store(session: Session, tenant: str, client: str, data: bytes, *, now: datetime) -> str:
    """Keep the file for the client (once per content) and return its SHA-256."""
    content_type = check(data)
    digest = hashlib.sha256(data).hexdigest()
    found = session.scalar(
        select(Attachment).where(Attachment.tenant_ref == tenant,
                                 Attachment.client_ref == client, Attachment.sha256 == digest)
    )
    if found is None:
        session.add(Attachment(
            tenant_ref=tenant, client_ref=client, sha256=digest, content_type=content_type,
            size=len(data), data=data, created_at=now,
        ))
    elif found.data is None:  # erased before and attached again: the new record has it
        found.data, found.erased_at = data, None
    session.flush()
    return digest


def signed_text(
    session: Session, practice: Practice, purpose: str, text_id: int | None,
    language: str | None, signed_at: datetime,
) -> TextVersion:
    """The text version a paper form showed: ``text_id`` when the practitioner chose one
    (a version of this practice and purpose, else :class:`NotFound`), otherwise the one
    in force on the day the client signed, in their language."""
    versions = text_versions(session, practice.tenant_ref, purpose)
    if text_id is None:
        facts = [VersionFacts(id=v.id, language=v.language, major=v.major, minor=v.minor,
                              created_at=v.created_at) for v in versions]
        text_id = text_in_force(facts, signed_at, [lang(language), practice.default_language])
        if text_id is None:
            return current_text(session, practice, language, purpose)  # says there is none
    for version in versions:
        if version.id == text_id:
            return version
    raise NotFound(N_("No such text version for this purpose."))


@frozen(kw_only=True)
class Stored:
    """An attachment as the history and the proof show it."""

    sha256: str
    content_type: str
    size: int
    erased: bool

    @property
    def kind(self) -> str:
        """PDF, JPG or PNG."""
        return extension(self.content_type).upper()

    @property
    def kilobytes(self) -> int:
        return max(1, round(self.size / 1024))

    @property
    def file_name(self) -> str:
        return f"scan-{self.sha256[:16]}.{extension(self.content_type)}"


def _stored(row: Attachment) -> Stored:
    return Stored(sha256=row.sha256, content_type=row.content_type, size=row.size,
                  erased=row.data is None)


def of_client(session: Session, tenant: str, client: str) -> dict[str, Stored]:
    """The client's attachments by SHA-256."""
    rows = session.scalars(
        select(Attachment).where(Attachment.tenant_ref == tenant,
                                 Attachment.client_ref == client)
    )
    return {row.sha256: _stored(row) for row in rows}


def content(session: Session, tenant: str, client: str, digest: str) -> tuple[Stored, bytes]:
    """One attachment of the client that an event names, with its bytes
    (:class:`NotFound` for any other, or once erased)."""
    tenant, client = check_ref("tenant", tenant), check_ref("client", client)
    named = session.scalar(
        select(ConsentEvent.id).where(
            ConsentEvent.tenant_ref == tenant, ConsentEvent.client_ref == client,
            ConsentEvent.attachment_sha256 == digest,
        ).limit(1)
    )
    row = session.scalar(
        select(Attachment).where(Attachment.tenant_ref == tenant,
                                 Attachment.client_ref == client, Attachment.sha256 == digest)
    )
    if named is None or row is None or row.data is None:
        raise NotFound(N_("No such attachment for this client."))
    return _stored(row), row.data


def erase(session: Session, tenant: str, client: str, *, now: datetime) -> int:
    """Empty the bytes of the client's attachments; how many held bytes."""
    result = session.execute(
        update(Attachment)
        .where(Attachment.tenant_ref == tenant, Attachment.client_ref == client,
               Attachment.data.is_not(None))
        .values(data=None, erased_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def problems(
    session: Session, tenant: str, erased_after: dict[str, int]
) -> Iterator[tuple[int, str]]:
    """``(seq, what)`` of every event whose attachment is not what the chain says: bytes
    that no longer hash to it, or bytes gone without a later erasure of the client."""
    rows = session.execute(
        select(ConsentEvent.seq, ConsentEvent.client_ref, ConsentEvent.attachment_sha256,
               Attachment.data)
        .outerjoin(Attachment, (Attachment.tenant_ref == ConsentEvent.tenant_ref)
                   & (Attachment.client_ref == ConsentEvent.client_ref)
                   & (Attachment.sha256 == ConsentEvent.attachment_sha256))
        .where(ConsentEvent.tenant_ref == tenant, ConsentEvent.attachment_sha256.is_not(None))
        .order_by(ConsentEvent.seq)
    )
    for seq, client, digest, data in rows:
        if data is None:
            if erased_after.get(client, 0) <= seq:
                yield seq, f"the scan attached to event #{seq} was removed without an erasure"
        elif hashlib.sha256(data).hexdigest() != digest:
            yield seq, f"the scan attached to event #{seq} was altered"

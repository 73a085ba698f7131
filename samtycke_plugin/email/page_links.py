"""Links to a client's own page ("Mina samtycken"): issued, opened, revoked.

A page link carries a 256-bit token derived like the mailed links'
(:func:`samtycke_plugin.email.tokens.derive_token`, purpose ``page``) from the practice,
the client and a random nonce; the database stores the nonce and ``sha256(token)``
only.  The relay derives the token again when it renders a mail, so a mail resent
after a crash carries the same link.

A page link has no expiry: the client's page is where they withdraw, and withdrawal
is possible at any time.  Issuing a link makes a new one and leaves the older ones
valid (a client may keep any of their mails); the practice revokes all of a client's
links at once (:func:`revoke_all`), after which only a newly issued link works.  A
link is bound to one practice and one client: everything the page shows or records
is that client's in that practice.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING

from attrs import frozen
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from hookspecs.types import ClientInfo, ClientRef, TenantRef
from samtycke_plugin import common, hostdb
from samtycke_plugin.email.tokens import TOKEN_RE, derive_token, link_key, token_hash
from samtycke_plugin.errors import InputError
from samtycke_plugin.models import PageLink, Practice

if TYPE_CHECKING:
    from hookspecs.host import Host

#: The ``purpose`` a page token is derived with (never a mailed link's).
PAGE = "page"

#: Path segment of the client's page (below :data:`common.MOUNT_PREFIX`).
PAGE_PATH = "mina"


def page_path(token: str) -> str:
    return f"{common.MOUNT_PREFIX}/{PAGE_PATH}/{token}"


def wish_path(tenant: str) -> str:
    """The practice's public "send me my link" form (below the mount)."""
    return f"{common.MOUNT_PREFIX}/p/{tenant}/mina"


def _token(key: bytes, row: PageLink) -> str:
    return derive_token(key, tenant=row.tenant_ref, client=row.client_ref, purpose=PAGE,
                        text_version_id=None, nonce=row.nonce)


def issue(session: Session, host: Host, tenant: str, client: str, *, actor: str) -> int:
    """A new link to the client's page (older ones stay valid); its id.  In the caller's
    transaction."""
    nonce = secrets.token_urlsafe(32)
    token = derive_token(link_key(host), tenant=tenant, client=client, purpose=PAGE,
                         text_version_id=None, nonce=nonce)
    return int(session.execute(
        insert(PageLink).values(
            tenant_ref=tenant, client_ref=client, token_hash=token_hash(token), nonce=nonce,
            created_at=common.now_utc(host), created_by=actor[:160], revoked_at=None,
        ).returning(PageLink.id)
    ).scalar_one())


def url_of(session: Session, host: Host, link_id: int) -> str | None:
    """The absolute URL of a stored, unrevoked page link (``None``: gone or revoked)."""
    row = session.get(PageLink, link_id)
    if row is None or row.revoked_at is not None:
        return None
    token = _token(link_key(host), row)
    if token_hash(token) != row.token_hash:  # the host's secret changed since
        return None
    return host.absolute_url(TenantRef(row.tenant_ref), page_path(token))


def new_url(host: Host, tenant: str, client: str, *, actor: str) -> str:
    """Issue a link to the client's page and give its absolute URL (in the caller's
    transaction, or the host's open one)."""
    with hostdb.session(host) as session:
        link_id = issue(session, host, tenant, client, actor=actor)
        url = url_of(session, host, link_id)
        assert url is not None
        return url


def url_for_client(host: Host, tenant: str, client: str) -> str | None:
    """A new link to the client's page for a mail the host writes (its booking
    confirmation), in the host's open transaction; ``None`` for a practice that has not
    set the app up or a client unknown in it."""
    from samtycke_plugin import practices

    with hostdb.in_host_transaction(host, write=True) as session:
        try:
            tenant, client = common.check_ref("tenant", tenant), common.check_ref("client", client)
        except InputError:
            return None
        practice = practices.get_practice(session, tenant)
        if not practices.is_operational(practice):
            return None
        if host.lookup_client(TenantRef(tenant), ClientRef(client)) is None:
            return None
        link_id = issue(session, host, tenant, client, actor="system:host_mail")
        return url_of(session, host, link_id)


def revoke_all(host: Host, tenant: str, client: str) -> int:
    """Revoke every link to the client's page in this practice (mails already sent then
    open the "link no longer works" page); how many were revoked."""
    with hostdb.session(host) as session:
        done = session.execute(
            update(PageLink)
            .where(PageLink.tenant_ref == common.check_ref("tenant", tenant),
                   PageLink.client_ref == common.check_ref("client", client),
                   PageLink.revoked_at.is_(None))
            .values(revoked_at=common.now_utc(host))
        )
        return int(done.rowcount or 0)  # type: ignore[attr-defined]


def active_count(host: Host, tenant: str, client: str) -> int:
    """How many links to the client's page work now."""
    with hostdb.session(host) as session:
        return len(session.scalars(
            select(PageLink.id).where(PageLink.tenant_ref == tenant,
                                      PageLink.client_ref == client,
                                      PageLink.revoked_at.is_(None))
        ).all())


class PageProblem(Exception):
    """A page link that cannot be used: ``unknown`` (matches no link: malformed,
    forged, guessed, or its client was erased), ``revoked`` (the practice revoked it),
    ``gone`` (the client no longer exists in the practice).  ``tenant`` names the
    practice when the link was real."""

    def __init__(self, kind: str, tenant: str | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.tenant = tenant


@frozen(kw_only=True)
class Page:
    """An open page link: its practice and client (as the host knows them now)."""

    link_id: int
    token_hash: str
    practice: Practice
    client: ClientInfo

    @property
    def tenant(self) -> str:
        return self.practice.tenant_ref

    @property
    def client_ref(self) -> str:
        return str(self.client.ref)


def open_page(host: Host, token: str) -> Page:
    """Find a usable page link (read only).  Raises :class:`PageProblem`.  It works
    whether or not the practice has the app active (withdrawal is possible at any
    time)."""
    if not isinstance(token, str) or not TOKEN_RE.match(token):
        raise PageProblem("unknown")
    digest = token_hash(token)
    with hostdb.session(host) as session:
        row = session.scalars(
            select(PageLink).where(PageLink.token_hash == digest)
            .execution_options(populate_existing=True)
        ).first()
        if row is None or not hmac.compare_digest(_token(link_key(host), row), token):
            raise PageProblem("unknown")
        practice = session.get(Practice, row.tenant_ref, populate_existing=True)
        if practice is None:
            raise PageProblem("unknown")
        if row.revoked_at is not None:
            raise PageProblem("revoked", row.tenant_ref)
        info = host.lookup_client(TenantRef(row.tenant_ref), ClientRef(row.client_ref))
        if info is None:
            raise PageProblem("gone", row.tenant_ref)
        return Page(link_id=row.id, token_hash=digest, practice=practice, client=info)

"""Hook specifications: every place a booking platform calls its apps.

Conventions (from pluggy, pytest and datasette):

* Every hook receives ``host`` (a :class:`hookspecs.host.Host`) first.
* Hosts call hooks with keyword arguments and pass every argument; apps never
  declare defaults on implementations.
* Collect-style hooks return a list (or ``None`` for "nothing"); the host
  flattens, rejects duplicate keys and sorts deterministically
  (:class:`hookspecs.facade.AppHooks` does this).
* Hooks marked "first result" stop at the first non-``None`` result.
* Per-tenant activation is filtered by the host: an app's hooks are only
  called for practices where the app is active (except the activation hooks
  and ``booking_app_info``).
* ``booking_consent_changed`` goes the other way: an app calls it, through the
  facade the host built (:meth:`hookspecs.facade.AppHooks.consent_changed`), and the
  platform's other apps implement it.
* Write hooks (activation, deactivation, ``booking_submitted``,
  ``booking_client_created``, ``booking_client_erased``) run inside the host's
  open transaction on :meth:`hookspecs.host.Host.connection`; called without one
  they raise :class:`hookspecs.types.NoHostTransaction` and write nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hookspecs import hookspec

if TYPE_CHECKING:
    from hookspecs.host import Host
    from hookspecs.types import (
        AppInfo,
        BookingFormContext,
        BookingRef,
        BookingSubmission,
        ClientCreated,
        ClientRef,
        ConsentAnswer,
        ConsentChange,
        FilterClause,
        FormFragment,
        ListFilter,
        ProfilePanel,
        RowBadge,
        StaffContext,
        TenantRef,
        Veto,
        WebMount,
    )


class BookingSpecs:
    """The host → app hooks."""

    # -- the app menu ---------------------------------------------------------

    @hookspec
    def booking_app_info(self, host: Host) -> AppInfo | None:
        """Describe the app for the host's app menu.

        When: once when the host builds its app menu (and to map plugins to apps).

        :param host: the host.
        :returns: the app's :class:`AppInfo`; every app answers (not first result).
        """

    @hookspec
    def booking_app_activated(
        self, host: Host, tenant: TenantRef, app: str, settings: Mapping[str, object]
    ) -> None:
        """An app was activated for a practice.

        When: the practitioner activates ``app`` in the app menu (and again on
        reactivation). Called for every app; an implementation returns at once
        unless ``app`` is its own key. Runs inside the host's transaction.
        Must be idempotent: reactivation resumes with the data kept at deactivation.

        :param host: the host.
        :param tenant: the practice.
        :param app: the key of the app being activated (:attr:`AppInfo.key`).
        :param settings: settings as plain data (may be empty for defaults); unknown
            keys or bad values raise :class:`ValueError` naming the field.
        :returns: nothing.
        """

    @hookspec
    def booking_app_deactivated(self, host: Host, tenant: TenantRef, app: str) -> None:
        """An app was deactivated for a practice.

        When: the practitioner deactivates ``app``. All data is kept.

        :param host: the host.
        :param tenant: the practice.
        :param app: the key of the app being deactivated.
        :returns: nothing.
        """

    @hookspec
    def booking_web_mounts(self, host: Host) -> Sequence[WebMount] | None:
        """WSGI applications the host mounts (public pages and practitioner pages).

        When: once at host start-up.  The host sets ``environ["booking.host"]`` to
        itself on every request it forwards, and for signed-in practitioners also
        ``environ["booking.tenant"]`` (:class:`TenantRef`),
        ``environ["booking.staff"]`` (:class:`StaffContext`, whose ``permissions``
        the apps check on every practitioner page) and
        ``environ["booking.session"]`` (``str``: names the host's sign-in session and
        is new at every sign-in; apps bind their form tokens to it and refuse
        practitioner POSTs without it; they never store or log it, and a host whose
        session key is itself the credential passes a hash of it) — all from the host's
        own session, never from request data; optionally ``environ["booking.locale"]``,
        ``environ["booking.home"]`` (``(path, label)`` of a "back to the platform"
        link) and ``environ["booking.sign_in"]`` (the root-relative path of the host's
        sign-in page: a signed-out visitor of a practitioner page is sent there, with
        ``next`` set to the page, instead of getting "not found").

        :param host: the host.
        :returns: the mounts; prefixes must not collide.
        """

    # -- online booking -------------------------------------------------------

    @hookspec
    def booking_form_render(
        self, host: Host, form: BookingFormContext
    ) -> Sequence[FormFragment] | None:
        """Extra fields and notices for the online booking form.

        When: the host renders its public booking form for ``form.tenant``.

        :param host: the host.
        :param form: who is booking and in which language.
        :returns: fragments (already-escaped HTML) or ``None``.
        """

    @hookspec
    def booking_submit_check(
        self, host: Host, submission: BookingSubmission
    ) -> Sequence[Veto] | None:
        """Check a booking before anything is written (phase 1 of 2).

        When: the host has validated its own fields and is about to accept the
        booking.  Must not write.  Business rules are returned as vetoes, never
        raised; an exception is a bug or an outage and the facade turns it into a
        retryable veto (fail closed).

        :param host: the host.
        :param submission: the submitted booking.
        :returns: vetoes (the booking must not be accepted) or ``None``/``[]``.
        """

    @hookspec
    def booking_submitted(
        self,
        host: Host,
        submission: BookingSubmission,
        booking: BookingRef,
        client: ClientRef,
    ) -> None:
        """Record what the booking means for the app (phase 2 of 2).

        When: inside the host's transaction, after its booking row is flushed and
        before commit, for online bookings that passed the check and for bookings
        made by staff (``submission.channel``).  Apps write through
        ``host.connection()`` and never commit, so the booking and the evidence commit
        or roll back together.  An exception aborts the host's transaction.

        :param host: the host.
        :param submission: the booking as checked.
        :param booking: the host's booking reference.
        :param client: the client the booking belongs to (created if new).
        :returns: nothing.
        """

    @hookspec
    def booking_client_created(self, host: Host, created: ClientCreated) -> None:
        """A client was created.

        When: inside the host's transaction, after the client row is flushed.

        :param host: the host.
        :param created: which client, by whom, when.
        :returns: nothing.
        """

    # -- practitioner views ---------------------------------------------------

    @hookspec
    def booking_client_profile_render(
        self,
        host: Host,
        tenant: TenantRef,
        client: ClientRef,
        staff: StaffContext,
        locale: str,
    ) -> Sequence[ProfilePanel] | None:
        """Panels (badge, reason, actions) for a client's profile page.

        When: a signed-in practitioner opens the client profile.

        :param host: the host.
        :param tenant: the practice of the signed-in practitioner.
        :param client: the client shown.
        :param staff: the practitioner (actions depend on their permissions).
        :param locale: the page language.
        :returns: panels or ``None``.
        """

    @hookspec
    def booking_client_list_filters(
        self, host: Host, tenant: TenantRef, locale: str
    ) -> Sequence[ListFilter] | None:
        """Filters the app offers on the client list.

        When: the host renders the filter menu of its client list.

        :param host: the host.
        :param tenant: the practice.
        :param locale: the page language.
        :returns: filters or ``None``.
        """

    @hookspec(firstresult=True)
    def booking_client_list_filter_clause(
        self,
        host: Host,
        tenant: TenantRef,
        filter_key: str,
        client_ref_column: str,
    ) -> FilterClause | None:
        """A SQL condition implementing one list filter, for the host's own client query.

        When: the host builds its client-list query with a filter chosen by the user.
        The host adds ``clause.condition`` (SQL text with bound parameters) to its
        WHERE; ordering, paging and counting stay the host's.
        Stops at the first non-``None`` result.

        :param host: the host.
        :param tenant: the practice.
        :param filter_key: a key from :meth:`booking_client_list_filters`.
        :param client_ref_column: a SQL expression of the host's query that gives the
            client reference as text, e.g. ``CAST(booking_client.id AS TEXT)``.  It is
            the host's own code, never request data; the app places it in the
            condition as it is.
        :returns: the clause, or ``None`` when ``filter_key`` is not this app's.
        """

    @hookspec
    def booking_client_list_badges(
        self,
        host: Host,
        tenant: TenantRef,
        clients: Sequence[ClientRef],
        locale: str,
    ) -> Sequence[RowBadge] | None:
        """Badges for one page of the client list, in one query.

        When: the host renders a page of its client list.

        :param host: the host.
        :param tenant: the practice.
        :param clients: the clients on the page (any order).
        :param locale: the page language.
        :returns: at most one badge per client per app, or ``None``.
        """

    # -- data protection ------------------------------------------------------

    @hookspec
    def booking_client_erased(self, host: Host, tenant: TenantRef, client: ClientRef) -> None:
        """A client is being erased (GDPR Art. 17).

        When: inside the host's erasure transaction, before the client row goes.
        Apps remove the personal data they hold for the client and keep only what
        they must keep as pseudonymous proof.

        :param host: the host.
        :param tenant: the practice.
        :param client: the client being erased.
        :returns: nothing.
        """

    # -- the platform's other apps ---------------------------------------------------------

    @hookspec(firstresult=True)
    def booking_consent_lookup(
        self, host: Host, tenant: TenantRef, clients: Sequence[ClientRef], purpose: str
    ) -> Mapping[ClientRef, ConsentAnswer] | None:
        """May these clients' data be used for ``purpose`` now?  One query for all of them.

        When: the host or another app (a reminder mailer, a newsletter) is about to use
        clients' data for a purpose that rests on consent, e.g. before sending
        reminders or to mark the client list.  Reads only, in the host's transaction if
        one is open.  Stops at the first non-``None`` result.

        :param host: the host.
        :param tenant: the practice.
        :param clients: the clients asked about (any order, any number).
        :param purpose: the purpose's key, e.g. ``care``; a key the practice does not
            have raises :class:`hookspecs.types.UnknownPurpose`.
        :returns: an answer for every client asked about (clients without any record
            get ``may_use=False`` and status ``unknown``), or ``None`` from an app that
            does not keep consent.
        """

    @hookspec(firstresult=True)
    def booking_client_consent_page(
        self, host: Host, tenant: TenantRef, client: ClientRef
    ) -> str | None:
        """The link to the client's own consent page, for the host's own mails.

        When: the host writes a mail to a client (a booking confirmation, a reminder)
        and wants it to say where the client sees, gives and withdraws their consents.
        Call it in the host's open transaction: each call issues a new long-lived link
        (older ones keep working until the practice revokes them), committed with the
        host's work.  Stops at the first non-``None`` result.

        :param host: the host.
        :param tenant: the practice.
        :param client: the client the mail goes to.
        :returns: an absolute URL to put into the mail as it is, or ``None`` from an app
            that keeps no consent, for a practice that has not set the app up, or for a
            client unknown in ``tenant``.
        """

    @hookspec
    def booking_consent_changed(self, host: Host, change: ConsentChange) -> None:
        """A client's consent to a purpose changed, and the change is committed.

        When: called by an app that keeps consent, not by the host, after the
        transaction that changed the consent committed: once per (practice, client,
        purpose) changed in it, with the status read after the commit; never for work
        that was rolled back.  Only apps active for ``change.tenant`` are called.  An
        exception is logged and does not affect the committed change or the other
        implementations.  Changes made inside the host's transaction (a booking) are
        signalled only when the host implements :class:`hookspecs.host.OnCommit`.

        :param host: the host.
        :param change: who, which purpose and the new status.
        :returns: nothing.
        """

"""A small typed facade over the untyped pluggy relay, for hosts.

It loads apps from the entry-point group (tolerating a broken app unless
``strict``), validates registrations, filters apps by per-tenant activation,
flattens and type-checks results, rejects duplicate keys, sorts
deterministically, and turns an exception in the booking check into a
retryable veto (fail closed).  It is also the way an app reaches the platform's other
apps (``booking_consent_changed``): :func:`hooks_of` gives the facade built for a host.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from hookspecs import ENTRY_POINT_GROUP, PROJECT
from hookspecs.spec import BookingSpecs
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

if TYPE_CHECKING:
    from hookspecs.host import Host

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Shown when an app's booking check fails unexpectedly (fail closed).
CHECK_FAILED = {
    "sv": "Vi kunde inte kontrollera din bokning just nu. Försök igen om en liten stund.",
    "en": "We could not check your booking just now. Please try again in a moment.",
}


class DuplicateKeyError(ValueError):
    """Two apps returned results with the same key."""


#: The facade most recently built for each host (see :func:`hooks_of`).
_FACADES: weakref.WeakKeyDictionary[object, AppHooks] = weakref.WeakKeyDictionary()


def hooks_of(host: object) -> AppHooks | None:
    """The :class:`AppHooks` most recently built for ``host``, or ``None``: how an app
    calls the hooks the platform's other apps implement (``booking_consent_changed``)."""
    try:
        return _FACADES.get(host)
    except TypeError:  # a host that cannot be weakly referenced or hashed
        return None


def make_plugin_manager(
    *,
    load_entrypoints: bool = True,
    blocked: Iterable[str] = (),
    plugins: Iterable[tuple[str, object]] = (),
    strict: bool = False,
) -> pluggy.PluginManager:
    """Build a plugin manager with the booking hookspecs and the installed apps.

    :param load_entrypoints: load apps from :data:`hookspecs.ENTRY_POINT_GROUP`.
    :param blocked: entry-point names not to load.
    :param plugins: extra ``(name, plugin)`` pairs to register (the host's own).
    :param strict: re-raise when an app fails to load instead of logging and skipping it.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(BookingSpecs)
    for name in blocked:
        pm.set_blocked(name)
    if load_entrypoints:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception:
                if strict:
                    raise
                log.exception("app %r failed to load and was skipped", ep.name)
    for name, plugin in plugins:
        pm.register(plugin, name=name)
    pm.check_pending()
    return pm


def _flatten(results: Iterable[Sequence[T] | None], kind: type[T], hook: str) -> list[T]:
    out: list[T] = []
    for result in results:
        if result is None:
            continue
        for item in result:
            if not isinstance(item, kind):
                raise TypeError(f"{hook} returned {type(item).__name__}, expected {kind.__name__}")
            out.append(item)
    return out


def _unique(items: list[T], key: Callable[[T], str], hook: str) -> list[T]:
    seen: set[str] = set()
    for item in items:
        k = key(item)
        if k in seen:
            raise DuplicateKeyError(f"{hook}: two apps returned the key {k!r}")
        seen.add(k)
    return items


class AppHooks:
    """Typed calls into the installed apps, as a host makes them.

    :param pm: the plugin manager (see :func:`make_plugin_manager`).
    :param host: the host object passed into every hook.
    :param active_apps: the app keys active for a tenant.
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        host: Host,
        active_apps: Callable[[TenantRef], Iterable[str]],
    ) -> None:
        self.pm = pm
        self.host = host
        self._active_apps = active_apps
        self._plugin_app: dict[int, str] = {}
        self._infos: dict[str, AppInfo] = {}
        for impl in pm.hook.booking_app_info.get_hookimpls():
            info = impl.function(**{a: host for a in impl.argnames})
            if isinstance(info, AppInfo):
                if info.key in self._infos:
                    raise DuplicateKeyError(f"two apps use the key {info.key!r}")
                self._infos[info.key] = info
                self._plugin_app[id(impl.plugin)] = info.key
        self._callers: dict[tuple[str, frozenset[str]], Any] = {}
        try:
            _FACADES[host] = self
        except TypeError:  # the host then gets no signals from apps (documented)
            log.warning("%s cannot be weakly referenced: apps cannot signal changes",
                        type(host).__name__)

    # -- plumbing -----------------------------------------------------------------

    def apps(self) -> list[AppInfo]:
        """The installed apps, sorted by key."""
        return [self._infos[k] for k in sorted(self._infos)]

    def _caller(self, hook: str, tenant: TenantRef) -> Any:
        active = frozenset(self._active_apps(tenant))
        cache_key = (hook, active)
        caller = self._callers.get(cache_key)
        if caller is None:
            remove = [
                p
                for p in self.pm.get_plugins()
                if self._plugin_app.get(id(p), None) not in (None, *active)
            ]
            caller = (
                self.pm.subset_hook_caller(hook, remove_plugins=remove)
                if remove
                else getattr(self.pm.hook, hook)
            )
            self._callers[cache_key] = caller
        return caller

    # -- the app menu ---------------------------------------------------------------

    def menu(self, tenant: TenantRef, locale: str) -> list[dict[str, Any]]:
        """Every installed app for the host's app menu, by key: ``key``, ``name`` and
        ``description`` in ``locale``, ``version``, ``active`` for ``tenant`` and
        ``setup_path`` (a root-relative path: link to it as it is)."""
        active = set(self._active_apps(tenant))
        return [
            {
                "key": info.key,
                "name": info.name.get(locale, info.key),
                "description": info.description.get(locale, ""),
                "version": info.version,
                "active": info.key in active,
                "setup_path": info.setup_path,
            }
            for info in self.apps()
        ]

    def switch(
        self, tenant: TenantRef, app: str, active: bool, settings: Mapping[str, object]
    ) -> str | None:
        """Tell the apps that the host has just switched ``app`` on or off for ``tenant``
        (in its transaction, after storing it); returns the app's setup page path when
        switched on.  Empty ``settings``: the app's set-up wizard asks the practitioner."""
        if not active:
            self.deactivate(tenant, app)
            return None
        self.activate(tenant, app, settings)
        return self._infos[app].setup_path

    def activate(self, tenant: TenantRef, app: str, settings: Mapping[str, object]) -> None:
        """Tell the apps that ``app`` was activated for ``tenant``."""
        if app not in self._infos:
            raise KeyError(f"no installed app has the key {app!r}")
        self.pm.hook.booking_app_activated(
            host=self.host, tenant=tenant, app=app, settings=settings
        )

    def deactivate(self, tenant: TenantRef, app: str) -> None:
        """Tell the apps that ``app`` was deactivated for ``tenant``."""
        if app not in self._infos:
            raise KeyError(f"no installed app has the key {app!r}")
        self.pm.hook.booking_app_deactivated(host=self.host, tenant=tenant, app=app)

    def web_mounts(self) -> list[WebMount]:
        """Every app's WSGI mounts, sorted by prefix; colliding prefixes are refused."""
        mounts = _flatten(
            self.pm.hook.booking_web_mounts(host=self.host), WebMount, "booking_web_mounts"
        )
        _unique(mounts, lambda m: m.prefix, "booking_web_mounts")
        return sorted(
            _unique(mounts, lambda m: m.key, "booking_web_mounts"), key=lambda m: m.prefix
        )

    # -- online booking ---------------------------------------------------------------

    def form_fragments(self, form: BookingFormContext) -> list[FormFragment]:
        """Fragments for the booking form, sorted by (order, key)."""
        results = self._caller("booking_form_render", form.tenant)(host=self.host, form=form)
        items = _flatten(results, FormFragment, "booking_form_render")
        return sorted(
            _unique(items, lambda f: f.key, "booking_form_render"), key=lambda f: (f.order, f.key)
        )

    def submit_check(self, submission: BookingSubmission) -> list[Veto]:
        """Vetoes against a booking; an app that fails yields a retryable veto."""
        try:
            results = self._caller("booking_submit_check", submission.tenant)(
                host=self.host, submission=submission
            )
            items = _flatten(results, Veto, "booking_submit_check")
        except Exception:
            log.exception("booking check failed; refusing the booking (fail closed)")
            lang = "sv" if submission.locale.startswith("sv") else "en"
            return [
                Veto(
                    key="booking.check_failed",
                    message=CHECK_FAILED[lang],
                    field_name=None,
                    retryable=True,
                )
            ]
        return items if len(items) < 2 else sorted(items, key=lambda v: v.key)

    def submitted(
        self, submission: BookingSubmission, booking: BookingRef, client: ClientRef
    ) -> None:
        """Let apps record the accepted booking inside the host's transaction."""
        self._caller("booking_submitted", submission.tenant)(
            host=self.host, submission=submission, booking=booking, client=client
        )

    def client_created(self, created: ClientCreated) -> None:
        """Tell apps a client was created, inside the host's transaction."""
        self._caller("booking_client_created", created.tenant)(host=self.host, created=created)

    # -- practitioner views --------------------------------------------------------------

    def profile_panels(
        self, tenant: TenantRef, client: ClientRef, staff: StaffContext, locale: str
    ) -> list[ProfilePanel]:
        """Panels for a client profile, sorted by key."""
        results = self._caller("booking_client_profile_render", tenant)(
            host=self.host, tenant=tenant, client=client, staff=staff, locale=locale
        )
        items = _flatten(results, ProfilePanel, "booking_client_profile_render")
        return sorted(
            _unique(items, lambda p: p.key, "booking_client_profile_render"), key=lambda p: p.key
        )

    def list_filters(self, tenant: TenantRef, locale: str) -> list[ListFilter]:
        """Client-list filters offered by the active apps, sorted by key."""
        results = self._caller("booking_client_list_filters", tenant)(
            host=self.host, tenant=tenant, locale=locale
        )
        items = _flatten(results, ListFilter, "booking_client_list_filters")
        return sorted(
            _unique(items, lambda f: f.key, "booking_client_list_filters"), key=lambda f: f.key
        )

    def list_filter_clause(
        self, tenant: TenantRef, filter_key: str, client_ref_column: str
    ) -> FilterClause | None:
        """The SQL condition for ``filter_key``, or ``None`` if no active app offers it."""
        result = self._caller("booking_client_list_filter_clause", tenant)(
            host=self.host,
            tenant=tenant,
            filter_key=filter_key,
            client_ref_column=client_ref_column,
        )
        if result is not None and not isinstance(result, FilterClause):
            raise TypeError("booking_client_list_filter_clause must return a FilterClause")
        return result

    def list_badges(
        self, tenant: TenantRef, clients: Sequence[ClientRef], locale: str
    ) -> dict[ClientRef, list[RowBadge]]:
        """Badges per client for one page of the list (each app answers in one query)."""
        results = self._caller("booking_client_list_badges", tenant)(
            host=self.host, tenant=tenant, clients=list(clients), locale=locale
        )
        out: dict[ClientRef, list[RowBadge]] = {c: [] for c in clients}
        for badge in _flatten(results, RowBadge, "booking_client_list_badges"):
            row = out.setdefault(badge.client, [])
            if any(b.key == badge.key for b in row):
                raise DuplicateKeyError(f"booking_client_list_badges: duplicate {badge.key!r}")
            row.append(badge)
        for row in out.values():
            row.sort(key=lambda b: b.key)
        return out

    # -- data protection ------------------------------------------------------------------

    def client_erased(self, tenant: TenantRef, client: ClientRef) -> None:
        """Tell every app (active or not: data stays after deactivation) to erase a client."""
        self.pm.hook.booking_client_erased(host=self.host, tenant=tenant, client=client)

    # -- the platform's other apps ----------------------------------------------------------

    def consent_lookup(
        self, tenant: TenantRef, clients: Sequence[ClientRef], purpose: str
    ) -> dict[ClientRef, ConsentAnswer] | None:
        """May these clients' data be used for ``purpose`` now?  An answer per client, or
        ``None`` when no app active for ``tenant`` keeps consent.  An unknown purpose
        raises :class:`hookspecs.types.UnknownPurpose`."""
        result = self._caller("booking_consent_lookup", tenant)(
            host=self.host, tenant=tenant, clients=list(clients), purpose=purpose
        )
        if result is None:
            return None
        answers = dict(result)
        if not all(isinstance(a, ConsentAnswer) for a in answers.values()):
            raise TypeError("booking_consent_lookup must map clients to ConsentAnswer")
        return answers

    def client_consent_page(self, tenant: TenantRef, client: ClientRef) -> str | None:
        """The link to ``client``'s own consent page ("Mina samtycken") for a mail the
        host writes to them, e.g. its booking confirmation; ``None`` when no app active
        for ``tenant`` offers one.  Call it in the host's open transaction: each call
        issues a new link (older ones keep working until the practice revokes them)."""
        result = self._caller("booking_client_consent_page", tenant)(
            host=self.host, tenant=tenant, client=client
        )
        if result is not None and not isinstance(result, str):
            raise TypeError("booking_client_consent_page must return a URL (str) or None")
        return result

    def _change_listeners(self, tenant: TenantRef) -> list[Any]:
        if not self.pm.hook.booking_consent_changed.get_hookimpls():
            return []  # nobody listens: not even the host's activation store is asked
        impls = self._caller("booking_consent_changed", tenant).get_hookimpls()
        return [i for i in impls if not (i.hookwrapper or i.wrapper)]

    def listens_to_consent(self, tenant: TenantRef) -> bool:
        """Whether an app (or the host) active for ``tenant`` implements
        ``booking_consent_changed`` (so an app need not read statuses for nobody)."""
        return bool(self._change_listeners(tenant))

    def consent_changed(self, changes: Iterable[ConsentChange]) -> None:
        """Call ``booking_consent_changed`` once per change on each implementation
        active for its practice.  An implementation's exception is logged, and the
        other implementations and changes still get theirs: the change is committed."""
        listeners: dict[TenantRef, list[Any]] = {}
        for change in changes:
            if change.tenant not in listeners:
                listeners[change.tenant] = self._change_listeners(change.tenant)
            for impl in listeners[change.tenant]:
                kwargs = {"host": self.host, "change": change}
                try:
                    impl.function(**{a: kwargs[a] for a in impl.argnames})
                except Exception:
                    log.exception("booking_consent_changed of %r failed (change kept: %s)",
                                  impl.plugin_name, change)

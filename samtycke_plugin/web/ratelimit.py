"""The public link pages' rate limit: failed look-ups per source and over all sources.

What counts as a failure is decided by the caller after the token was checked: only a
token that matches no link (see :class:`samtycke_plugin.email.links.LinkProblem`).  A real
link, usable or not (used, replaced, expired, of a practice that deactivated the app),
is never counted and never refused, so a shared address (clinic Wi-Fi, a carrier's NAT,
a proxy) full of guessers cannot keep a client from consenting or withdrawing.

Two budgets, each over a sliding window:

* per source (:func:`source_of`: the IPv4 address or the IPv6 /64): one guesser;
* over all sources together: a spray from many addresses (a botnet, many /64s), which
  the per-source budget alone would not see, and which could also push the per-source
  counts out of memory (at most ``max_keys`` sources are kept; the source whose last
  failure is oldest is forgotten first — the total still counts its failures).

Each count is a two-bucket estimate of a sliding window: the failures of the current
fixed window plus those of the previous one weighted by how much of it the sliding
window still covers.  That is three numbers per source, so memory is bounded by
``max_keys`` whatever the traffic, and an estimate never lags a true sliding window by
more than one window.  State is per process (each worker counts alone).
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from attrs import frozen
from werkzeug.wrappers import Request

#: (window number, failures in the window before it, failures in this window)
_Counts = tuple[int, float, float]
_EMPTY: _Counts = (0, 0.0, 0.0)


def source_of(request: Request) -> str:
    """The rate-limit key: the IPv4 address, or the IPv6 /64."""
    raw = request.remote_addr or "unknown"
    try:
        addr = ipaddress.ip_address(raw)
    except ValueError:
        return raw[:64]
    if addr.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


@frozen(kw_only=True)
class Verdict:
    """What one failure means: ``refused`` when a budget was already spent (answer 429),
    ``spent`` names the budget (``source`` or ``total``) this very failure used up."""

    refused: bool
    spent: str | None = None


class SlidingWindowLimiter:
    """Counts failures per key and over all keys in a sliding window (thread-safe,
    bounded memory).

    A key is over budget after ``limit`` failures within ``window`` seconds; every key
    is over budget after ``total_limit`` failures of all keys together (``None``: no
    total budget).  Failures that come while over budget still count, so a guesser
    that keeps going stays over budget.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        total_limit: int | None = None,
        max_keys: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.total_limit = total_limit
        self.max_keys = max_keys
        self.clock = clock
        self._keys: OrderedDict[str, _Counts] = OrderedDict()
        self._total: _Counts = _EMPTY
        self._lock = threading.Lock()

    # -- the estimate ----------------------------------------------------------------------

    def _position(self, now: float) -> tuple[int, float]:
        """The number of the fixed window ``now`` falls in, and how far into it."""
        position = now / self.window
        number = math.floor(position)
        return number, position - number

    def _estimate(self, counts: _Counts, now: float) -> float:
        number, into = self._position(now)
        window, previous, current = counts
        if window == number:
            return previous * (1.0 - into) + current
        if window == number - 1:
            return current * (1.0 - into)
        return 0.0

    def _add(self, counts: _Counts, now: float) -> _Counts:
        number, _into = self._position(now)
        window, _previous, current = counts
        if window == number:
            return (number, counts[1], current + 1)
        return (number, current if window == number - 1 else 0.0, 1.0)

    # -- the interface ---------------------------------------------------------------------

    def _over(self, key: str, now: float) -> str | None:
        if self.total_limit is not None and self._estimate(self._total, now) >= self.total_limit:
            return "total"
        if self._estimate(self._keys.get(key, _EMPTY), now) >= self.limit:
            return "source"
        return None

    def blocked(self, key: str, now: float | None = None) -> bool:
        """Whether the key (or everyone) is over budget."""
        now = self.clock() if now is None else now
        with self._lock:
            return self._over(key, now) is not None

    def failure(self, key: str, now: float | None = None) -> Verdict:
        """Count one failure of ``key``; say whether it is over a budget."""
        now = self.clock() if now is None else now
        with self._lock:
            over = self._over(key, now)
            self._total = self._add(self._total, now)
            self._keys[key] = self._add(self._keys.get(key, _EMPTY), now)
            self._keys.move_to_end(key)
            self._forget(now)
            spent = None if over is not None else self._over(key, now)
            return Verdict(refused=over is not None, spent=spent)

    def _forget(self, now: float) -> None:
        """Drop sources whose failures have left the window, and the least recent ones
        beyond ``max_keys`` (oldest first: the dict is ordered by last failure)."""
        while self._keys:
            key, counts = next(iter(self._keys.items()))
            if len(self._keys) <= self.max_keys and self._estimate(counts, now) > 0:
                break
            del self._keys[key]

    def tracked(self) -> int:
        """How many sources are held in memory."""
        with self._lock:
            return len(self._keys)

    def reset(self) -> None:
        with self._lock:
            self._keys.clear()
            self._total = _EMPTY

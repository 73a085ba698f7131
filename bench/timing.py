"""Timing: medians of many repetitions after warm-up, app and baseline alternating."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from attrs import frozen

Step = Callable[[int], Any]


@frozen(kw_only=True)
class Sample:
    median_ns: float
    p90_ns: float
    n: int


def _sample(xs: list[int]) -> Sample:
    xs = sorted(xs)
    return Sample(median_ns=statistics.median(xs), p90_ns=xs[int(len(xs) * 0.9)], n=len(xs))


def compare(
    app: Step,
    baseline: Step,
    *,
    reps: int,
    warmup: int,
    setup_app: Step | None = None,
    setup_baseline: Step | None = None,
) -> tuple[Sample, Sample]:
    """Time ``app(i)`` and ``baseline(i)`` (the same work without the app);
    each step's untimed ``setup`` runs before it.

    App and baseline alternate repetition by repetition (which one goes first alternates
    too), so both see the same machine noise: these machines are shared.  The garbage
    collector is off while timing and runs between repetitions every so often.
    """
    app_ns: list[int] = []
    baseline_ns: list[int] = []
    i = 0
    for fn, setup in ((app, setup_app), (baseline, setup_baseline)):
        for _ in range(warmup):
            if setup is not None:
                setup(i)
            fn(i)
            i += 1
    pair = ((app, setup_app, app_ns), (baseline, setup_baseline, baseline_ns))
    gc.collect()
    gc.disable()
    try:
        for k in range(reps):
            for fn, setup, out in pair if k % 2 else pair[::-1]:
                if setup is not None:
                    setup(i)
                t0 = time.perf_counter_ns()
                fn(i)
                out.append(time.perf_counter_ns() - t0)
                i += 1
            if k % 200 == 199:
                gc.collect()
    finally:
        gc.enable()
    return _sample(app_ns), _sample(baseline_ns)


def once(fn: Callable[[], Any]) -> int:
    """Wall time of one call, in nanoseconds."""
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0

"""The apps' background work in a Flask host's own process: a daemon thread that runs
the batch jobs the batch page records and sends the queued e-mail.

A host with a task queue (Celery, RQ) or cron runs ``samtycke outbox send [--loop]``
or :func:`samtycke_plugin.email.relay.send_due` there instead; this thread is for a
host that has neither.  It runs a round every ``every`` seconds and at once when woken
(:meth:`FlaskApps.mount` wakes it after each POST to an app's page: that POST may have
started a batch, and no request waits for one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class AppsWorker:
    """Calls ``work()`` (:meth:`FlaskApps.run_work`) in a thread of its own."""

    def __init__(self, work: Callable[[], object], every: float) -> None:
        self.work, self.every = work, every
        self.woken = threading.Event()
        self.stopped = False
        self.thread = threading.Thread(target=self.loop, name="samtycke-worker", daemon=True)

    def start(self) -> AppsWorker:
        self.thread.start()
        return self

    def wake(self) -> None:
        """Run a round now."""
        self.woken.set()

    def stop(self, timeout: float = 30.0) -> None:
        """End the thread after the round in progress."""
        self.stopped = True
        self.woken.set()
        self.thread.join(timeout=timeout)

    def loop(self) -> None:
        while not self.stopped:
            self.woken.wait(self.every)
            self.woken.clear()
            if not self.stopped:
                self.work()  # logs its own failures: the next round tries again

"""The platform's background worker: the apps' batch jobs and their queued e-mail.

A real host runs the app's relay from its own task queue or as a service (``samtycke
outbox send --loop``); the example platform runs it in a thread of its server, every few
seconds and at once after a form was posted, so a batch started in the browser is done
without the request waiting for it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from examples.host_app.runtime import Platform

log = logging.getLogger("booking.worker")


class Worker:
    def __init__(self, platform: Platform, every: float) -> None:
        self.platform, self.every = platform, every
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="booking-worker", daemon=True)

    def start(self) -> Worker:
        self._thread.start()
        return self

    def wake(self) -> None:
        """Run a round now (after a POST: it may have started a batch)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stopped:
            self._wake.wait(self.every)
            self._wake.clear()
            if self._stopped:
                break
            try:
                self.platform.apps.run_work()
            finally:
                self.platform.sessions.remove()

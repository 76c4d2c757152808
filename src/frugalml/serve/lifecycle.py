"""Readiness and draining.

Ready means every model is loaded and warmed up, and no shutdown has begun. On SIGTERM the app
turns unready at once and refuses new inference requests with 503, while uvicorn stops accepting
connections and waits for the in-flight ones.
"""

from __future__ import annotations

import signal
import threading


class Lifecycle:
    def __init__(self) -> None:
        self.started = False  # models loaded and warmed up
        self.draining = False

    @property
    def ready(self) -> bool:
        return self.started and not self.draining

    def drain_on_signals(self) -> None:
        """Chain onto the server's SIGTERM/SIGINT handlers (uvicorn restores them when it stops).

        Needed where uvicorn builds the server itself (worker processes); a no-op off the main
        thread, where signals cannot be handled.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if callable(previous):
                signal.signal(sig, self._chained(previous))

    def _chained(self, previous):
        def handler(signum, frame) -> None:
            self.draining = True
            previous(signum, frame)

        return handler

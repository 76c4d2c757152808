"""Alert notifications: Alertmanager's webhook payload, posted from a background thread.

`send` only puts the alert on a bounded queue and returns at once; a thread posts it, retrying a
few times with backoff. A receiver that is down or slow costs that thread time, never the server
its requests: past `max_queue` waiting notifications, new ones are dropped (and counted).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import httpx

from frugalml.monitor.alerting import Alert

log = logging.getLogger("frugalml.serve")


def webhook_payload(alert: Alert, receiver: str = "frugalml") -> dict[str, Any]:
    """The body Alertmanager posts to a webhook receiver (version 4), for one alert."""
    group = {"alertname": alert.labels["alertname"]}
    key = ",".join(f'{k}="{v}"' for k, v in sorted(alert.labels.items()))
    return {
        "version": "4",
        "groupKey": f"{{}}:{{{key}}}",
        "truncatedAlerts": 0,
        "status": alert.status,
        "receiver": receiver,
        "groupLabels": group,
        "commonLabels": alert.labels,
        "commonAnnotations": alert.annotations,
        "externalURL": "",
        "alerts": [alert.to_json()],
    }


class WebhookNotifier:
    """Posts each alert to `url` as Alertmanager would; see the module doc."""

    def __init__(
        self,
        url: str,
        *,
        max_queue: int = 256,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
    ):
        self.url = url
        self.timeout_s, self.attempts, self.backoff_s = timeout_s, attempts, backoff_s
        self.sent = self.failed = self.dropped = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frugalml-notify", daemon=True)
        self._thread.start()

    def send(self, alert: Alert) -> bool:
        """Queue `alert`; False (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait(webhook_payload(alert))
        except queue.Full:
            self.dropped += 1
            log.warning("alert notification dropped: %d already wait for %s", self._queue.qsize(), self.url)
            return False
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Post what is queued within `timeout_s`, then stop: what is left is not sent, and a post
        under way gets at most its own timeout."""
        try:
            self._queue.put(None, timeout=timeout_s)
            self._thread.join(timeout_s)
        except queue.Full:  # a receiver that hangs: give up on the queue
            pass
        self._closing.set()
        self._thread.join(self.timeout_s + 1)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._closing.is_set() and (payload := self._queue.get()) is not None:
                self._post(client, payload)

    def _post(self, client: httpx.Client, payload: dict[str, Any]) -> None:
        for attempt in range(self.attempts):
            try:
                response = client.post(self.url, json=payload)
                if response.status_code < 300:
                    self.sent += 1
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < self.attempts and self._closing.wait(self.backoff_s * 2**attempt):
                break
        self.failed += 1
        log.warning("alert notification to %s failed: %s", self.url, problem)

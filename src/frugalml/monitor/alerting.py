"""The embedded alert evaluator: the rules `frugalml monitor rules` writes, run on the server's own
registry, so one machine is alerted without Prometheus.

Every `interval_s` the evaluator reads the registry (its samples, as Prometheus would scrape them)
and keeps the readings of the longest rate window. Each rule names its check (`frugalml_check`),
threshold and window in its annotations; `MEASURES` (monitor/checks.py) computes the check as
the rule's PromQL does. An alert is pending while its condition holds, fires once it has held
for the rule's `for:`, and resolves when it stops holding. Each transition is one notification
(plus, if asked, a reminder every `resend_s` while it fires), never one per evaluation.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.registry import CollectorRegistry

from frugalml.errors import FrugalError
from frugalml.monitor.checks import MEASURES, Labels, Rule, Samples, Window, read_samples
from frugalml.monitor.rules import CHECK, THRESHOLD, WINDOW

log = logging.getLogger("frugalml.serve")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str | int | float) -> float:
    """Seconds in a Prometheus duration ("90s", "1m30s", "2h"); a bare number is seconds."""
    if isinstance(text, int | float):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise FrugalError(f"{text!r} is not a Prometheus duration (like 30s, 2m, 1h30m)")
    return sum(float(amount) * _UNIT_S[unit] for amount, unit in parts)


def load_rules(path: str | Path) -> list[Rule]:
    """The alert rules of a rule file written by `frugalml monitor rules` (several models' files
    may be concatenated into one file's groups)."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FrugalError(
            f"cannot read alert rules {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    groups = document.get("groups") if isinstance(document, dict) else None
    if not isinstance(groups, list):
        raise FrugalError(f"{path}: not a Prometheus rule file (no 'groups' list)")
    rules = []
    for group in groups:
        raws = group.get("rules") if isinstance(group, dict) else None
        if not isinstance(raws, list) or not all(isinstance(raw, dict) for raw in raws):
            raise FrugalError(f"{path}: every group needs a list of rules")
        for raw in raws:
            if "alert" not in raw:
                continue  # recording rules: Prometheus's business
            annotations = raw.get("annotations") or {}
            check = annotations.get(CHECK)
            if check not in MEASURES or "model" not in (raw.get("labels") or {}):
                raise FrugalError(
                    f"{path}: rule {raw['alert']!r} was not written by `frugalml monitor rules` "
                    f"(the embedded evaluator runs only those; Prometheus runs any)"
                )
            try:
                threshold = float(annotations[THRESHOLD])
            except (KeyError, ValueError):
                raise FrugalError(f"{path}: rule {raw['alert']!r} has no numeric {THRESHOLD}") from None
            rules.append(
                Rule(
                    alert=raw["alert"],
                    check=check,
                    model=str(raw["labels"]["model"]),
                    threshold=threshold,
                    window_s=parse_duration(annotations.get(WINDOW, "300s")),
                    for_s=parse_duration(raw.get("for", "0s")),
                    labels={str(k): str(v) for k, v in raw["labels"].items()},
                    annotations={str(k): str(v) for k, v in annotations.items()},
                    expr=str(raw.get("expr", "")),
                )
            )
    if not rules:
        raise FrugalError(f"{path}: no alert rules")
    return rules


def _timestamp(seconds: float | None) -> str:
    if seconds is None:
        return "0001-01-01T00:00:00Z"  # Alertmanager's "not ended"
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Alert:
    """One alert episode: its identity (labels), and when it started and ended."""

    labels: dict[str, str]
    annotations: dict[str, str]
    value: float
    pending_since: float
    started_at: float | None = None  # when it began firing
    ended_at: float | None = None
    last_sent: float | None = None

    @property
    def fingerprint(self) -> str:
        text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(self.labels.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def status(self) -> str:
        return "resolved" if self.ended_at is not None else "firing"

    def to_json(self) -> dict[str, Any]:
        """Alertmanager's webhook shape of one alert."""
        return {
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": _timestamp(self.started_at),
            "endsAt": _timestamp(self.ended_at),
            "generatorURL": "",
            "fingerprint": self.fingerprint,
        }


@dataclass
class Evaluator:
    """Rules over readings of `collect()`; `notify` gets each alert as it fires or resolves, and
    `record` (the lineage store) every alert that fires and again when it resolves."""

    rules: list[Rule]
    collect: Callable[[], CollectorRegistry]
    notify: Callable[[Alert], object] = lambda alert: None
    record: Callable[[Alert], object] = lambda alert: None
    resend_s: float | None = None
    _history: deque[tuple[float, Samples]] = field(default_factory=deque)
    _alerts: dict[tuple[str, Labels], Alert] = field(default_factory=dict)

    @property
    def active(self) -> list[Alert]:
        """Alerts firing or pending now."""
        return list(self._alerts.values())

    def evaluate(self, now: float | None = None) -> list[Alert]:
        """Read the metrics, step every rule; returns the alerts that changed state (fired, resolved)."""
        now = time.time() if now is None else now
        self._history.append((now, read_samples(self.collect())))
        longest = max(rule.window_s for rule in self.rules)
        while len(self._history) > 2 and self._history[1][0] <= now - longest:
            self._history.popleft()
        changed = []
        for rule in self.rules:
            first = next(s for t, s in self._history if t >= now - rule.window_s or t == now)
            holding = MEASURES[rule.check](rule, Window(first, self._history[-1][1]))
            changed += self._step(rule, holding, now)
        return changed

    def _step(self, rule: Rule, holding: dict[Labels, float], now: float) -> list[Alert]:
        changed = []
        for instance, value in holding.items():
            key = (rule.alert, instance)
            alert = self._alerts.get(key)
            if alert is None:
                labels = {"alertname": rule.alert, **rule.labels, **dict(instance)}
                alert = self._alerts[key] = Alert(labels, rule.annotations, value, pending_since=now)
            alert.value = value
            if alert.started_at is None and now - alert.pending_since >= rule.for_s:
                alert.started_at = now
                changed.append(alert)
            elif self._reminder_due(alert, now):
                self._send(alert, now)
        for key in [k for k in self._alerts if k[0] == rule.alert and k[1] not in holding]:
            alert = self._alerts.pop(key)
            if alert.started_at is not None:  # a pending alert that stops holding never fired
                alert.ended_at = now
                changed.append(alert)
        for alert in changed:
            self._send(alert, now)
            self.record(alert)
        return changed

    def _reminder_due(self, alert: Alert, now: float) -> bool:
        if self.resend_s is None or alert.started_at is None or alert.last_sent is None:
            return False
        return now - alert.last_sent >= self.resend_s

    def _send(self, alert: Alert, now: float) -> None:
        alert.last_sent = now
        log.warning(
            "alert %s %s %s",
            alert.labels["alertname"],
            alert.status,
            {k: v for k, v in alert.labels.items() if k != "alertname"},
        )
        self.notify(alert)


@dataclass(frozen=True)
class AlertingConfig:
    """Embedded alerting: the rule file, where to post notifications (None: only the lineage
    store and the log), how often to evaluate and to remind of a firing alert (None: never)."""

    rules_path: str
    notify_url: str | None = None
    interval_s: float = 10.0
    resend_s: float | None = None

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise FrugalError("the alert evaluation interval must be > 0 seconds")
        if self.resend_s is not None and not self.resend_s > 0:
            raise FrugalError("the alert resend interval must be > 0 seconds")
        if self.notify_url is not None and not self.notify_url.startswith(("http://", "https://")):
            raise FrugalError(f"notify URL {self.notify_url!r} must start with http:// or https://")


class AlertLoop:
    """Runs `evaluator` every `interval_s` seconds on a daemon thread until `stop()`."""

    def __init__(self, evaluator: Evaluator, interval_s: float):
        self.evaluator, self.interval_s = evaluator, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frugalml-alerts", daemon=True)

    def start(self) -> AlertLoop:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.evaluator.evaluate()
            except Exception:  # a failed evaluation must not end alerting
                log.exception("alert evaluation failed")
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def check_models(rules: Iterable[Rule], served: Iterable[str]) -> None:
    """Refuse rules for a model this server does not serve: they would only say it is not ready."""
    names = set(served)
    unknown = sorted({rule.model for rule in rules} - names)
    if unknown:
        raise FrugalError(
            f"the alert rules name model(s) {', '.join(map(repr, unknown))}, not served here "
            f"(serving: {', '.join(sorted(names))}); write them with `frugalml monitor rules NAME`"
        )

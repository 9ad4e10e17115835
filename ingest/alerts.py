"""Budget alerts: where an alert goes once the spend store said it is this process's to raise.

The store decides *whether* (``SpendStore.first_alert``: exactly once fleet-wide per team, period and threshold);
an :class:`AlertSink` delivers it. Locally that is one JSON line in ``<lake>/alerts/alerts.jsonl`` (an ``s3://``
lake: one object per alert under ``alerts/period=…/``) and, when ``$MODELMETER_ALERT_WEBHOOK`` is set, a POST of the
same JSON to that URL from a background thread, retried with exponential backoff; nothing here ever waits on the
network on a request's path. In AWS the sink is SNS and EventBridge (another module, same protocol).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from common.constants import ALERTS, ALERTS_FILE, ENV_ALERT_WEBHOOK
from common.lake import Lake

log = logging.getLogger(__name__)

#: Webhook delivery: attempts, first wait (doubled after each failure) and the timeout of one POST.
WEBHOOK_ATTEMPTS = 6
WEBHOOK_FIRST_BACKOFF = 1.0
WEBHOOK_TIMEOUT = 5.0


class AlertSink(Protocol):
    """Delivers budget alerts (JSON objects, see :func:`ingest.budget.alert_of`)."""

    def deliver(self, alert: Mapping[str, Any]) -> None:
        """Deliver or queue one alert; must not block on the network (it runs at the end of a call)."""
        ...

    def status(self) -> dict[str, Any]:
        """Counters for the health check and metrics: ``{"delivered": n, "failed": n, "queued": n}``."""
        ...

    def close(self, *, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop."""
        ...


class LocalAlerts:
    """The local sink: the lake's alert log, plus an optional webhook.

    Args:
        lake: the lake (``<lake>/alerts/alerts.jsonl`` for a folder lake; an object per alert on S3).
        webhook: URL the alert JSON is POSTed to (``None``: no webhook).
        post: ``post(url, body) -> None`` raising on failure (injectable in tests; default urllib).
        sleep: how the retry waits (injectable in tests).
    """

    def __init__(self, *, lake: Lake, webhook: str | None = None,
                 post: Callable[[str, bytes], None] | None = None, sleep: Callable[[float], None] = time.sleep,
                 attempts: int = WEBHOOK_ATTEMPTS, first_backoff: float = WEBHOOK_FIRST_BACKOFF):
        self.lake = lake
        self.webhook = webhook
        self._post = post or _post_json
        self._sleep = sleep
        self.attempts, self.first_backoff = attempts, first_backoff
        self.counts = {"delivered": 0, "failed": 0, "webhook_delivered": 0, "webhook_failed": 0}
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        if webhook:
            self._thread = threading.Thread(target=self._webhook_loop, name="modelmeter-alert-webhook", daemon=True)
            self._thread.start()

    @classmethod
    def from_env(cls, *, lake: Lake, environ: Mapping[str, str] | None = None) -> LocalAlerts:
        env = os.environ if environ is None else environ
        return cls(lake=lake, webhook=env.get(ENV_ALERT_WEBHOOK) or None)

    @property
    def path(self) -> str:
        """Where a folder lake's alert log is."""
        return self.lake.path(ALERTS, ALERTS_FILE)

    def deliver(self, alert: Mapping[str, Any]) -> None:
        line = json.dumps(dict(alert), sort_keys=True, separators=(",", ":")).encode() + b"\n"
        try:
            self._write(alert, line)
            self.counts["delivered"] += 1
        except OSError as exc:
            self.counts["failed"] += 1
            # The alert is not lost for the operator: it is in the log, whole.
            log.error("could not write the budget alert to %s (%s): %s", self.lake.url(ALERTS), exc,
                      line.decode().strip())
        if self._thread is not None:
            self._queue.put(line)

    def _write(self, alert: Mapping[str, Any], line: bytes) -> None:
        if self.lake.is_local:
            os.makedirs(self.lake.path(ALERTS), exist_ok=True)
            # One write of a short line with O_APPEND: lines of concurrent processes never interleave.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        else:
            self.lake.write_bytes(line, ALERTS, f"period={alert.get('period')}",
                                  f"{alert.get('team_id')}-{alert.get('threshold_pct')}.json")

    def _webhook_loop(self) -> None:
        while True:
            line = self._queue.get()
            try:
                if line is None:
                    return
                self._send(line)
            finally:
                self._queue.task_done()

    def _send(self, line: bytes) -> None:
        wait = self.first_backoff
        for attempt in range(1, self.attempts + 1):
            try:
                self._post(self.webhook or "", line)
                self.counts["webhook_delivered"] += 1
                return
            except Exception as exc:  # noqa: BLE001 - any failure of the POST is retried, then logged
                if attempt == self.attempts:
                    self.counts["webhook_failed"] += 1
                    log.error("budget alert webhook failed %d times (%s); the alert is in %s: %s", attempt, exc,
                              self.lake.url(ALERTS), line.decode().strip())
                    return
                log.warning("budget alert webhook failed (%s); retrying in %g s", exc, wait)
                self._sleep(wait)
                wait *= 2

    def status(self) -> dict[str, Any]:
        return {**self.counts, "queued": self._queue.qsize()}

    def close(self, *, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)


def _post_json(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "modelmeter"})
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:  # noqa: S310 - operator's URL
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(url, response.status, "webhook refused the alert", response.headers, None)


def read_alerts(lake: Lake) -> list[dict[str, Any]]:
    """Every alert of the lake's log, oldest first (a folder lake; tests and ``budget show``)."""
    try:
        with open(lake.path(ALERTS, ALERTS_FILE), encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []

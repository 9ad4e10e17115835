"""In-memory store for the seed's async ("streaming: true") long-poll flow (local mode; DynamoDB in AWS)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from common.errors import NotFound


class MemoryLongPollStore:
    """Request id → pending/finished result, with a TTL. Thread-safe; :meth:`claim` is atomic.

    Args:
        clock: monotonic seconds, injectable so tests can expire entries without sleeping.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        # request_id → [team_id, expires_at, result or None] (+ ["running" or "done", owner] once taken)
        self._items: dict[str, list[Any]] = {}

    def start(self, request_id: str, *, team_id: str, ttl_seconds: int) -> None:
        with self._lock:
            self._expire()
            self._items[request_id] = [team_id, self._clock() + ttl_seconds, None]

    def complete(self, request_id: str, *, result: dict[str, Any]) -> None:
        with self._lock:
            item = self._items.get(request_id)
            if item is not None:  # expired meanwhile: nobody can claim it any more; its usage was still billed
                item[2] = result

    def complete_pending(self, request_id: str, *, result: dict[str, Any], owner: str | None = None) -> bool:
        with self._lock:
            self._expire()
            item = self._items.get(request_id)
            if item is not None and owner is not None and item[3:] == ["done", owner]:
                return True  # our own write, asked again (the DynamoDB store's lost-answer case): still ours
            if item is None or item[2] is not None or len(item) > 3:  # gone, done, or a worker's (running)
                return False
            item[2] = result
            item.extend(["done", owner])
            return True

    def claim_run(self, request_id: str, *, team_id: str, owner: str | None = None) -> bool:
        with self._lock:
            self._expire()
            item = self._items.get(request_id)
            if item is None or item[0] != team_id:
                return False
            if owner is not None and item[2] is None and item[3:] == ["running", owner]:
                return True  # our own claim, asked again: the same owner keeps it
            if item[2] is not None or len(item) > 3:
                return False
            # The fourth and fifth elements mark it taken and by whom; the result slot stays empty until complete.
            item.extend(["running", owner])
            return True

    def claim(self, request_id: str, *, team_id: str) -> dict[str, Any] | None:
        with self._lock:
            self._expire()
            item = self._items.get(request_id)
            if item is None or item[0] != team_id:
                # Another team's id answers exactly like an unknown one: ids must not be probed across teams.
                raise NotFound(f"unknown or expired requestId {request_id!r}")
            if item[2] is None:
                return None
            del self._items[request_id]
            return item[2]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, v in self._items.items() if v[1] <= now]:
            del self._items[key]

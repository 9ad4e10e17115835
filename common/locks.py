"""A lock on a lake location: one holder at a time; the others wait (poll) up to a timeout, then fail naming the holder.

Folder lake: ``fcntl.flock`` on a lock file. The kernel drops the lock when its holder dies, however it dies, so a
folder lock is never stale; the file keeps the last holder's owner, host and pid (for the waiter's message) and is
never deleted (deleting a flock file lets a third process lock a new file while a second still holds the old one).

S3 lake: a lock object, created with a conditional PUT (``If-None-Match: *``: only one creator can succeed) that holds
owner, host, pid and the lease. The holder renews the lease in a background thread (a conditional overwrite,
``If-Match: <its ETag>``); a lock whose lease ran out (its holder died) is taken over by a conditional overwrite with
the stale ETag, so of two waiters only one can win; it is released by a conditional delete (``If-Match``). Leases
are judged on S3's clock alone (the object's ``Last-Modified`` against the response's ``Date``), so the hosts' clock
skew does not matter. A holder that could not renew in time has lost the lock: :meth:`LakeLock.check` says so before
it writes anything.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError

from common.lake import Lake

#: How long a waiter waits for a held lock before it gives up (a day's transform takes well under a minute per
#: 10 M events; ten minutes covers a backfill of many days holding one day after another).
DEFAULT_TIMEOUT_SECONDS = 600.0
#: How often a waiter tries again.
POLL_SECONDS = 1.0
#: An S3 lock not renewed for this long belongs to a holder that died; it is renewed every quarter of it.
LEASE_SECONDS = 120
#: S3's answers to a conditional request that did not hold: 412 (precondition failed), 409 (a concurrent
#: conditional write to the same key won).
_LOST_RACE = ("PreconditionFailed", "ConditionalRequestConflict", "409", "412")


class LockTimeout(TimeoutError):
    """The lock stayed held for the whole timeout (an ``OSError``: the command line prints it as one line)."""


class LockLost(OSError):
    """An S3 lease ran out before it could be renewed and another process may hold the lock now."""


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process (it has not said who yet)"
    text = f"{holder.get('owner', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    return text + f", since {holder.get('acquired_at', '?')})"


class _FileLock:
    """``flock`` on a local file."""

    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = None

    def try_acquire(self, holder: dict[str, Any]) -> bool:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self.fd = fd
        return True

    def holder(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as src:
                return json.loads(src.read() or "null")
        except (OSError, ValueError):
            return None

    def check(self) -> None:
        """A flock cannot be lost while its descriptor is open."""

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class _S3Lock:
    """A lock object on S3, written and removed only by conditional requests."""

    def __init__(self, lake: Lake, path: str, lease_seconds: int):
        self.bucket, self.key = path.split("/", 1)
        self.s3 = boto3.client("s3", region_name=getattr(lake.fs, "region", None) or None)
        self.lease_seconds = lease_seconds
        self.etag: str | None = None
        self.body = b""
        self.renewed_at = 0.0  # time.monotonic() of the last successful write of the lock
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._last: dict[str, Any] | None = None

    def _put(self, body: bytes, **condition: str) -> bool:
        started = time.monotonic()
        try:
            self.etag = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=body, **condition)["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _LOST_RACE or _status(exc) in (409, 412):
                return False
            raise
        self.renewed_at = started
        return True

    def try_acquire(self, holder: dict[str, Any]) -> bool:
        self.body = json.dumps({**holder, "lease_seconds": self.lease_seconds}).encode()
        if self._put(self.body, IfNoneMatch="*"):
            self._start_renewing()
            return True
        stale_etag = self._stale_etag()
        if stale_etag and self._put(self.body, IfMatch=stale_etag):  # the holder died: take its lock over
            self._start_renewing()
            return True
        return False

    def _stale_etag(self) -> str | None:
        """The lock object's ETag when its lease ran out (by S3's clock), else None (held, or just released)."""
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        try:
            self._last = json.loads(got["Body"].read())
        except ValueError:
            self._last = None
        lease = (self._last or {}).get("lease_seconds", self.lease_seconds)
        server_now = parsedate_to_datetime(got["ResponseMetadata"]["HTTPHeaders"]["date"])
        return got["ETag"] if server_now - got["LastModified"] >= timedelta(seconds=lease) else None

    def holder(self) -> dict[str, Any] | None:
        return self._last

    def _start_renewing(self) -> None:
        self._renewer = threading.Thread(target=self._renew, name="lake-lock-renew", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                renewed = self._put(self.body, IfMatch=self.etag or "")
            except (ClientError, OSError):
                continue  # S3 unreachable for a moment: try again (check() fails once the lease has run out)
            if not renewed:  # another process took the lock over: it judged this one dead
                self.lost.set()
                return

    def check(self) -> None:
        if self.lost.is_set() or time.monotonic() - self.renewed_at >= self.lease_seconds:
            raise LockLost(f"lost the lock s3://{self.bucket}/{self.key}: its lease ran out before it could be "
                           "renewed, so another process may hold it; this run stops before writing")

    def release(self) -> None:
        self._stop.set()
        if self._renewer:
            self._renewer.join()
        if self.etag and not self.lost.is_set():
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
            except ClientError as exc:
                if _status(exc) not in (404, 409, 412):  # already gone, or another process's now
                    raise
        self.etag = None


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class LakeLock:
    """A held lock: :meth:`check` before writing (raises :class:`LockLost` if an S3 lease was lost)."""

    def __init__(self, backend: _FileLock | _S3Lock, url: str, waited_seconds: float, acquired_at: datetime):
        self._backend = backend
        self.url = url
        self.waited_seconds = waited_seconds
        self.acquired_at = acquired_at

    def check(self) -> None:
        self._backend.check()


@contextmanager
def lake_lock(lake: Lake, *parts: str, owner: str, what: str, timeout: float = DEFAULT_TIMEOUT_SECONDS,
              poll_seconds: float = POLL_SECONDS, lease_seconds: int = LEASE_SECONDS) -> Iterator[LakeLock]:
    """Hold the lock at lake-relative ``parts`` for the ``with`` block, waiting up to ``timeout`` seconds for it.

    Args:
        owner: who holds it (a run id), stored in the lock for the waiters' message.
        what: what the lock protects, as the timeout message names it (``"the transform of 2026-11-20"``).

    Raises:
        LockTimeout: still held by another process after ``timeout`` seconds; the message names the holder.
    """
    path = lake.path(*parts)
    backend: _FileLock | _S3Lock = _FileLock(path) if lake.is_local else _S3Lock(lake, path, lease_seconds)
    started = time.monotonic()
    while True:
        acquired_at = datetime.now(UTC)
        holder = {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(),
                  "acquired_at": acquired_at.isoformat()}
        if backend.try_acquire(holder):
            break
        if time.monotonic() - started >= timeout:
            raise LockTimeout(f"{what} is locked by {_describe(backend.holder())}; gave up after waiting "
                              f"{timeout:g} s (lock {lake.url(*parts)})")
        time.sleep(poll_seconds)
    try:
        yield LakeLock(backend, lake.url(*parts), round(time.monotonic() - started, 3), acquired_at)
    finally:
        backend.release()

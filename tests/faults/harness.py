"""The fault suite's tools: a real gateway process, real traffic, real faults, and the counts each case reports.

Faults are real, not mocks: ``chattr +i`` makes a folder refuse new entries and renames even to root (the suite runs
as root, for whom ``chmod`` changes nothing), a tmpfs of a few hundred KiB is a full disk, ``SIGKILL`` is a crash.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests

from common.constants import RAW_EVENTS
from common.contracts import Team
from common.lake import Lake
from ingest.tenants import LocalTenantRegistry

MODELMETER = [sys.executable, "-c", "import sys; from modelmeter.cli import main; sys.exit(main(sys.argv[1:]))"]
#: Strings of a usage event that must never appear in a response to a tenant.
EVENT_MARKERS = (b'"event_id"', b'"api_key_id"', b'"schema_version"')

#: One row per case, printed at the end of the run (see conftest.py).
REPORT: list[dict[str, Any]] = []


# --- real faults ---------------------------------------------------------------------------------------------------

@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``path`` refuses new files, removals and renames (open files stay writable), until the block ends."""
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@contextmanager
def tiny_disk(path: Path, size: str = "512k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path``: a disk that really fills up."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the disk-full case needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(path: Path) -> Path:
    """Write a file in ``path`` until the disk is full; removing it frees the disk."""
    filler = path / "filler.bin"
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


# --- a real gateway process ----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tenants(path: Path, teams: tuple[str, ...] = ("alpha", "beta")) -> dict[str, str]:
    """Teams with one key each in a tenant file; team → secret."""
    registry = LocalTenantRegistry(path)
    keys = {}
    for team in teams:
        registry.put_team(Team(team_id=team))
        keys[team] = registry.create_key(team)[1]
    return keys


@dataclass
class GatewayProcess:
    """``modelmeter serve`` in its own process, as a user runs it."""

    lake: Path
    tenants: Path
    upstream: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    url: str = ""

    def start(self) -> GatewayProcess:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [*MODELMETER, "serve", "--port", str(port), "--upstream", self.upstream, "--lake", str(self.lake),
             "--tenants", str(self.tenants)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={**os.environ, **self.env})
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{self.url}/healthz", timeout=1)
                return self
            except requests.ConnectionError:
                assert self.proc.poll() is None, f"serve exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
                assert time.monotonic() < deadline, "serve did not start in 30 s"
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush anything."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> tuple[int, str]:
        """SIGTERM and wait; (exit status, stderr)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        return code, self.proc.stderr.read() if self.proc.stderr else ""

    def health(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/healthz", timeout=5).json()


# --- real traffic --------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """One call as the client saw it."""

    kind: str
    status: int | None = None          # None: no HTTP answer (connection reset, the server died)
    request_id: str | None = None
    body: bytes = b""
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.status is not None

    def leaked(self) -> bool:
        """The answer holds anything but this call's own answer (another call's event, a stray line)."""
        if not self.answered:
            return False
        if any(marker in self.body for marker in EVENT_MARKERS):
            return True
        try:
            payload = json.loads(self.body)
        except ValueError:
            return self.kind != "v1_stream"  # SSE is not one JSON document; checked line by line below
        if self.kind == "v1_chat" and self.status == 200:
            return payload.get("id") != f"chatcmpl-{self.request_id}"
        return False


def call(url: str, secret: str, team: str, kind: str, model: str, i: int) -> Outcome:
    """One call of ``kind``: ``v1_chat``, ``v1_stream``, ``seed_text`` or ``seed_async`` (starts the async flow)."""
    outcome = Outcome(kind=kind)
    try:
        if kind.startswith("v1"):
            r = requests.post(f"{url}/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {secret}"},
                              json={"model": model, "messages": [{"role": "user", "content": f"question {i}"}],
                                    "stream": kind == "v1_stream"})
        else:
            headers = {"x-api-key": secret, "team_id": team}
            if kind == "seed_async":
                headers["streaming"] = "true"
            r = requests.post(f"{url}/invoke_model?model_id={model}", json={"inputs": f"question {i}"},
                              headers=headers, timeout=30)
        outcome.status, outcome.body = r.status_code, r.content
        outcome.request_id = r.headers.get("x-request-id")
        if kind == "seed_async" and r.status_code == 200:
            outcome.request_id = r.json()[0]["request_id"]
        if kind == "v1_stream" and r.status_code == 200:
            _check_sse(outcome)
    except requests.RequestException as exc:
        outcome.error = type(exc).__name__
    return outcome


def _check_sse(outcome: Outcome) -> None:
    for line in outcome.body.split(b"\n"):
        if line.startswith(b"data: {") and json.loads(line[6:]).get("id") not in (None,
                                                                               f"chatcmpl-{outcome.request_id}"):
            outcome.body += b'"event_id"'  # marks it leaked: a chunk of another call's stream


def run_traffic(plan: list[Callable[[], Outcome]], *, workers: int = 8) -> list[Outcome]:
    """Run the calls of ``plan`` on ``workers`` threads; the outcomes in plan order."""
    results: list[Outcome | None] = [None] * len(plan)
    cursor = iter(range(len(plan)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            results[index] = plan[index]()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


# --- what landed ---------------------------------------------------------------------------------------------------

def lake_events(lake: Path) -> list[dict[str, Any]]:
    """Every usage event in the lake's raw folder."""
    opened = Lake.open(lake)
    return [row for path in opened.list_files(RAW_EVENTS) for row in pq.read_table(path).to_pylist()]


def tally(case: str, outcomes: list[Outcome], events: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The case's counts: every answered call of a model must have exactly one event, no answer may leak."""
    by_request: dict[str, int] = {}
    for event in events:
        by_request[event["request_id"]] = by_request.get(event["request_id"], 0) + 1
    billed = [o for o in outcomes if o.answered and o.status not in (503, 431) and o.request_id]
    row = {
        "case": case,
        "calls": len(outcomes),
        "answered": sum(o.answered for o in outcomes),
        "refused_503": sum(o.status == 503 for o in outcomes),
        "events": len(events),
        "lost": sum(by_request.get(o.request_id or "", 0) == 0 for o in billed),
        "duplicated": sum(n - 1 for n in by_request.values() if n > 1),
        "leaked": sum(o.leaked() for o in outcomes),
        **extra,
    }
    REPORT.append(row)
    return row

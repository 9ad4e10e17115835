"""The spool under real faults, in process: a folder that refuses renames, a full disk, a segment that cannot be
removed after delivery, a process killed with calls in flight."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from common.errors import ServiceUnavailable
from ingest.emit import Emitter
from ingest.spool import JOURNAL_SUFFIX

from .harness import fill_disk, immutable, tiny_disk


def _event(i: int, **extra) -> dict:
    return {"schema_version": 1, "event_id": str(uuid.uuid4()), "request_id": f"r{i}",
            "event_time": "2026-11-25T10:00:00.000Z", "team_id": "alpha", "provider": "simulator",
            "model_id": "m", "operation": "chat", "status": "ok", "input_tokens": i, **extra}


class Sink:
    """Counts what it receives; ``down`` makes it raise, like an unreachable Firehose."""

    def __init__(self):
        self.received: Counter[str] = Counter()
        self.down = False
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, batch):
        with self.lock:
            self.calls += 1
            if self.down:
                raise ConnectionError("sink unreachable")
            for e in batch:
                self.received[e["event_id"]] += 1
            return []


def test_a_segment_that_cannot_be_renamed_never_sends_events_to_another_descriptor(tmp_path):
    # GIVEN an emitter that rotates every 50 ms, and a spool folder that starts refusing renames
    sink = Sink()
    emitter = Emitter(deliver=sink, spool_dir=tmp_path, flush_interval=0.05, max_backoff=0.05)
    events = [_event(i) for i in range(200)]
    for e in events[:20]:
        emitter.emit(e)
    with immutable(tmp_path):
        time.sleep(0.3)  # the background thread tries (and fails) to rotate the segment
        # WHEN the process opens sockets (they take the lowest free descriptor numbers) and events keep coming
        pairs = [socket.socketpair() for _ in range(20)]
        for e in events[20:]:
            emitter.emit(e)
        # THEN no socket received a byte: every event went into the segment, still open and valid
        for ours, peer in pairs:
            peer.setblocking(False)
            with pytest.raises(BlockingIOError):
                peer.recv(1)
            ours.close()
            peer.close()
        assert emitter.status()["spool"] == "ok"
    # AND once the folder works again, every event is delivered exactly once
    assert emitter.close(timeout=10)
    assert sink.received == Counter({e["event_id"]: 1 for e in events})


def test_disk_full_holds_events_in_memory_then_refuses_then_recovers(tmp_path):
    # GIVEN a spool on a full disk and a sink that is down (nowhere to put an event)
    with tiny_disk(tmp_path / "disk") as disk:
        sink = Sink()
        sink.down = True
        emitter = Emitter(deliver=sink, spool_dir=disk / "spool", flush_interval=0.05, max_backoff=0.05,
                          max_backlog=30)
        emitter.emit(_event(-1))  # the segment and the journal exist before the disk fills
        pending = _event(-2)
        emitter.open_call({**pending, "status": "unknown"})
        filler = fill_disk(disk)
        # WHEN calls keep coming
        admitted, refused = [], 0
        for i in range(60):
            try:
                emitter.admit()
            except ServiceUnavailable as exc:
                refused += 1
                assert exc.status_code == 503 and "cannot record usage" in exc.message
                continue
            event = _event(i)
            emitter.open_call({**event, "status": "unknown"})
            emitter.emit(event)
            admitted.append(event)
        # THEN the first ones are held in memory, the rest refused (no model call), and the health says why
        assert 25 <= len(admitted) <= 31 and refused == 60 - len(admitted)
        assert emitter.status()["spool"] == "failing"
        # WHEN the disk has room again and the sink is back
        filler.unlink()
        sink.down = False
        assert emitter.flush(timeout=10)
        emitter.admit()  # calls are admitted again
        emitter.emit(pending)  # the call open since before the fault finishes
        assert emitter.close(timeout=10)
        # THEN each event arrived once and no segment holds a cut line
        expected = [e["event_id"] for e in admitted] + [pending["event_id"]]
        assert len(sink.received) == len(expected) + 1 and all(sink.received[k] == 1 for k in expected)
        assert set(sink.received.values()) == {1}
        assert not list((disk / "spool").glob("*.bad"))


def test_disk_full_with_the_sink_up_delivers_straight_from_memory(tmp_path):
    with tiny_disk(tmp_path / "disk") as disk:
        # GIVEN a full disk under the spool, but a sink that works
        sink = Sink()
        emitter = Emitter(deliver=sink, spool_dir=disk / "spool", flush_interval=0.05, max_backoff=0.05)
        emitter.emit(_event(-1))
        filler = fill_disk(disk)
        # WHEN events are emitted
        events = [_event(i) for i in range(100)]
        for e in events:
            emitter.emit(e)
        time.sleep(0.5)
        # THEN they reach the sink without the spool, once each
        assert all(sink.received[e["event_id"]] == 1 for e in events)
        filler.unlink()
        assert emitter.close(timeout=10)
        assert set(sink.received.values()) == {1} and len(sink.received) == 101


def test_a_delivered_segment_that_cannot_be_removed_is_not_sent_again(tmp_path):
    # GIVEN a closed segment of 100 events in a folder that then refuses removals
    sink = Sink()
    emitter = Emitter(deliver=sink, spool_dir=tmp_path, start=False)
    events = [_event(i) for i in range(100)]
    for e in events:
        emitter.emit(e)
    emitter._rotate()
    with immutable(tmp_path):
        # WHEN delivery passes run again and again
        for _ in range(5):
            assert emitter.flush(timeout=0.2) is False
        # THEN the events went out once, and later passes did not call the sink again
        assert sink.received == Counter({e["event_id"]: 1 for e in events})
        assert sink.calls == 1
        assert emitter.pending_events() == 0
    # AND once removable, the segment goes and nothing is sent twice
    assert emitter.close(timeout=5)
    assert emitter.pending_segments() == [] and set(sink.received.values()) == {1}


def test_background_passes_back_off_when_a_segment_cannot_be_removed(tmp_path):
    sink = Sink()
    emitter = Emitter(deliver=sink, spool_dir=tmp_path, flush_interval=0.02, max_backoff=1.0)
    for i in range(50):
        emitter.emit(_event(i))
    time.sleep(0.1)  # delivered and removed once
    before = sink.calls
    emitter.emit(_event(99))
    with immutable(tmp_path):
        time.sleep(1.5)
    # the new segment could not even be renamed while immutable: at most one delivery of it, no loop
    assert sink.calls - before <= 1
    assert emitter.close(timeout=5) and len(sink.received) == 51 and set(sink.received.values()) == {1}


_CRASHING_CHILD = """
import json, os, signal, sys
from ingest.emit import Emitter
spool, events = sys.argv[1], json.loads(sys.argv[2])
emitter = Emitter(deliver=lambda batch: [], spool_dir=spool, start=False)
for event in events:
    emitter.open_call({**event, "status": "unknown", "token_source": "estimated"})
for event in events[:2]:
    emitter.emit(event)  # these two calls finished; the other three were still at the provider
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_calls_in_flight_at_a_kill_become_placeholder_events_once(tmp_path):
    # GIVEN a process killed while 3 of its 5 calls were at the provider
    events = [_event(i) for i in range(5)]
    child = subprocess.run([sys.executable, "-c", _CRASHING_CHILD, str(tmp_path), json.dumps(events)],
                           env={**os.environ, "PYTHONPATH": str(Path.cwd())}, capture_output=True, text=True)
    assert child.returncode == -9, child.stderr
    assert list(tmp_path.glob(f"*{JOURNAL_SUFFIX}"))
    # WHEN the next gateway process starts on the spool (twice: a crash during recovery repeats it harmlessly)
    sink = Sink()
    first = Emitter(deliver=sink, spool_dir=tmp_path, start=False)
    assert first.recovered_calls == 3 and first.close(timeout=5)
    again = Emitter(deliver=sink, spool_dir=tmp_path, start=False)
    assert again.recovered_calls == 0 and again.close(timeout=5)
    # THEN the 2 finished calls have their event, the 3 others a placeholder with their own event_id
    assert sink.received == Counter({e["event_id"]: 1 for e in events})
    assert not list(tmp_path.glob(f"*{JOURNAL_SUFFIX}"))


def test_an_open_call_whose_event_is_spooled_gets_no_placeholder(tmp_path):
    # GIVEN a journal that says "open" for a call whose event did reach a segment (the "done" line was lost)
    event = _event(1)
    (tmp_path / f"calls-1{JOURNAL_SUFFIX}").write_text(json.dumps({"open": {**event, "status": "unknown"}}) + "\n")
    (tmp_path / "seg-1.jsonl").write_text(json.dumps(event) + "\n")
    sink = Sink()
    # WHEN an emitter starts
    emitter = Emitter(deliver=sink, spool_dir=tmp_path, start=False)
    # THEN only the real event is delivered
    assert emitter.recovered_calls == 0 and emitter.close(timeout=5)
    assert sink.received == Counter({event["event_id"]: 1})


def test_close_turns_calls_that_never_finished_into_placeholders(tmp_path):
    sink = Sink()
    emitter = Emitter(deliver=sink, spool_dir=tmp_path, start=False)
    event = _event(1)
    emitter.open_call({**event, "status": "unknown"})
    assert emitter.close(timeout=5)
    assert sink.received == Counter({event["event_id"]: 1})
    assert not list(tmp_path.glob(f"*{JOURNAL_SUFFIX}"))


_JOURNAL_FAILS_THEN_CRASH = """
import json, os, signal, sys, time
from pathlib import Path
from ingest.emit import Emitter
from tests.faults.harness import fill_disk
spool, event = Path(sys.argv[1]), json.loads(sys.argv[2])
emitter = Emitter(deliver=lambda batch: [], spool_dir=spool, start=False)
emitter.emit({**event, "event_id": "warm-up"})  # the spool's files exist before the disk fills
filler = fill_disk(spool.parent)
emitter.open_call({**event, "status": "unknown"})  # the journal cannot take it: memory only
filler.unlink()
emitter._drain_backlog()  # the disk is back: the next pass writes the open call to a new journal
os.kill(os.getpid(), signal.SIGKILL)  # and the call is still at the provider
"""


def test_a_call_the_journal_could_not_take_is_journaled_once_the_disk_is_back(tmp_path):
    # GIVEN a call opened while the disk was full, then the disk back, then the process killed
    with tiny_disk(tmp_path / "disk") as disk:
        event = _event(7)
        child = subprocess.run([sys.executable, "-c", _JOURNAL_FAILS_THEN_CRASH, str(disk / "spool"),
                                json.dumps(event)], env={**os.environ, "PYTHONPATH": str(Path.cwd())},
                               capture_output=True, text=True)
        assert child.returncode == -9, child.stderr
        # WHEN a new emitter starts
        sink = Sink()
        recovered = Emitter(deliver=sink, spool_dir=disk / "spool", start=False)
        assert recovered.close(timeout=5)
    # THEN the call has its placeholder, billed once
    assert recovered.recovered_calls == 1 and sink.received[event["event_id"]] == 1


def test_a_cut_line_with_the_calls_id_does_not_stand_for_its_event(tmp_path):
    # GIVEN a call open in the journal, and a segment holding only a cut copy of its event
    event = _event(3)
    (tmp_path / f"calls-1{JOURNAL_SUFFIX}").write_text(json.dumps({"open": {**event, "status": "unknown"}}) + "\n")
    (tmp_path / "seg-1.jsonl").write_text(json.dumps(event)[:60])
    sink = Sink()
    emitter = Emitter(deliver=sink, spool_dir=tmp_path, start=False)
    # THEN the placeholder is written (the cut line is set aside, not counted as the event)
    assert emitter.recovered_calls == 1 and emitter.close(timeout=5)
    assert sink.received == Counter({event["event_id"]: 1}) and list(tmp_path.glob("*.bad"))


def test_a_segment_the_sink_keeps_refusing_holds_up_no_other(tmp_path):
    # GIVEN a first segment with an event the sink always refuses, and a second, good segment
    poison = _event(0)
    sink = Sink()
    refusing = lambda batch: [e for e in batch if e["event_id"] == poison["event_id"]] + sink(  # noqa: E731
        [e for e in batch if e["event_id"] != poison["event_id"]])
    emitter = Emitter(deliver=refusing, spool_dir=tmp_path, start=False)
    emitter.emit(poison)
    emitter._rotate()
    good = [_event(i) for i in range(1, 6)]
    for e in good:
        emitter.emit(e)
    # WHEN it flushes (it cannot finish: the poison stays)
    assert emitter.flush(timeout=0.5) is False
    # THEN the good events went out anyway
    assert all(sink.received[e["event_id"]] == 1 for e in good)
    assert emitter.pending_events() == 1


def test_flush_does_not_say_done_while_a_segment_cannot_be_sealed(tmp_path):
    emitter = Emitter(deliver=Sink(), spool_dir=tmp_path, start=False)
    emitter.emit(_event(1))
    with immutable(tmp_path):
        assert emitter.flush(timeout=0.3) is False  # the event is in an .open segment that cannot be renamed
    assert emitter.flush(timeout=5) is True
    emitter.close()


def test_no_call_is_journaled_after_close(tmp_path):
    emitter = Emitter(deliver=Sink(), spool_dir=tmp_path, start=False)
    assert emitter.close(timeout=5)
    with pytest.raises(ServiceUnavailable, match="shutting down"):
        emitter.open_call({**_event(1), "status": "unknown"})
    assert not list(tmp_path.glob(f"*{JOURNAL_SUFFIX}"))

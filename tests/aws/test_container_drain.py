"""The container's SIGTERM drain in-process (ingest/container.py ``drain``/``serve``, ingest/emit.py ``close``): a
Firehose that hangs on 127.0.0.1 cannot push the SQS hand-off (moto) past its mark nor the drain past its budget, a
gauge that fails at exit does not skip the drain, and counting the spool survives the delivery thread removing files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from common.constants import ENV_DRAIN_SECONDS, ENV_GRACEFUL_SECONDS
from ingest import container
from ingest.container import HANDOFF_SHARE, ContainerRuntime, ContainerSettings, drain
from ingest.emit import Emitter
from ingest.firehose import firehose_deliverer
from ingest.handoff import CALL_SECONDS, HandoffQueue, LambdaDelivery, call_seconds
from ingest.lambda_handler import GatewaySettings
from tests.aws.conftest import REGION, STREAM
from tests.aws.handoff_env import TEST_CALL_SECONDS, HangingServer, short_client

#: What a drain may take past its budget: its bookkeeping (segments read, the spool lock released), never a call.
MARGIN_SECONDS = 0.6  # room for a loaded CI machine; the bugs these tests pin took 2x the budget and 18 s


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


class TimedSqs:
    """A real (moto) SQS client that notes when the first SendMessageBatch began."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.first_send: float | None = None

    def send_message_batch(self, **kwargs: Any) -> Any:
        self.first_send = self.first_send or time.monotonic()
        return self.client.send_message_batch(**kwargs)


def spool_with_segments(spool: Path, segments: int, per_segment: int) -> list[str]:
    """A spool left with ``segments`` closed segments (a previous process); their event ids."""
    ids: list[str] = []
    writer = Emitter(deliver=lambda batch: list(batch), spool_dir=spool, start=False)  # its sink takes nothing
    for s in range(segments):
        for n in range(per_segment):
            ids.append(f"e{s}-{n}")
            writer.emit({"event_id": ids[-1], "team_id": "t"})
        writer._rotate()
    assert writer.close(timeout=0) is False  # the process is gone: its segments stay for the next one
    return ids


def queued_ids(sqs: Any, queue_url: str) -> list[str]:
    ids: list[str] = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            ids += [json.loads(line)["event_id"] for line in message["Body"].splitlines() if line]
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return ids


def test_a_hanging_firehose_cannot_delay_the_hand_off_nor_stretch_the_drain(
        tmp_path: Path, hanging: HangingServer) -> None:
    # GIVEN a task whose Firehose hangs, five segments in its spool, a call still open, its thread delivering
    ids = spool_with_segments(tmp_path / "spool", segments=5, per_segment=3)
    with mock_aws():
        moto_sqs = boto3.client("sqs", region_name=REGION)
        queue_url = moto_sqs.create_queue(QueueName="handoff")["QueueUrl"]
        sqs = TimedSqs(moto_sqs)
        queue = HandoffQueue(queue_url=queue_url, client=sqs, sleep=lambda s: None)
        delivery = LambdaDelivery(stream_name=STREAM, firehose=short_client("firehose", endpoint_url=hanging.url),
                                  queue=queue, call_seconds=TEST_CALL_SECONDS, track=False)
        emitter = Emitter(deliver=delivery, spool_dir=tmp_path / "spool", batch_size=2, flush_interval=0.05)
        emitter.open_call({"event_id": "open-1", "team_id": "t", "status": "unknown"})
        runtime = ContainerRuntime(app=None, emitter=emitter, spend=None, alerts=None, business_unit=None,
                                   handoff=queue, delivery=delivery)
        time.sleep(0.1)  # the thread's first pass is under way, its call hanging
        budget = 2.0
        # WHEN SIGTERM's drain runs with a 2 s budget (each hanging call costs 0.3 s: 5 segments x 3 batches x 4
        # attempts would be 18 s without deadlines)
        start = time.monotonic()
        drained = drain(runtime, seconds=budget)
        took = time.monotonic() - start
        # THEN Firehose was tried, the queue was reached before the 60 % mark, the drain ended within its budget
        assert hanging.connections, "Firehose was tried first"
        assert sqs.first_send is not None
        assert sqs.first_send - start <= budget * (1 - HANDOFF_SHARE) + MARGIN_SECONDS / 2
        assert took <= budget + MARGIN_SECONDS
        # AND nothing is left on the task's storage: every event, the open call's too, is queued exactly once
        assert drained is True and emitter.pending_events() == 0
        assert sorted(queued_ids(moto_sqs, queue_url)) == sorted([*ids, "open-1"])


def test_close_spends_one_budget_on_the_thread_and_the_flush(tmp_path: Path, hanging: HangingServer) -> None:
    # GIVEN an emitter whose thread is delivering to a hanging Firehose, every call ending by the same deadline
    budget = 1.2
    latest: list[float] = []
    deliver = firehose_deliverer(stream_name=STREAM, client=short_client("firehose", endpoint_url=hanging.url),
                                 sleep=lambda s: None, latest_start=lambda: latest[0] if latest else None)
    spool_with_segments(tmp_path / "spool", segments=3, per_segment=2)
    emitter = Emitter(deliver=deliver, spool_dir=tmp_path / "spool", flush_interval=0.05)
    time.sleep(0.1)
    # WHEN it is closed with 1.2 s (no call may begin after 1.2 s less one call)
    start = time.monotonic()
    latest.append(start + budget - TEST_CALL_SECONDS)
    left = emitter.close(timeout=budget)
    took = time.monotonic() - start
    # THEN the join and the flush shared the 1.2 s (not 1.2 s each), and the events are still in the spool
    assert took <= budget + MARGIN_SECONDS
    assert left is False and emitter.pending_events() == 6


def test_counting_the_spool_skips_segments_the_delivery_thread_removed(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a spool of three closed segments and one open one
    emitter = Emitter(deliver=lambda batch: [], spool_dir=tmp_path, start=False)
    for n in range(7):
        emitter.emit({"event_id": f"e{n}"})
        if n in (1, 3, 5):
            emitter._rotate()
    listed = emitter.pending_segments

    def listing_then_delivered() -> list[Path]:
        paths = listed()
        paths[0].unlink()  # the thread delivered and removed the oldest right after the listing
        return paths

    monkeypatch.setattr(emitter, "pending_segments", listing_then_delivered)
    # WHEN the gauge counts the spool THEN the removed segment is skipped, the others are counted
    assert emitter.pending_events() == 5
    monkeypatch.undo()
    emitter.close(timeout=1)


def test_counting_the_spool_counts_a_segment_sealed_after_the_listing_once(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an open segment of two events, sealed by the thread between the two listings of the count
    emitter = Emitter(deliver=lambda batch: [], spool_dir=tmp_path, start=False)
    emitter.emit({"event_id": "a"})
    emitter.emit({"event_id": "b"})
    listed = emitter.pending_segments

    def sealed_before_listing() -> list[Path]:
        emitter._rotate()  # the .open file is now a .jsonl
        return listed()

    monkeypatch.setattr(emitter, "pending_segments", sealed_before_listing)
    # WHEN the spool is counted THEN both events are counted once
    assert emitter.pending_events() == 2
    monkeypatch.undo()
    emitter.close(timeout=1)


def test_a_gauge_failing_at_exit_does_not_skip_the_drain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a task with one spooled event whose spool count fails (a segment vanished mid-count, a bug, anything)
    delivered: list[str] = []

    def deliver(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        delivered.extend(e["event_id"] for e in batch)
        return []

    emitter = Emitter(deliver=deliver, spool_dir=tmp_path, start=False)
    emitter.emit({"event_id": "e1"})
    runtime = ContainerRuntime(app=object(), emitter=emitter, spend=None, alerts=None, business_unit=None)
    monkeypatch.setattr(container.uvicorn.Server, "run", lambda self: None)  # SIGTERM came, the server returned
    real_count = emitter.pending_events

    def failing_count() -> int:
        raise FileNotFoundError("seg-1.open")

    monkeypatch.setattr(emitter, "pending_events", failing_count)
    # WHEN serve() stops THEN it returns (the gauge's error is logged, not raised)
    container.serve(runtime, ContainerSettings(port=1), metrics_interval=3600)
    # AND the drain ran: the event left the spool
    assert delivered == ["e1"]
    monkeypatch.undo()
    assert real_count() == 0


def test_settings_that_would_outlast_the_stop_timeout_are_refused() -> None:
    assert ContainerSettings().drain_seconds == container.DEFAULT_DRAIN_SECONDS  # the defaults fit
    with pytest.raises(ValueError) as refused:
        ContainerSettings.from_env({ENV_DRAIN_SECONDS: "60"})
    assert f"{ENV_GRACEFUL_SECONDS} + {ENV_DRAIN_SECONDS}: " in str(refused.value)
    assert "over ECS's stop timeout (120 s)" in str(refused.value)
    # a drain too short for Firehose's stage to begin one call would send nothing: refused, naming the variable
    with pytest.raises(ValueError, match=f"{ENV_DRAIN_SECONDS}: Input should be greater than or equal to 5"):
        ContainerSettings.from_env({ENV_DRAIN_SECONDS: "2"})
    assert container.MIN_DRAIN_SECONDS == CALL_SECONDS / (1 - container.HANDOFF_SHARE) == 5


def test_the_task_delivers_through_the_bounded_deliverer_with_the_lambdas_client_settings(tmp_path: Path) -> None:
    # GIVEN the container runtime built from its settings (clients from the environment, on moto)
    gateway = GatewaySettings(tenant_table="tenants", longpoll_table="longpoll", firehose_stream=STREAM,
                              handoff_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/handoff",
                              spool_dir=str(tmp_path / "spool"), region=REGION)
    with mock_aws():
        runtime = container.build_container_runtime(gateway=gateway, container=ContainerSettings())
        try:
            # THEN the emitter's deliver is the drain's bounded one, routing to the task's queue
            delivery = runtime.delivery
            assert delivery is not None and runtime.emitter.deliver is delivery
            assert delivery.queue is runtime.handoff and delivery.track is False
            # AND its Firehose and SQS calls cost at most what its deadlines reserve (the Lambda's clients)
            assert runtime.handoff is not None
            for client in (delivery.firehose, runtime.handoff.sqs):
                assert call_seconds(client.meta.config) == delivery.call_seconds == CALL_SECONDS
        finally:
            runtime.emitter.close(timeout=1)

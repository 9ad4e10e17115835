"""Synthetic usage events (schema v1) written straight into the raw lake layout, fast.

Vectorised with numpy and pyarrow (no per-row Python): 10 M events take seconds. The traffic is shaped like a
real gateway's: a skewed mix of teams and models (a few big consumers, a long tail), chat-sized token counts
(log-normal), prompt caching on Claude models, embeddings without output tokens, images by size and quality,
a few failed or throttled calls, batch-tier traffic, and one SageMaker endpoint the catalog has no price for.

Bad data is mixed in on purpose: invalid rows of several kinds (``INVALID_KINDS``) and duplicates written as
exact re-deliveries (same event, same ``event_id``, in another file of the same hour, as Firehose retries do).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa

from common.constants import RAW_EVENTS
from common.contracts import arrow_schema
from common.lake import Lake
from ingest.sink import STREAM_NAME

#: (model id as invoked, operation kind) — a realistic Bedrock mix, most used first.
MODELS: tuple[tuple[str, str], ...] = (
    ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "chat"),
    ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "chat"),
    ("anthropic.claude-3-haiku-20240307-v1:0", "chat"),
    ("amazon.titan-embed-text-v2:0", "embeddings"),
    ("us.amazon.nova-lite-v1:0", "chat"),
    ("us.amazon.nova-micro-v1:0", "chat"),
    ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "chat"),
    ("meta.llama3-1-8b-instruct-v1:0", "text"),
    ("us.anthropic.claude-sonnet-4-20250514-v1:0", "chat"),
    ("cohere.embed-english-v3", "embeddings"),
    ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "chat"),
    ("us.amazon.nova-pro-v1:0", "chat"),
    ("meta.llama3-1-70b-instruct-v1:0", "text"),
    ("mistral.mistral-large-2402-v1:0", "chat"),
    ("amazon.titan-image-generator-v2:0", "image"),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", "chat"),
    ("sm-endpoint-support-llm", "text"),  # a SageMaker endpoint: no catalog price, stays unpriced
    ("amazon.nova-canvas-v1:0", "image"),
    ("meta.llama3-3-70b-instruct-v1:0", "text"),
    ("mistral.mixtral-8x7b-instruct-v0:1", "text"),
    ("cohere.embed-multilingual-v3", "embeddings"),
    ("us.meta.llama3-2-3b-instruct-v1:0", "text"),
    ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "chat"),
    ("stability.stable-image-core-v1:1", "image"),
    ("mistral.mistral-small-2402-v1:0", "chat"),
    ("us.meta.llama3-2-11b-instruct-v1:0", "chat"),
    ("cohere.command-r-v1:0", "chat"),
    ("cohere.command-r-plus-v1:0", "chat"),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", "chat"),
    ("us.anthropic.claude-opus-4-1-20250805-v1:0", "chat"),
    ("amazon.titan-text-express-v1", "text"),
    ("amazon.titan-embed-text-v1", "embeddings"),
    ("us.meta.llama3-2-1b-instruct-v1:0", "text"),
    ("meta.llama3-8b-instruct-v1:0", "text"),
    ("amazon.titan-text-lite-v1", "text"),
    ("us.meta.llama4-scout-17b-instruct-v1:0", "chat"),
    ("us.meta.llama4-maverick-17b-instruct-v1:0", "chat"),
    ("mistral.pixtral-large-2502-v1:0", "chat"),
    ("us.amazon.nova-premier-v1:0", "chat"),
    ("stability.sd3-5-large-v1:0", "image"),
)
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1")
BUSINESS_UNITS = ("retail", "payments", "support", "research", "platform")
INVALID_KINDS = ("unknown_schema_version", "negative_tokens", "missing_team", "future_time", "bad_enum")


@dataclass
class GenerationSummary:
    """What :func:`generate` wrote. ``rows == unique + duplicates``; ``expected_written == unique - invalid``."""

    rows: int
    unique: int
    duplicates: int
    invalid: dict[str, int]
    days: list[str]
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def expected_written(self) -> int:
        return self.unique - sum(self.invalid.values())


def _zipf_weights(k: int, s: float = 1.1) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1) ** s
    return w / w.sum()


def _uuid4_strings(rng: np.random.Generator, n: int) -> pa.StringArray:
    """``n`` random UUID4 strings, built as one Arrow buffer (no Python string per row)."""
    hexed = np.frombuffer(rng.bytes(16 * n).hex().encode(), dtype=np.uint8).reshape(n, 32)
    out = np.empty((n, 36), dtype=np.uint8)
    src = 0
    for lo, hi in ((0, 8), (9, 13), (14, 18), (19, 23), (24, 36)):  # 8-4-4-4-12 hex digits between dashes
        out[:, lo:hi] = hexed[:, src:src + hi - lo]
        src += hi - lo
        if hi < 36:
            out[:, hi] = ord("-")
    out[:, 14] = ord("4")  # version 4
    out[:, 19] = np.frombuffer(b"89ab", dtype=np.uint8)[hexed[:, 16] % 4]  # RFC 4122 variant
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out.tobytes()))


def _pick(values: list[str] | tuple[str, ...], idx: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Strings chosen by index (NULL where ``mask``), decoded from a dictionary in one Arrow call."""
    indices = pa.array(idx.astype(np.int32), pa.int32(), mask=mask)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(values))).cast(pa.string())


def _lognormal_ints(rng: np.random.Generator, n: int, median: float, sigma: float, cap: int) -> np.ndarray:
    return np.minimum(rng.lognormal(np.log(median), sigma, n), cap).astype(np.int64) + 1


def _columns(rng: np.random.Generator, n: int, day: date, teams: int, models: int) -> dict[str, pa.Array]:
    """One day's ``n`` valid events, sorted by hour (so each hour is a contiguous slice)."""
    model_list = list(MODELS[:models]) + [(f"sm-endpoint-{i}", "text") for i in range(max(0, models - len(MODELS)))]
    team_idx = rng.choice(teams, size=n, p=_zipf_weights(teams, 0.9)).astype(np.int32)
    model_idx = rng.choice(len(model_list), size=n, p=_zipf_weights(len(model_list))).astype(np.int32)
    kinds = np.array([k for _, k in model_list])[model_idx]
    is_chat, is_embed, is_image = np.isin(kinds, ("chat", "text")), kinds == "embeddings", kinds == "image"
    hours = np.repeat(np.arange(24), rng.multinomial(n, _office_hours()))
    start_ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    times = start_ms + hours.astype(np.int64) * 3_600_000 + rng.integers(0, 3_600_000, n)
    status = rng.choice(4, size=n, p=[0.97, 0.01, 0.01, 0.01]).astype(np.int32)
    ok = status == 0
    inputs = np.where(is_image, 0, _lognormal_ints(rng, n, 600, 1.0, 200_000)) * ok
    outputs = np.where(is_chat, _lognormal_ints(rng, n, 250, 0.8, 8_000), 0) * ok
    claude = np.char.find(np.array([m for m, _ in model_list]), "anthropic")[model_idx] >= 0
    cache_read = np.where(claude & (rng.random(n) < 0.2), _lognormal_ints(rng, n, 2_000, 0.7, 100_000), 0) * ok
    cache_write = np.where(claude & (rng.random(n) < 0.05), _lognormal_ints(rng, n, 1_500, 0.7, 50_000), 0) * ok
    images = np.where(is_image, rng.integers(1, 5, n), 0) * ok
    size = rng.choice(np.array([512, 1024]), n)
    provider = np.where(np.char.startswith(np.array([m for m, _ in model_list]), "sm-endpoint")[model_idx], 1, 0)
    operation = np.select([is_embed, is_image, kinds == "text"], [2, 3, 1], 0).astype(np.int32)
    region_of_team = rng.choice(len(REGIONS), size=teams, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    team_names = [f"team-{i:03d}" for i in range(teams)]
    return {
        "schema_version": pa.array(np.ones(n, np.int32)),
        "event_id": _uuid4_strings(rng, n),
        "request_id": _uuid4_strings(rng, n),
        "event_time": pa.array(times, pa.timestamp("ms", tz="UTC")),
        "team_id": _pick(team_names, team_idx),
        "api_key_id": _pick([f"key-{i:03d}-{(i * 7919) % 10_000:04d}" for i in range(teams)], team_idx),
        "business_unit": _pick(BUSINESS_UNITS, team_idx % len(BUSINESS_UNITS)),
        "provider": _pick(("bedrock", "sagemaker"), provider.astype(np.int32)),
        "region": _pick(REGIONS, region_of_team[team_idx].astype(np.int32)),
        "model_id": _pick([m for m, _ in model_list], model_idx),
        "operation": _pick(("chat", "text", "embeddings", "image"), operation),
        "status": _pick(("ok", "client_error", "upstream_error", "throttled"), status),
        "http_status": pa.array(np.array([200, 400, 502, 429], np.int32)[status]),
        "input_tokens": pa.array(inputs), "output_tokens": pa.array(outputs),
        "cache_read_input_tokens": pa.array(cache_read), "cache_write_input_tokens": pa.array(cache_write),
        "image_count": pa.array(images),
        # no synthetic model bills input images or 1-hour cache writes (zeros keep the random stream unchanged)
        "input_image_count": pa.array(np.zeros(n, np.int64)),
        "cache_write_1h_input_tokens": pa.array(np.zeros(n, np.int64)),
        "image_width": pa.array(size.astype(np.int32), mask=~is_image),
        "image_height": pa.array(size.astype(np.int32), mask=~is_image),
        "image_quality": _pick(("standard", "premium"), (rng.random(n) < 0.2).astype(np.int32), mask=~is_image),
        "token_source": _pick(("exact", "estimated"), (rng.random(n) < 0.03).astype(np.int32)),
        "streaming": pa.array(rng.random(n) < 0.3),
        "service_tier": _pick(("on_demand", "batch"), (rng.random(n) < 0.05).astype(np.int32)),
        "latency_ms": pa.array(_lognormal_ints(rng, n, 900, 0.6, 120_000)),
        # the gateway's own figure and refusal reason: not what a synthetic producer knows (null, no random draw)
        "cost_usd": pa.nulls(n, pa.string()),
        "refusal_reason": pa.nulls(n, pa.string()),
    }


def _office_hours() -> np.ndarray:
    """Relative traffic per UTC hour: busy working hours, a quiet night."""
    w = np.array([2, 1, 1, 1, 1, 2, 4, 7, 10, 12, 12, 11, 10, 11, 12, 12, 11, 9, 7, 5, 4, 3, 3, 2], float)
    return w / w.sum()


def _spoil(table: pa.Table, rng: np.random.Generator, count: int, now: datetime) -> tuple[pa.Table, dict[str, int]]:
    """Make ``count`` random rows invalid, cycling through :data:`INVALID_KINDS`; returns the table and counts."""
    if count == 0:
        return table, {}
    rows = np.sort(rng.choice(table.num_rows, size=count, replace=False))
    kinds = np.arange(count) % len(INVALID_KINDS)
    cols = {name: table[name].to_numpy(zero_copy_only=False).copy() for name in
            ("schema_version", "input_tokens", "event_time", "provider", "team_id")}
    for k, kind in enumerate(INVALID_KINDS):
        hit = rows[kinds == k]
        if kind == "unknown_schema_version":
            cols["schema_version"][hit] = 2
        elif kind == "negative_tokens":
            cols["input_tokens"][hit] = -rng.integers(1, 1000, hit.size)
        elif kind == "missing_team":
            cols["team_id"][hit] = None
        elif kind == "future_time":  # a producer with a broken clock, three days ahead of the run
            cols["event_time"][hit] = np.datetime64(now.replace(tzinfo=None) + timedelta(days=3), "ms")
        else:
            cols["provider"][hit] = "azure"
    for name, values in cols.items():
        arr = pa.array(values, type=table.schema.field(name).type)
        table = table.set_column(table.schema.get_field_index(name), name, arr)
    return table, {kind: int((kinds == k).sum()) for k, kind in enumerate(INVALID_KINDS)}


def _write_day(lake: Lake, table: pa.Table, hours: np.ndarray, dup_rows: np.ndarray, day: date,
               files_per_hour: int, now: datetime) -> list[str]:
    """Hive-partitioned files as Firehose writes them: each hour (rows sorted by ``hours``) in ``files_per_hour``
    objects, plus one re-delivery object per hour holding that hour's duplicates."""
    written = []
    is_dup = np.zeros(table.num_rows, bool)
    is_dup[dup_rows] = True
    bounds = np.searchsorted(hours, np.arange(25))
    for hour in range(24):
        lo, hi = int(bounds[hour]), int(bounds[hour + 1])
        part = table.slice(lo, hi - lo)
        dups = table.take(pa.array(np.flatnonzero(is_dup[lo:hi]) + lo))
        prefix = (RAW_EVENTS, f"dt={day.isoformat()}", f"hour={hour:02d}")
        for k, chunk in enumerate(_chunks(part, files_per_hour)):
            stamp = now + timedelta(minutes=5 * k)
            name = f"{STREAM_NAME}-1-{stamp:%Y-%m-%d-%H-%M-%S}-{day:%Y%m%d}{hour:02d}{k:02d}.parquet"
            written.append(lake.write_parquet(chunk, *prefix, name))
        if dups.num_rows:
            name = f"{STREAM_NAME}-1-{now:%Y-%m-%d-%H-%M-%S}-{day:%Y%m%d}{hour:02d}-redelivery.parquet"
            written.append(lake.write_parquet(dups, *prefix, name))
    return written


def _chunks(table: pa.Table, parts: int) -> list[pa.Table]:
    size = -(-table.num_rows // max(parts, 1)) or 1
    return [table.slice(i, size) for i in range(0, table.num_rows, size)]


def generate(*, lake: Lake, n: int, days: int = 1, start: date | None = None, teams: int = 10, models: int = 15,
             duplicate_rate: float = 0.005, invalid_rate: float = 0.001, seed: int = 0, files_per_hour: int = 2,
             now: datetime | None = None) -> GenerationSummary:
    """Write ``n`` raw rows (duplicates included) over ``days`` days starting at ``start`` (default: today).

    Invalid rows are never chosen as duplicates, so the expected outcome is exact: ``rows - duplicates -
    invalid`` events reach ``usage_cost``. The event times lie in the days' partitions, so the "future" kind is
    placed three days after ``now`` (default: the current time) in its own day's folder.
    """
    began = time.perf_counter()
    now = now or datetime.now(UTC)
    start = start or now.date()
    rng = np.random.default_rng(seed)
    per_day = [n // days + (1 if d < n % days else 0) for d in range(days)]
    summary = GenerationSummary(rows=0, unique=0, duplicates=0, invalid={k: 0 for k in INVALID_KINDS}, days=[])
    for d, rows in enumerate(per_day):
        day = start + timedelta(days=d)
        dup_count = int(round(rows * duplicate_rate))
        unique = rows - dup_count
        table = pa.table(_columns(rng, unique, day, teams, models)).cast(arrow_schema())
        hours = table["event_time"].to_numpy().astype("datetime64[h]").astype(np.int64) % 24  # sorted
        table, invalid = _spoil(table, rng, int(round(unique * invalid_rate)), now)
        bad = np.zeros(unique, bool)
        if invalid:
            bad[_invalid_rows(table, day)] = True
        dup_rows = rng.choice(np.flatnonzero(~bad), size=dup_count, replace=False) if dup_count else np.array([], int)
        summary.files += _write_day(lake, table, hours, np.sort(dup_rows), day, files_per_hour, now)
        summary.rows += rows
        summary.unique += unique
        summary.duplicates += dup_count
        summary.days.append(day.isoformat())
        for kind, count in invalid.items():
            summary.invalid[kind] += count
    summary.seconds = round(time.perf_counter() - began, 3)
    return summary


def _invalid_rows(table: pa.Table, day: date) -> np.ndarray:
    """Indices of the rows :func:`_spoil` touched (each kind leaves a mark that valid rows never have)."""
    import pyarrow.compute as pc

    marks = [pc.not_equal(table["schema_version"], 1), pc.less(table["input_tokens"], 0),
             pc.is_null(table["team_id"]), pc.equal(table["provider"], "azure"),
             pc.greater_equal(table["event_time"], pa.scalar(datetime(day.year, day.month, day.day, tzinfo=UTC)
                                                              + timedelta(days=1), pa.timestamp("ms", tz="UTC")))]
    mask = marks[0]
    for m in marks[1:]:
        mask = pc.or_(mask, m)
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False))

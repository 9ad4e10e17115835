"""Gateway benchmark (issue 3 "Speed"): what the gateway adds in front of an OpenAI-compatible upstream.

Starts ``bench/fake_upstream.py`` and ``modelmeter serve --upstream http://127.0.0.1:PORT/v1`` as subprocesses on
127.0.0.1, then sends the same requests directly to the upstream and through the gateway:

* added latency p50 / p99, sequentially (direct and gateway requests alternating) and at concurrency 32 (gateway
  percentile − direct percentile);
* throughput at concurrency 32;
* streaming time to first byte;
* the cost of usage emission (``Emitter.emit`` p50, in process);
* the cost of pricing a call at the gateway (``GatewayPricer.cost_usd`` p50, in process, warm cache);
* the cost of the spend controls (``BudgetGuard`` check and add on the SQLite spend store, in process); the
  benchmark's team is in block mode with a budget it never reaches, so every request pays both;
* the gateway's CPU time per request at concurrency 32 (the server process's user + system time over the timed
  requests, from ``/proc/<pid>/stat``), beside the bare pass-through's, and the per-call cost of each step the
  gateway adds (price lookup, budget check + counter record, durable call record, event build + serialise), each
  timed in process with ``time.perf_counter_ns`` over many iterations;
* and, after a SIGTERM, that the lake holds exactly one usage event per request sent through the gateway.

Targets on 2 cores shared by client, gateway and upstream (issue 3, issue 15 item 4): added p50 ≤ 1 ms and
p99 ≤ 3 ms sequentially, ≤ 500 µs of gateway CPU per request at concurrency 32, ≥ 2,000 requests/s at concurrency
32, emission ≤ 0.2 ms p50. Each is printed last with its ratio to the target and "met" or "missed".
Run: ``python bench/gateway.py [--quick] [--json F]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import fastjson  # noqa: E402  (after the path tweak: runnable as a plain script)
from ingest.emit import Emitter  # noqa: E402
from ingest.ports import Team  # noqa: E402
from ingest.pricing import GatewayPricer  # noqa: E402
from ingest.providers.base import Usage  # noqa: E402
from ingest.tenants import LocalTenantRegistry  # noqa: E402
from ingest.usage import build_event  # noqa: E402

MODEL = "fake-chat"
CHAT = {"model": MODEL, "max_tokens": 7, "messages": [{"role": "user", "content": "How much did team A spend?"}]}
#: (figure, target, "le" | "ge" | "eq", unit): what ``_targets`` checks; issue 3 and issue 15 item 4.
TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 3.0
TARGET_CPU_US_PER_REQUEST = 500.0
TARGET_RPS_C32 = 2000
TARGET_EMIT_P50_MS = 0.2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all its threads) so far; ``None`` where it cannot be read.

    Linux's ``/proc/<pid>/stat`` fields 14 and 15 (``utime``, ``stime``, in clock ticks, see proc(5)); psutil
    elsewhere, when it is installed.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        pass
    try:
        import psutil  # optional: only where /proc is missing
    except ImportError:
        return None
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


# --- processes -------------------------------------------------------------------------------------------------

def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 - 127.0.0.1 only
            return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error status: the server is up
                return
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start_upstream() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "fake_upstream.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    _wait_http(f"{url}/models", proc)
    return proc, url


def start_gateway(work: Path, upstream: str) -> tuple[subprocess.Popen, str, str]:
    registry = LocalTenantRegistry(work / "tenants.json")
    # Block mode with a budget it never reaches: every call pays the spend check's read and the spend add.
    registry.put_team(Team(team_id="bench", cost_center="CC-BENCH", monthly_budget_usd=Decimal(10**6),
                           budget_mode="block"))
    _, secret = registry.create_key("bench")
    port = _free_port()
    code = "import sys; from modelmeter.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--port", str(port), "--upstream", upstream,
                             "--lake", str(work / "lake"), "--tenants", str(work / "tenants.json")],
                            env={**os.environ, "MODELMETER_SPOOL_DIR": str(work / "spool")})
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/healthz", proc)
    return proc, url, secret


def serve_bare_passthrough(upstream: str, port: int) -> None:
    """Reference point: a bare Starlette route forwarding bytes with one aiohttp session (no auth, no events).

    The issue quotes such a pass-through at 3,000 requests/s "on this kind of machine"; measuring it here, in the
    same run, shows what the machine allows today, so the gateway's figures can be read against it.
    """
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    session: list[aiohttp.ClientSession] = []

    async def chat(request: Any) -> Response:
        if not session:
            session.append(aiohttp.ClientSession())
        async with session[0].post(f"{upstream}/chat/completions", data=await request.body(),
                                   headers={"Content-Type": "application/json"}) as resp:
            return Response(await resp.read(), status_code=resp.status, media_type="application/json")

    async def health(_request: Any) -> Response:
        return Response(b"ok")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/healthz", health)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="uvloop",
                http="httptools")


def start_bare(upstream: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--bare-passthrough", upstream, str(port)])
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/healthz", proc)
    return proc, url


# --- measurements ----------------------------------------------------------------------------------------------

async def _one(session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, Any]) -> float:
    start = time.perf_counter()
    async with session.post(url, json=body, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url} answered {resp.status}")
    return time.perf_counter() - start


async def sequential(direct: tuple[str, dict[str, str]], through: tuple[str, dict[str, str]], n: int
                     ) -> tuple[list[float], list[float]]:
    """``n`` requests each way, one at a time, alternating direct and through the gateway: on a shared machine both
    series then see the same load, so their difference is the gateway's and not the minute's."""
    async with aiohttp.ClientSession() as session:
        for _ in range(min(200, n)):  # warm-up: connections, caches, first-call imports
            await _one(session, *direct, CHAT)
            await _one(session, *through, CHAT)
        direct_times, gateway_times = [], []
        for _ in range(n):
            direct_times.append(await _one(session, *direct, CHAT))
            gateway_times.append(await _one(session, *through, CHAT))
        return direct_times, gateway_times


async def concurrent(url: str, headers: dict[str, str], n: int, workers: int, *, server_pid: int | None = None
                     ) -> tuple[list[float], float, float | None]:
    """Latencies and wall time of ``n`` requests from ``workers`` clients, and the CPU seconds ``server_pid`` spent
    on them (the warm-up excluded)."""
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(_one(session, url, headers, CHAT) for _ in range(workers * 4)))  # warm-up
        latencies: list[float] = []
        remaining = n

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                latencies.append(await _one(session, url, headers, CHAT))

        cpu_before = cpu_seconds(server_pid) if server_pid else None
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        wall = time.perf_counter() - start
        cpu_after = cpu_seconds(server_pid) if server_pid else None
        cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
        return latencies, wall, cpu


async def ttfb(url: str, headers: dict[str, str], n: int) -> list[float]:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    out = []
    async with aiohttp.ClientSession() as session:
        for i in range(n + 20):
            start = time.perf_counter()
            async with session.post(url, json=body, headers=headers) as resp:
                await resp.content.readany()
                first = time.perf_counter() - start
                await resp.read()
            if i >= 20:
                out.append(first)
    return out


def emission_cost(n: int = 20000, *, fsync_interval: float = 0.2) -> tuple[list[float], list[float]]:
    """Per call, in process, with the background thread running (delivery, group-commit fsync): ``Emitter.emit``
    alone (a refused call), and ``open_call`` + ``emit`` (a model call: journaled before it is sent, then its
    event)."""
    from datetime import UTC, datetime

    with tempfile.TemporaryDirectory() as spool:
        emitter = Emitter(deliver=lambda batch: [], spool_dir=spool, fsync_interval=fsync_interval)
        emit_only, recorded = [], []
        for i in range(n):
            event = build_event(request_id=f"r{i}", event_time=datetime.now(UTC), team_id="bench",
                                api_key_id="mk_live_0123456789ab", business_unit=None, provider="openai_compatible",
                                region=None, model_id=MODEL, operation="chat", status="ok", http_status=200,
                                usage=Usage(input_tokens=12, output_tokens=7), streaming=False, latency_ms=1)
            start = time.perf_counter_ns()
            if i % 2:
                emitter.emit(event)
                emit_only.append((time.perf_counter_ns() - start) / 1e9)
            else:
                emitter.open_call({**event, "status": "unknown"})
                emitter.emit(event)
                recorded.append((time.perf_counter_ns() - start) / 1e9)
        emitter.close()
    return emit_only, recorded


def pricing_cost(n: int = 20000) -> dict[str, list[float]]:
    """Per call, in process: ``GatewayPricer.cost_usd`` of a finished call's event (the lookup is cached after the
    first call of a model and day, as in a running gateway), for a priced text model, a priced image model and the
    benchmark's unpriced ``fake-chat``."""
    from datetime import UTC, datetime

    from pricing_catalog import load_catalog

    pricer = GatewayPricer(catalog=load_catalog())
    cases = {
        "text": ("amazon.nova-lite-v1:0", Usage(input_tokens=1200, output_tokens=300, cache_read_input_tokens=50)),
        "image": ("amazon.titan-image-generator-v2:0", Usage(image_count=2, image_width=1024, image_height=1024,
                                                             image_quality="premium")),
        "unpriced": (MODEL, Usage(input_tokens=12, output_tokens=7)),
    }
    out: dict[str, list[float]] = {}
    for name, (model, usage) in cases.items():
        event = build_event(request_id="r", event_time=datetime.now(UTC), team_id="bench", api_key_id=None,
                            business_unit=None, provider="bedrock", region="us-east-1", model_id=model,
                            operation="chat", status="ok", http_status=200, usage=usage, streaming=False,
                            latency_ms=1)
        pricer.cost_usd(event)  # the first call of a lookup and day computes its price periods
        times = []
        for _ in range(n):
            start = time.perf_counter_ns()
            pricer.cost_usd(event)
            times.append((time.perf_counter_ns() - start) / 1e9)
        out[name] = times
    return out


def budget_cost(n: int = 20000) -> dict[str, list[float]]:
    """Per call, in process: the spend controls (``ingest/budget.py``) against the local SQLite spend store, for a
    block-mode team with a budget (the check's read at call start, the add at call end) and for a team with no
    budget and no daily-token limit (no read; the add only)."""
    from datetime import UTC, datetime

    from common.calendar import Calendar
    from ingest.budget import BudgetGuard
    from ingest.spend import SqliteSpendStore

    blocked = Team(team_id="bench-block", monthly_budget_usd=Decimal(10**6), budget_mode="block")
    plain = Team(team_id="bench")
    event = build_event(request_id="r", event_time=datetime.now(UTC), team_id="bench", api_key_id=None,
                        business_unit=None, provider="bedrock", region="us-east-1", model_id=MODEL, operation="chat",
                        status="ok", http_status=200, usage=Usage(input_tokens=12, output_tokens=7), streaming=False,
                        latency_ms=1, cost_usd="0.000012340000")
    out: dict[str, list[float]] = {"check": [], "record": [], "check_and_record": [], "record_only_no_budget": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteSpendStore(Path(tmp) / "tenants.spend.sqlite")
        guard = BudgetGuard(store=store, calendar=Calendar(), clock=lambda: datetime.now(UTC))
        for _ in range(n):
            start = time.perf_counter_ns()
            guard.check(blocked)
            middle = time.perf_counter_ns()
            guard.record(blocked, event)
            end = time.perf_counter_ns()
            guard.record(plain, event)
            out["check"].append((middle - start) / 1e9)
            out["record"].append((end - middle) / 1e9)
            out["check_and_record"].append((end - start) / 1e9)
            out["record_only_no_budget"].append((time.perf_counter_ns() - end) / 1e9)
        store.close()
    return out


def event_cost(n: int = 20000) -> dict[str, list[float]]:
    """Per call, in process: building a finished call's usage event (``build_event``) and serialising it to the
    spool's JSON line (``fastjson.dumps``), the two steps ``Call.finish`` does before the append."""
    from datetime import UTC, datetime

    out: dict[str, list[float]] = {"build": [], "serialise": [], "build_and_serialise": []}
    usage = Usage(input_tokens=12, output_tokens=7)
    for i in range(n):
        start = time.perf_counter_ns()
        event = build_event(request_id=f"r{i}", event_time=datetime.now(UTC), team_id="bench",
                            api_key_id="mk_live_0123456789ab", business_unit=None, provider="openai_compatible",
                            region=None, model_id=MODEL, operation="chat", status="ok", http_status=200, usage=usage,
                            streaming=False, latency_ms=1)
        middle = time.perf_counter_ns()
        fastjson.dumps(event)
        end = time.perf_counter_ns()
        out["build"].append((middle - start) / 1e9)
        out["serialise"].append((end - middle) / 1e9)
        out["build_and_serialise"].append((end - start) / 1e9)
    return out


def count_lake_events(lake: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in (lake / "raw" / "usage_events").rglob("*.parquet"))


# --- the run ---------------------------------------------------------------------------------------------------

async def measure(upstream: str, gateway: str, secret: str, bare: str, *, seq_n: int, conc_n: int, stream_n: int,
                  gateway_pid: int, bare_pid: int) -> tuple[dict[str, Any], int]:
    no_headers: dict[str, str] = {}
    direct = (f"{upstream}/chat/completions", no_headers)
    through = (f"{gateway}/v1/chat/completions", {"Authorization": f"Bearer {secret}"})
    results: dict[str, Any] = {}
    sent = 0
    seq_d, seq_g = await sequential(direct, through, seq_n)
    sent += seq_n + min(200, seq_n)
    results["sequential"] = _compare(seq_d, seq_g)
    lat_d, wall_d, _ = await concurrent(*direct, conc_n, 32)
    lat_g, wall_g, cpu_g = await concurrent(*through, conc_n, 32, server_pid=gateway_pid)
    sent += conc_n + 32 * 4
    lat_b, wall_b, cpu_b = await concurrent(f"{bare}/v1/chat/completions", {}, conc_n, 32, server_pid=bare_pid)
    results["concurrency_32"] = {**_compare(lat_d, lat_g), "direct_rps": round(conc_n / wall_d),
                                 "gateway_rps": round(conc_n / wall_g),
                                 "bare_passthrough_rps": round(conc_n / wall_b),
                                 "bare_passthrough_p50_ms": _ms(_pct(lat_b, 0.5)),
                                 # the server process's CPU per request (/proc clock ticks: 10 ms resolution)
                                 "gateway_cpu_us_per_request": _per_request_us(cpu_g, conc_n),
                                 "bare_passthrough_cpu_us_per_request": _per_request_us(cpu_b, conc_n)}
    ttfb_d = await ttfb(*direct, stream_n)
    ttfb_g = await ttfb(*through, stream_n)
    sent += stream_n + 20
    results["streaming_ttfb"] = _compare(ttfb_d, ttfb_g)
    return results, sent


def _per_request_us(cpu: float | None, n: int) -> float | None:
    return None if cpu is None else round(cpu / n * 1e6, 1)


def _compare(direct: list[float], gateway: list[float]) -> dict[str, float]:
    return {"direct_p50_ms": _ms(_pct(direct, 0.5)), "gateway_p50_ms": _ms(_pct(gateway, 0.5)),
            "added_p50_ms": _ms(_pct(gateway, 0.5) - _pct(direct, 0.5)),
            "direct_p99_ms": _ms(_pct(direct, 0.99)), "gateway_p99_ms": _ms(_pct(gateway, 0.99)),
            "added_p99_ms": _ms(_pct(gateway, 0.99) - _pct(direct, 0.99)), "n": len(gateway)}


def in_process_figures() -> dict[str, Any]:
    """The per-call cost of each step the gateway adds to a pass-through, timed in process."""
    emit, recorded = emission_cost()
    _, unsynced = emission_cost(fsync_interval=1e9)
    results: dict[str, Any] = {}
    results["emission"] = {"emit_p50_ms": _ms(statistics.median(emit)), "emit_p99_ms": _ms(_pct(emit, 0.99)),
                           "journal_and_emit_p50_ms": _ms(statistics.median(recorded)),
                           "journal_and_emit_p99_ms": _ms(_pct(recorded, 0.99)),
                           "journal_and_emit_no_fsync_p50_ms": _ms(statistics.median(unsynced)),
                           "journal_and_emit_no_fsync_p99_ms": _ms(_pct(unsynced, 0.99))}
    priced = pricing_cost()
    results["pricing"] = _us_table(priced)
    spent = budget_cost()
    results["budget"] = _us_table(spent)
    built = event_cost()
    results["event"] = _us_table(built)
    # one model call through the spend controls pays each of these once (the priced text case: the costliest)
    results["steps_per_call_p50_us"] = steps = {
        "price_lookup": _us(priced["text"], 0.5),
        "budget_check_and_counter_record": _us(spent["check_and_record"], 0.5),
        "durable_call_record_journal_and_spool_append": _us(recorded, 0.5),
        "event_build_and_serialise": _us(built["build_and_serialise"], 0.5),
    }
    steps["sum"] = round(sum(steps.values()), 2)
    return results


def _us(times: list[float], q: float) -> float:
    return round(_pct(times, q) * 1e6, 2)


def _us_table(timed: dict[str, list[float]]) -> dict[str, float]:
    return {f"{name}_{q}_us": _us(times, p) for name, times in timed.items() for q, p in (("p50", 0.5), ("p99", 0.99))}


def targets(results: dict[str, Any], *, sent: int, landed: int) -> list[dict[str, Any]]:
    """Each target with its figure, its ratio to the target and whether it was met."""
    seq, c32, emission = results["sequential"], results["concurrency_32"], results["emission"]
    rows = [
        ("added latency p50, sequential (ms)", seq["added_p50_ms"], "<=", TARGET_ADDED_P50_MS),
        ("added latency p99, sequential (ms)", seq["added_p99_ms"], "<=", TARGET_ADDED_P99_MS),
        ("gateway CPU per request at c32 (us)", c32["gateway_cpu_us_per_request"], "<=", TARGET_CPU_US_PER_REQUEST),
        ("throughput at c32 (req/s)", c32["gateway_rps"], ">=", TARGET_RPS_C32),
        ("Emitter.emit p50 (ms)", emission["emit_p50_ms"], "<=", TARGET_EMIT_P50_MS),
        ("journal + emit p50 (ms)", emission["journal_and_emit_p50_ms"], "<=", TARGET_EMIT_P50_MS),
        ("usage events in the lake / requests sent", landed, "==", sent),
    ]
    out = []
    for name, value, op, target in rows:
        met = value is not None and (value <= target if op == "<=" else value >= target if op == ">=" else
                                     value == target)
        ratio = round(value / target, 2) if value is not None and target else None
        out.append({"target": name, "measured": value, "op": op, "goal": target, "ratio": ratio,
                    "verdict": "met" if met else "missed"})
    return out


def print_report(results: dict[str, Any]) -> None:
    """The steps' per-call costs beside the CPU per request, then every target with its ratio and verdict."""
    c32, steps = results["concurrency_32"], results["steps_per_call_p50_us"]
    print("\nper-call cost of each step the gateway adds (p50, in process):")
    for name, value in steps.items():
        print(f"  {name:<48} {value:>9.2f} us")
    print(f"CPU per request at concurrency 32: gateway {c32['gateway_cpu_us_per_request']} us, "
          f"bare pass-through {c32['bare_passthrough_cpu_us_per_request']} us (same run)")
    seq = results["sequential"]
    print(f"sequential (alternating): direct p50 {seq['direct_p50_ms']} / p99 {seq['direct_p99_ms']} ms, "
          f"gateway p50 {seq['gateway_p50_ms']} / p99 {seq['gateway_p99_ms']} ms ({seq['n']} each)")
    print(f"\ntargets (load average before the run: {results['machine']['load_average_before']}):")
    for row in results["targets"]:
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
        print(f"  {row['target']:<44} {row['measured']!s:>10}  target {row['op']} {row['goal']!s:<8} "
              f"ratio {ratio:>6}  {row['verdict']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gateway benchmark (issue 3, issue 15 item 4)")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--bare-passthrough", nargs=2, metavar=("UPSTREAM", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_passthrough:  # the reference server, run as a subprocess of the benchmark
        serve_bare_passthrough(args.bare_passthrough[0], int(args.bare_passthrough[1]))
        return 0
    seq_n, conc_n, stream_n = (300, 2000, 100) if args.quick else (2000, 20000, 500)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    load = [round(x, 2) for x in os.getloadavg()]  # the 2 cores are shared: say how busy they were
    with tempfile.TemporaryDirectory(prefix="modelmeter-bench-") as tmp:
        work = Path(tmp)
        up_proc, upstream = start_upstream()
        gw_proc = bare_proc = None
        try:
            gw_proc, gateway, secret = start_gateway(work, upstream)
            bare_proc, bare = start_bare(upstream)
            results, sent = asyncio.run(measure(upstream, gateway, secret, bare, seq_n=seq_n, conc_n=conc_n,
                                                stream_n=stream_n, gateway_pid=gw_proc.pid, bare_pid=bare_proc.pid))
            gw_proc.send_signal(signal.SIGTERM)
            gw_proc.wait(60)
            landed = count_lake_events(work / "lake")
        finally:
            for proc in (gw_proc, bare_proc, up_proc):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    proc.wait(30)
    results.update(in_process_figures())
    results["events"] = {"requests_through_gateway": sent, "events_in_lake": landed}
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "load_average_before": load,
                          "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    results["targets"] = targets(results, sent=sent, landed=landed)
    print(json.dumps(results, indent=2))
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

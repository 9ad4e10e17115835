"""``modelmeter demo``: the whole local path on simulated tenants, in under a minute.

1. registers ten teams (cost centres, budgets, model allowlists, limits) and one API key each;
2. starts the real gateway on 127.0.0.1 with the **simulator** model backend (clearly labelled: deterministic
   text and Converse-like token counts, no model is called) and a **simulated clock** that replays a week of
   office-hours traffic in a few seconds;
3. sends the traffic over HTTP with the clients teams really use: ``requests`` exactly as the seed's notebooks
   call ``/invoke_model`` (text, messages, embeddings, images, the long-poll flow) and the ``openai`` SDK on
   ``/v1`` (chat, streaming, embeddings), including a few refused calls (spoofed team, model outside the
   allowlist, a daily token limit);
4. lands a partner's JSON Lines batch with ``modelmeter ingest`` (one re-delivered and two malformed lines);
5. runs the transform, prints the chargeback table, writes the HTML dashboard and a FOCUS 1.2 export.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from common.constants import ALERTS, ALERTS_FILE
from common.contracts import Limits, Team
from common.errors import UserError
from common.lake import Lake
from common.progress import Progress, ProgressCallback, no_progress
from dashboards.focus import KNOWN_VALIDATOR_DEFECTS, export_focus, run_validator
from dashboards.html import render_dashboard
from finance.reconcile import period_days
from ingest.alerts import LocalAlerts
from ingest.app import create_app
from ingest.emit import local_emitter
from ingest.files import ingest_files
from ingest.longpoll import MemoryLongPollStore
from ingest.providers.registry import build_router
from ingest.server import start_background
from ingest.spend import SqliteSpendStore, store_path
from ingest.tenants import LocalTenantRegistry
from modelmeter.demo_close import billing_period_of, month_end_close
from sql.reference import write_teams
from transforms.report import fit_columns, format_table, money_text, report_rows
from transforms.run import transform_range

MARKER = ".modelmeter-demo"
#: What the demo prints (DESIGN.md's report columns, then images and unpriced calls).
CHARGEBACK_COLUMNS = ("team_id", "model_id", "invocations", "input_tokens", "output_tokens", "input_cost",
                      "output_cost", "total_cost", "image_count", "unpriced_invocations")
CONCURRENCY = 12


@dataclass(frozen=True)
class DemoTeam:
    team_id: str
    cost_center: str
    budget: str
    models: dict[str, float]  # model id -> weight of the team's traffic
    weight: float  # share of all traffic
    client: str  # "seed" (requests on /invoke_model) or "openai" (SDK on /v1)
    tz: str = "UTC"
    daily_tokens: int | None = None
    allow: tuple[str, ...] = ()  # allowlist patterns; empty = exactly the team's models
    context_words: int = 300  # typical size of the document sent along with a prompt (log-normal around it)
    budget_mode: str = "alert"  # block: refused with 429 once the month's spend reaches the budget


HAIKU3 = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET35 = "anthropic.claude-3-5-sonnet-20240620-v1:0"
HAIKU35 = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
SONNET37 = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
SONNET4 = "us.anthropic.claude-sonnet-4-20250514-v1:0"
SONNET45 = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU45 = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
LLAMA8 = "meta.llama3-1-8b-instruct-v1:0"
LLAMA70 = "us.meta.llama3-3-70b-instruct-v1:0"
NOVA_MICRO = "amazon.nova-micro-v1:0"
NOVA_LITE = "us.amazon.nova-lite-v1:0"
NOVA_PRO = "amazon.nova-pro-v1:0"
MISTRAL = "mistral.mistral-large-2402-v1:0"
TITAN_EMBED = "amazon.titan-embed-text-v2:0"
COHERE_EMBED = "cohere.embed-english-v3"
TITAN_IMAGE = "amazon.titan-image-generator-v2:0"
NOVA_CANVAS = "amazon.nova-canvas-v1:0"
FINE_TUNED = "support-bot-ft-v3"  # a team's own fine-tune on a SageMaker endpoint: no catalog price (unpriced)

EMBEDDING_MODELS = {TITAN_EMBED, COHERE_EMBED}
IMAGE_MODELS = {TITAN_IMAGE, NOVA_CANVAS}

TEAMS: tuple[DemoTeam, ...] = (
    DemoTeam("search", "CC-1001", "4000", {HAIKU45: 4, TITAN_EMBED: 5, SONNET45: 1}, 1.6, "openai", context_words=120),
    DemoTeam("support-bot", "CC-2040", "2500", {HAIKU35: 5, HAIKU3: 3, FINE_TUNED: 2}, 1.4, "seed", context_words=600),
    DemoTeam("marketing-studio", "CC-3100", "1500", {TITAN_IMAGE: 3, NOVA_CANVAS: 3, NOVA_PRO: 2}, 0.7, "seed",
             context_words=80),
    DemoTeam("data-science", "CC-4200", "6000", {SONNET4: 3, SONNET37: 2, LLAMA70: 2, MISTRAL: 1}, 1.2, "openai",
             context_words=1500),
    DemoTeam("legal-review", "CC-5005", "3000", {SONNET35: 3, SONNET45: 2}, 0.6, "seed", context_words=4000),
    DemoTeam("fraud-detect", "CC-6110", "800", {COHERE_EMBED: 4, LLAMA8: 3}, 0.9, "seed", context_words=150),
    DemoTeam("mobile-app", "CC-7300", "1000", {NOVA_MICRO: 5, NOVA_LITE: 3}, 1.3, "openai", context_words=200),
    # a team on a small budget in alert mode (its thresholds alert once each, calls go on) and one in block mode
    # (refused with 429 once its month's spend reaches the budget): the week's spend is about $1 and $0.40
    DemoTeam("sales-copilot", "CC-8020", "0.80", {SONNET4: 2, HAIKU45: 3}, 0.8, "openai", tz="America/Los_Angeles",
             context_words=900),
    DemoTeam("platform-eval", "CC-9000", "0.15", {NOVA_LITE: 2, LLAMA8: 2, MISTRAL: 1}, 0.5, "seed",
             allow=("*nova*", "meta.*", "mistral.*"), context_words=700, budget_mode="block"),
    DemoTeam("finance-ops", "CC-9100", "200", {HAIKU3: 1}, 0.4, "openai", daily_tokens=6000, context_words=1200),
)


class SimulatedClock:
    """SIMULATED time for the demo: the gateway stamps events with the time of the latest dispatched call.

    The demo replays a week in seconds; calls are dispatched in time order, so with a dozen in flight an event's
    time is off by at most a few simulated minutes. Never used outside ``modelmeter demo``.
    """

    def __init__(self, start: datetime, *, shared: Any = None):
        self._now = start
        self._shared = shared  # a multiprocessing.Value('d') the gateway process reads, when it runs apart
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return self._now

    def advance_to(self, when: datetime) -> None:
        with self._lock:
            if when > self._now:
                self._now = when
                if self._shared is not None:
                    self._shared.value = when.timestamp()


@dataclass(order=True)
class Call:
    when: datetime
    team: DemoTeam = field(compare=False)
    model_id: str = field(compare=False)
    kind: str = field(compare=False)  # chat | stream | text | longpoll | embeddings | image | spoof | disallowed
    prompt: str = field(compare=False, default="")
    image: dict[str, Any] = field(compare=False, default_factory=dict)


def _office_hour(rng: random.Random) -> float:
    """A local hour of the day, mostly 8-19 with a lunch dip, some evening traffic."""
    if rng.random() < 0.15:
        return rng.uniform(19, 23)
    hour = rng.gauss(13.5, 2.8)
    return min(max(hour, 7.0), 19.9)


def build_schedule(*, rng: random.Random, requests: int, days: int, end: date) -> list[Call]:
    """``requests`` calls spread over ``days`` days ending the day before ``end``, weekdays busier."""
    first = end - timedelta(days=days)
    day_weights = [1.0 if (first + timedelta(d)).weekday() < 5 else 0.25 for d in range(days)]
    calls = []
    for _ in range(requests):
        team = rng.choices(TEAMS, weights=[t.weight for t in TEAMS])[0]
        model = rng.choices(list(team.models), weights=list(team.models.values()))[0]
        day = first + timedelta(days=rng.choices(range(days), weights=day_weights)[0])
        hour = _office_hour(rng)
        local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(team.tz)) + timedelta(hours=hour)
        when = local.astimezone(UTC)
        if when.date() >= end:  # an evening in UTC-8 can fall on the next UTC day: keep the week complete
            when -= timedelta(days=1)
        kind = _kind(rng, team, model)
        image = _image_body(rng) if kind == "image" else {}
        calls.append(Call(when, team, model, kind, prompt=_prompt(rng, team, kind), image=image))
    calls.sort()
    _make_sure_of_refusals(calls)
    return calls


def _make_sure_of_refusals(calls: list[Call]) -> None:
    """However small the run, show each kind of refused call at least once (a spoof, a disallowed model)."""
    for kind, eligible in (("spoof", lambda c: c.team.client == "seed"),
                           ("disallowed", lambda c: c.team.client == "seed" and bool(c.team.allow))):
        if any(c.kind == kind for c in calls):
            continue
        candidates = [c for c in calls if eligible(c) and c.kind in ("chat", "text")]
        if candidates:
            candidates[len(candidates) // 2].kind = kind


def _kind(rng: random.Random, team: DemoTeam, model: str) -> str:
    if model in EMBEDDING_MODELS:
        return "embeddings"
    if model in IMAGE_MODELS:
        return "image"
    roll = rng.random()
    if roll < 0.01:
        return "spoof"  # claims another team in the team_id header: refused, 403
    if team.allow and roll < 0.04:
        return "disallowed"  # a model outside the team's allowlist: refused, 403
    if team.client == "openai":
        return "stream" if roll < 0.35 else "chat"
    return "longpoll" if roll < 0.08 else ("text" if roll < 0.3 else "chat")


#: The seed chats that classify a transaction offer this tool: the simulator answers them with a toolUse block.
CLASSIFY_TOOL = {"tools": [{"toolSpec": {
    "name": "record_category", "description": "Record a transaction's category.",
    "inputSchema": {"json": {"type": "object", "required": ["category"], "properties": {
        "category": {"enum": ["travel", "software", "hardware", "other"]}}}}}}]}
PROMPTS = (
    "Summarise the attached support ticket in three bullet points.",
    "Draft a polite reply declining the meeting and proposing next Tuesday.",
    "Classify this transaction description as travel, software, hardware or other.",
    "Explain the difference between a cache hit and a cache write in two sentences.",
    "Write a product description for a waterproof hiking backpack.",
    "List the risks in this contract clause about limitation of liability.",
)


_FILLER = ("invoice", "customer", "agreement", "shipment", "refund", "account", "policy", "quarter", "region",
           "renewal", "ticket", "contract", "supplier", "liability", "forecast", "payment", "service", "order")


def _prompt(rng: random.Random, team: DemoTeam, kind: str) -> str:
    """A prompt plus a document of a size typical of the team (a few words for embeddings)."""
    words = team.context_words if kind != "embeddings" else team.context_words // 4
    n = max(5, int(rng.lognormvariate(0, 0.6) * words))
    return rng.choice(PROMPTS) + "\n\n" + " ".join(rng.choices(_FILLER, k=n))


class Driver:
    """Sends the schedule through the gateway with real clients; counts HTTP statuses."""

    def __init__(self, *, base_url: str, keys: dict[str, str], clock: SimulatedClock):
        self.base_url = base_url
        self.keys = keys
        self.clock = clock
        self.statuses: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()

    def _session(self):
        import requests

        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _openai(self, team_id: str):
        import openai

        clients = self._local.__dict__.setdefault("openai", {})
        if team_id not in clients:
            clients[team_id] = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=self.keys[team_id],
                                             max_retries=0, timeout=30)
        return clients[team_id]

    def run(self, calls: list[Call], *, progress: ProgressCallback = no_progress) -> None:
        """Send ``calls`` in order; ``progress`` is told ``(answered, calls, "")`` as answers come back."""
        answered = 0
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            futures = []
            for call in calls:
                self.clock.advance_to(call.when)
                futures.append(pool.submit(self._one, call))
                if len(futures) >= CONCURRENCY * 4:  # keep dispatch close to completion, so times stay close
                    futures.pop(0).result()
                    answered += 1
                    progress(answered, len(calls), "")
            for f in futures:
                f.result()
                answered += 1
                progress(answered, len(calls), "")

    def _one(self, call: Call) -> None:
        prompt = call.prompt
        if call.team.client == "openai" and call.kind in ("chat", "stream", "embeddings"):
            status = self._via_openai(call, prompt)
        else:
            status = self._via_seed(call, prompt)
        with self._lock:
            self.statuses[status] += 1

    def _via_openai(self, call: Call, prompt: str) -> int:
        import openai

        client = self._openai(call.team.team_id)
        try:
            if call.kind == "embeddings":
                client.embeddings.create(model=call.model_id, input=[prompt])
            elif call.kind == "stream":
                stream = client.chat.completions.create(
                    model=call.model_id, messages=[{"role": "user", "content": prompt}], max_tokens=300,
                    stream=True, stream_options={"include_usage": True})
                for _ in stream:
                    pass
            else:
                client.chat.completions.create(model=call.model_id, max_tokens=400, messages=[
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": prompt}])
            return 200
        except openai.APIStatusError as exc:
            return exc.status_code

    def _via_seed(self, call: Call, prompt: str) -> int:
        team, model = call.team.team_id, call.model_id
        headers = {"x-api-key": self.keys[team], "team_id": team}
        body: dict[str, Any] = {"inputs": prompt, "parameters": {"maxTokens": 300, "temperature": 0.2}}
        if call.kind == "spoof":
            headers["team_id"] = "finance-ops"
        elif call.kind == "disallowed":
            model = SONNET4
        elif call.kind == "embeddings":
            headers["type"] = "embeddings"
            body = {"inputs": prompt}
        elif call.kind == "image":
            headers["type"] = "image"
            body = call.image
        elif call.kind in ("chat", "longpoll"):
            headers["messages_api"] = "true"
            body = {"inputs": [{"role": "user", "content": [{"text": prompt}]}],
                    "parameters": {"maxTokens": 400, "temperature": 0.3, "system": "Answer briefly."},
                    **({"tool_config": CLASSIFY_TOOL} if prompt.startswith("Classify") else {})}
        if call.kind == "longpoll":
            return self._long_poll(model, headers, body)
        response = self._session().post(f"{self.base_url}/invoke_model", params={"model_id": model},
                                        json=body, headers=headers, timeout=30)
        return response.status_code

    def _long_poll(self, model: str, headers: dict[str, str], body: dict[str, Any]) -> int:
        """The seed's async flow: start, then re-POST with requestId until the text is there."""
        session = self._session()
        headers = {**headers, "streaming": "true"}
        url = f"{self.base_url}/invoke_model"
        first = session.post(url, params={"model_id": model}, json=body, headers=headers, timeout=30)
        if first.status_code != 200:
            return first.status_code
        request_id = first.json()[0]["request_id"]
        for _ in range(200):
            time.sleep(0.02)  # the seed's notebooks wait 2 s; the simulator answers in milliseconds
            poll = session.post(url, params={"model_id": model, "requestId": request_id}, json={}, headers=headers,
                                timeout=30)
            if poll.status_code != 200 or "generated_text" in poll.json()[0]:
                return poll.status_code
        return 504


def _image_body(rng: random.Random) -> dict[str, Any]:
    size = rng.choice((512, 1024, 1024))
    quality = rng.choice(("standard", "standard", "premium"))
    return {"textToImageParams": {"text": "a lighthouse at dawn, watercolour"},
            "parameters": {"taskType": "TEXT_IMAGE", "imageGenerationConfig": {
                "numberOfImages": rng.choice((1, 1, 2)), "width": size, "height": size, "quality": quality}}}


def partner_batch(path: Path, *, rng: random.Random, day: date) -> int:
    """A partner's nightly batch as JSON Lines: one re-delivered event and two malformed lines, on purpose."""
    lines = []
    for i in range(40):
        when = datetime(day.year, day.month, day.day, 2, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 3600))
        lines.append(json.dumps({
            "schema_version": 1, "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "request_id": f"batch-{i}",
            "event_time": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "team_id": "data-science",
            "provider": "bedrock", "region": "us-east-1", "model_id": NOVA_PRO, "operation": "chat",
            "status": "ok", "input_tokens": rng.randint(2000, 9000), "output_tokens": rng.randint(200, 900),
            "service_tier": "batch"}))
    lines.append(lines[7])  # delivered twice: the transform counts it once
    lines.append('{"schema_version": 1, "event_id": "broken"')  # truncated line
    negative = json.loads(lines[3]) | {"event_id": str(uuid.UUID(int=rng.getrandbits(128))), "input_tokens": -120}
    lines.append(json.dumps(negative))  # negative tokens: structurally fine, refused by the transform's rules
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def _prepare_lake(uri: str | None) -> Lake:
    lake = Lake.open(uri)
    if not lake.is_local:

        raise UserError("the demo runs on a local lake folder; pass --lake DIR")
    root = Path(lake.base)
    if any(root.iterdir()):
        if not (root / MARKER).exists():

            raise UserError(f"{root} is not empty and was not made by the demo; pass --lake to a new folder")
        shutil.rmtree(root)
        root.mkdir(parents=True)
    (root / MARKER).write_text("made by `modelmeter demo`; the demo wipes and rebuilds this folder\n")
    return lake


def _register_teams(registry: Any) -> dict[str, str]:

    keys = {}
    for t in TEAMS:
        allowed = t.allow or tuple(t.models)
        registry.put_team(Team(team_id=t.team_id, cost_center=t.cost_center, monthly_budget_usd=Decimal(t.budget),
                               allowed_models=allowed, limits=Limits(daily_tokens=t.daily_tokens),
                               budget_mode=t.budget_mode))
        _, secret = registry.create_key(t.team_id)
        keys[t.team_id] = secret
    return keys


def _print_budgets(lake: Lake) -> None:
    """The spend controls as a team lead sees them: the alerts the gateway raised (one per threshold and month)."""
    path = Path(lake.path(ALERTS, ALERTS_FILE))
    alerts = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
    for a in alerts:
        print(f"  budget alert: {a.get('team_id')} reached {a.get('threshold_pct')} % of its "
              f"{a.get('budget_usd')} USD {a.get('budget_mode')}-mode budget for {a.get('period')}")
    print(f"  {len(alerts)} budget alerts in {path} (blocked calls: 429 with refusal_reason budget; a team reads its "
          f"own figures at GET /v1/usage)")


def _step(label: str) -> Callable[[], None]:
    started = time.perf_counter()
    print(f"… {label}", flush=True)
    return lambda: print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``modelmeter demo``."""
    t0 = time.perf_counter()
    rng = random.Random(args.seed)
    lake = _prepare_lake(args.lake)
    root = Path(lake.base)
    today = datetime.now(UTC).date()
    first_day, last_day = today - timedelta(days=args.days), today - timedelta(days=1)

    done = _step(f"registering {len(TEAMS)} teams and their API keys")

    registry_file = root / "registry" / "tenants.json"
    registry = LocalTenantRegistry(registry_file)
    keys = _register_teams(registry)
    _write_reference(lake, registry)
    done()

    done = _step(f"sending {args.requests} requests through the gateway (SIMULATOR model backend, simulated clock)")
    statuses = _drive_gateway(lake=lake, registry_file=registry_file, keys=keys, rng=rng, requests=args.requests,
                              days=args.days, end=today)
    print("  HTTP statuses: " + ", ".join(f"{code}×{n}" for code, n in sorted(statuses.items())))
    _print_budgets(lake)
    done()

    done = _step("landing a partner's JSON Lines batch with `modelmeter ingest`")

    batch = root / "inbox" / "partner-batch.jsonl"
    batch.parent.mkdir(parents=True, exist_ok=True)
    partner_batch(batch, rng=rng, day=last_day)
    result = ingest_files(lake, [batch])
    print(f"  read {result.read} / landed {result.landed} / quarantined {result.quarantined}")
    done()

    done = _step(f"transform {first_day} … {last_day}: validate, quarantine, dedupe, price")

    manifests = transform_range(lake=lake, date_from=first_day, date_to=last_day)
    _print_manifest_totals(manifests)
    done()

    print()

    print(f"Chargeback {first_day} … {last_day}, USD, exact (every column: `modelmeter report --lake {lake.uri}`)")
    rows = report_rows(lake=lake, date_from=first_day, date_to=last_day)
    columns, id_widths = fit_columns(rows, width=shutil.get_terminal_size().columns)
    print(format_table(rows, columns=tuple(c for c in CHARGEBACK_COLUMNS if c in columns), id_widths=id_widths))
    print()
    done = _step("month-end close: a SIMULATED AWS bill (CUR 2.0) of this traffic, imported and reconciled")
    month_end_close(lake=lake, registry_dir=registry_file.parent, teams=registry.list_teams(), first_day=first_day,
                    last_day=last_day)
    done()
    print()
    _outputs(lake=lake, first_day=first_day, last_day=last_day, dashboard=Path(args.dashboard))
    print(f"tenant registry: {registry_file}")
    print(f"lake: {lake.uri}   (query it: `modelmeter report --lake {lake.uri} --format csv`)")
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return 0


def _write_reference(lake: Lake, registry: Any) -> None:
    write_teams(lake=lake, teams=registry.list_teams())


class SharedClock:
    """The SIMULATED clock as seen from the gateway process: reads the time the demo's driver last dispatched."""

    def __init__(self, value: Any):
        self._value = value

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self._value.value, UTC)


def _serve_child(conn: Any, lake_uri: str, registry_file: str, clock_value: Any) -> None:
    """The gateway process: the real app, simulator backend, local emitter into the lake; stops on request."""

    lake = Lake.open(lake_uri)
    emitter = local_emitter(lake=lake)
    app = create_app(registry=LocalTenantRegistry(registry_file), providers=build_router(upstream="simulator"),
                     emitter=emitter, longpoll=MemoryLongPollStore(), business_unit="demo",
                     clock=SharedClock(clock_value), spend=SqliteSpendStore(store_path(registry_file)),
                     alerts=LocalAlerts(lake=lake), lake=lake)  # as `modelmeter serve` prices, counts and alerts
    server = start_background(app=app, host="127.0.0.1", port=0)
    conn.send(server.url)
    conn.recv()  # the driver is done
    time.sleep(0.2)  # long-poll results still finishing in the background
    server.stop()
    emitter.close()  # every usage event is in the lake before the transform reads it
    conn.send("closed")


def _drive_gateway(*, lake: Lake, registry_file: Path, keys: dict[str, str], rng: random.Random, requests: int,
                   days: int, end: date) -> Counter[int]:
    """Run the gateway in its own process (clients and server must not share one interpreter lock) and drive it."""
    import multiprocessing

    schedule = build_schedule(rng=rng, requests=requests, days=days, end=end)
    ctx = multiprocessing.get_context("spawn")
    clock_value = ctx.Value("d", (schedule[0].when if schedule else datetime.now(UTC)).timestamp(), lock=False)
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve_child, args=(child, lake.uri, str(registry_file), clock_value),
                          name="modelmeter-demo-gateway", daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the demo gateway did not start")
        clock = SimulatedClock(datetime.fromtimestamp(clock_value.value, UTC), shared=clock_value)
        driver = Driver(base_url=parent.recv(), keys=keys, clock=clock)
        with Progress("requests", total=len(schedule), unit="answered") as bar:  # stderr: the table stays clean
            driver.run(schedule, progress=bar.update)
        parent.send("stop")
        if not parent.poll(120) or parent.recv() != "closed":
            raise RuntimeError("the demo gateway did not flush its usage events")
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
    return driver.statuses


def _print_manifest_totals(manifests: list[Any]) -> None:
    totals: Counter[str] = Counter()
    for m in manifests:
        counts = getattr(m, "counts", None) or (m.get("counts") if isinstance(m, dict) else None) or {}
        totals.update({k: v for k, v in counts.items() if isinstance(v, int)})
    if totals:
        print("  " + " / ".join(f"{k} {v}" for k, v in totals.items()))


def _outputs(*, lake: Lake, first_day: date, last_day: date, dashboard: Path) -> None:

    page = render_dashboard(lake=lake, date_from=first_day, date_to=last_day, out=dashboard)
    print(f"dashboard: {Path(page).resolve()}")
    # the closed billing period's days: its BilledCost is then the chargeback of record, the invoice to the cent
    period = billing_period_of(first_day, last_day)
    start, end = period_days(period)
    focus_file = Path(lake.base) / "exports" / f"focus-{period}.parquet"
    focus_file.parent.mkdir(parents=True, exist_ok=True)
    summary = export_focus(lake=lake, date_from=start, date_to=end, out=focus_file)
    print(f"FOCUS 1.2 export of billing period {period}: {focus_file.resolve()} (BilledCost "
          f"{money_text(summary.billed_cost)} USD: the chargeback of record)")
    _validate_focus(focus_file)


def _validate_focus(path: Path) -> None:
    """Run the FinOps Foundation's validator (its own Python 3.12 venv, built by `make demo`) when it is there."""

    venv = Path(__file__).resolve().parents[1] / ".venv-focus"
    if not (venv / "bin" / "focus-validator").exists():
        print("  (FOCUS validator not installed here: `make focus-venv` builds it)")
        return
    report = run_validator(path=path, venv=venv)
    known = [r for r in report.failed_rules if r in KNOWN_VALIDATOR_DEFECTS]
    verdict = "accepted" if not report.unexplained_failures else f"REFUSED: {', '.join(report.unexplained_failures)}"
    print(f"  focus-validator 1.2: {verdict} — total {report.total} | pass {report.passed} | fail {report.failed}"
          f" | skipped {report.skipped}" + (f" (known validator defect: {', '.join(known)}, see docs/focus.md)"
                                           if known else ""))

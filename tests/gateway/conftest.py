"""Shared fixtures of the gateway tests: a tenant file, a lake, and a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from common.constants import RAW_EVENTS
from common.contracts import Limits, Team
from common.lake import Lake
from ingest.app import create_app
from ingest.emit import Emitter, local_emitter
from ingest.longpoll import MemoryLongPollStore
from ingest.providers.registry import ProviderRouter, build_router
from ingest.server import ServerHandle, start_background
from ingest.tenants import LocalTenantRegistry


@dataclass
class Gateway:
    """A running gateway and what a test needs to talk to it and to check its events."""

    url: str
    keys: dict[str, str]          # team → secret
    key_ids: dict[str, str]       # team → api_key_id
    lake: Lake
    emitter: Emitter
    registry: LocalTenantRegistry
    handle: ServerHandle

    def events(self) -> list[dict[str, Any]]:
        """Every usage event landed in the lake so far (after delivering the spool)."""
        assert self.emitter.flush(timeout=10)
        rows: list[dict[str, Any]] = []
        for path in self.lake.list_files(RAW_EVENTS):
            rows += pq.read_table(path).to_pylist()
        return rows

    def events_of(self, request_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["request_id"] == request_id]


TEAMS = (
    Team(team_id="alpha", cost_center="CC-100"),
    Team(team_id="beta", cost_center="CC-200", allowed_models=("amazon.nova-*", "fake-*")),
    Team(team_id="slow", limits=Limits(requests_per_second=1)),
    Team(team_id="thrifty", limits=Limits(daily_tokens=10)),
)


def make_registry(path: Path) -> tuple[LocalTenantRegistry, dict[str, str], dict[str, str]]:
    registry = LocalTenantRegistry(path)
    keys, key_ids = {}, {}
    for team in TEAMS:
        registry.put_team(team)
        record, secret = registry.create_key(team.team_id)
        keys[team.team_id], key_ids[team.team_id] = secret, record.api_key_id
    return registry, keys, key_ids


def run_gateway(tmp: Path, providers: ProviderRouter, **app_kwargs: Any) -> Iterator[Gateway]:
    registry, keys, key_ids = make_registry(tmp / "tenants.json")
    lake = Lake.open(tmp / "lake")
    emitter = local_emitter(lake=lake, flush_interval=0.2)
    app = create_app(registry=registry, providers=providers, emitter=emitter, longpoll=MemoryLongPollStore(),
                     business_unit="test-bu", **app_kwargs)
    handle = start_background(app=app)
    try:
        yield Gateway(url=handle.url, keys=keys, key_ids=key_ids, lake=lake, emitter=emitter, registry=registry,
                      handle=handle)
    finally:
        handle.stop()
        emitter.close(timeout=10)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway with the labelled simulator behind it."""
    yield from run_gateway(tmp_path_factory.mktemp("gw"), build_router(upstream="simulator"))

"""The gateway's ASGI application: seed-compatible routes, OpenAI-compatible ``/v1`` routes, one usage event each.

``create_app`` wires the seams (tenant registry, providers, emitter, long-poll store) into a FastAPI app that runs
under uvicorn (``modelmeter serve``) and in Lambda (Mangum) alike. Handlers stay thin (see ``routes_seed`` and
``routes_v1``); what they share is in ``ingest.gateway`` (the per-request :class:`~ingest.gateway.Call` that emits
exactly one usage event) and ``ingest.http`` (the single place where errors become HTTP responses).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response

from common.calendar import Calendar
from common.lake import Lake
from ingest import routes_seed, routes_usage, routes_v1
from ingest.alerts import AlertSink
from ingest.auth import flushing_key_uses
from ingest.budget import BudgetGuard
from ingest.gateway import DEFAULT_MAX_BODY_BYTES, Gateway, json_response, utc_now
from ingest.http import GatewayApp, install_error_handlers
from ingest.limits import LimitTracker
from ingest.longpoll import MemoryLongPollStore
from ingest.ports import EventEmitter, LongPollStore, TenantRegistry
from ingest.pricing import GatewayPricer, pricer_for_lake
from ingest.providers.registry import ProviderRouter
from ingest.spend import MemorySpendStore, SpendStore
from ingest.tenants import LocalTenantRegistry


def create_app(*, registry: TenantRegistry, providers: ProviderRouter, emitter: EventEmitter,
               longpoll: LongPollStore, business_unit: str | None = None, clock: Callable[[], datetime] = utc_now,
               spend: SpendStore | None = None, calendar: Calendar | None = None, alerts: AlertSink | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, lake: Lake | str | None = None,
               pricer: GatewayPricer | None = None) -> FastAPI:
    """The gateway as an ASGI app.

    Args:
        registry: teams and API keys.
        providers: model id → provider.
        emitter: where usage events go (one per authenticated request).
        longpoll: results of the seed's async flow.
        business_unit: the deployment unit written into every event (a team's own setting wins).
        clock: the UTC clock of ``event_time``; injectable so the demo can replay a week of traffic.
        max_body_bytes: larger request bodies are refused with 413.
        spend: the fleet-wide spend counters (budgets, daily tokens; ``ingest.spend``); ``None``: this process's
            memory only (counts per process).
        calendar: budget periods and days (default: the reporting calendar, ``$MODELMETER_REPORTING_TZ`` and
            ``$MODELMETER_FISCAL_MONTH_START``).
        alerts: where budget alerts go (``ingest.alerts``); ``None``: the log only.
        lake: the lake (or its URI) whose published price catalog prices each call's ``cost_usd``
            (``ingest.pricing``: reloaded when a new version is published); ``None``: ``cost_usd`` stays null.
        pricer: a ready pricer instead (tests); wins over ``lake``.
    """
    gw = Gateway(registry=registry, providers=providers, emitter=emitter, longpoll=longpoll,
                 business_unit=business_unit, clock=clock, max_body_bytes=max_body_bytes,
                 limits=LimitTracker(clock=clock), pricer=pricer or pricer_for_lake(lake))
    gw.budget = BudgetGuard(store=spend or MemorySpendStore(), calendar=calendar or Calendar.from_env(), clock=clock,
                            alerts=alerts)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with flushing_key_uses(registry):  # the keys' "last used", batched (ingest/auth.py)
            yield
        await gw.drain(timeout=30)  # seed async calls still running: let them finish and bill
        await providers.aclose()
        if alerts is not None:
            await asyncio.to_thread(alerts.close, timeout=10)  # webhook POSTs still queued
        if gw.pricer is not None:
            gw.pricer.close()

    app = GatewayApp(title="modelmeter gateway", version="1.0.0", lifespan=lifespan,
                  description="Multi-tenant foundation-model gateway: seed-compatible and OpenAI-compatible routes; "
                              "every authenticated request becomes exactly one usage event.")
    app.state.gateway = gw
    app.fast_routes = {}
    install_error_handlers(app)

    routes_seed.register(app, gw)
    routes_v1.register(app, gw)
    routes_usage.register(app, gw)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        # A platform's health check: 503 while usage cannot be spooled (calls may be refused), with the reason.
        usage = emitter.status()
        healthy = usage.get("spool") == "ok"
        return json_response({"status": "ok" if healthy else "degraded", "usage": usage,
                              "spend": gw.budget.status() if gw.budget else None}, 200 if healthy else 503)

    return app


class _NoEvents:
    """An emitter for building the OpenAPI document only: no request is ever served."""

    def admit(self) -> None: ...

    def open_call(self, placeholder: dict[str, Any]) -> None: ...

    def emit(self, event: dict[str, Any]) -> None: ...

    def status(self) -> dict[str, Any]:
        return {"spool": "ok"}

    def flush(self, *, timeout: float = 30.0) -> bool:
        return True

    def close(self, *, timeout: float = 30.0) -> bool:
        return True


def openapi_document() -> dict[str, Any]:
    """The gateway's OpenAPI document, as ``/openapi.json`` serves it (built without any tenant or provider)."""
    app = create_app(registry=LocalTenantRegistry("/nonexistent/tenants.json"), providers=ProviderRouter(),
                     emitter=_NoEvents(), longpoll=MemoryLongPollStore())
    return app.openapi()


if __name__ == "__main__":  # python -m ingest.app > docs/openapi.json
    print(json.dumps(openapi_document(), indent=2, ensure_ascii=False))

"""Self-service: ``GET /v1/usage`` (Bearer key) and ``GET /usage`` (the seed's ``x-api-key``) tell the calling team
its budget period (and the calendar it is counted in), spend, budget, remaining, mode, thresholds crossed and
daily tokens, from the fleet-wide counters (``ingest/budget.py``). They call no model, so they emit no usage event.
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from ingest.auth import authenticate, bearer_secret, check_team_header
from ingest.gateway import Gateway, json_response
from ingest.http import GatewayApp
from ingest.openapi_docs import SEED_USAGE, V1_USAGE


def _report(gw: Gateway, secret: str | None, team_header: str | None) -> Response:
    _key, team = authenticate(gw.registry, secret)
    check_team_header(team, team_header, required=False)
    if gw.budget is None:  # an app built without spend controls
        return json_response({"team_id": team.team_id, "budget_mode": team.budget_mode, "spend_store": None})
    return json_response(gw.budget.report(team))


async def v1_usage(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    headers = request.headers
    return _report(gw, bearer_secret(headers.get("authorization")) or headers.get("x-api-key"),
                   headers.get("team_id"))


async def seed_usage(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    return _report(gw, request.headers.get("x-api-key"), request.headers.get("team_id"))


def register(app: GatewayApp, gw: Gateway) -> None:
    app.add_fast_route("/v1/usage", v1_usage, method="GET", openapi_extra=V1_USAGE,
                       summary="The calling team's budget period: spend, budget, remaining, daily tokens",
                       tags=["openai"])
    app.add_fast_route("/usage", seed_usage, method="GET", openapi_extra=SEED_USAGE,
                       summary="The calling team's budget period (seed-style x-api-key)", tags=["seed"])

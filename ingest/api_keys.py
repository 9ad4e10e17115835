"""A registry key's twin in API Gateway: an API key with the same secret as its value, in the team's usage plan.

Behind API Gateway every request carries an API Gateway key as ``x-api-key`` (checked, throttled and counted against
the team's usage plan before the gateway Lambda runs), and the gateway checks the same header (seed routes) or the
``Authorization: Bearer`` secret (``/v1``) against the tenant table. When the commands make a key in a unit's
tenant table they make both with one secret (``ingest.dynamo.DynamoTenantRegistry``, ``api_gateway_unit``), so one
secret works on both routes, and ``keys revoke`` disables both.

The usage plan is found by the name the stack gives it: ``<unit>-<team_id>`` (``infra/constructs/gateway_api.py``,
``TeamUsagePlans``). The functions take an ``apigateway`` client; the caller turns its user-fixable errors into one
line (``ingest.registry``).
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from common.errors import UserError

log = logging.getLogger(__name__)


def usage_plan_name(unit: str, team_id: str) -> str:
    """The name the stack gives a team's usage plan."""
    return f"{unit}-{team_id}"


def find_usage_plan(client: Any, *, unit: str, team_id: str) -> str:
    """The id of the team's usage plan.

    Raises:
        UserError: there is no usage plan of that name (the team is not in the unit's config, or not deployed).
    """
    name = usage_plan_name(unit, team_id)
    kwargs: dict[str, Any] = {"limit": 500}
    while True:
        page = client.get_usage_plans(**kwargs)
        for plan in page.get("items", []):
            if plan.get("name") == name:
                return str(plan["id"])
        if not page.get("position"):
            break
        kwargs["position"] = page["position"]
    raise UserError(f"API Gateway has no usage plan named {name!r}: is team {team_id} in unit {unit}'s teams "
                    f"(infra/config/units.yaml) and the unit deployed? Nothing was created")


def create_twin(client: Any, *, plan_id: str, unit: str, team_id: str, api_key_id: str, secret: str) -> str:
    """Create the enabled API key whose value is ``secret`` and add it to the usage plan; returns its id.

    If adding it to the plan fails, the key is deleted again (an API key in no plan would be a dead secret).
    """
    created = client.create_api_key(
        name="-".join(part for part in (unit, team_id, api_key_id) if part), value=secret, enabled=True,
        description=f"modelmeter key {api_key_id} of team {team_id} (made by modelmeter keys; revoke it with "
                    f"`modelmeter keys revoke {api_key_id}`)")
    twin = str(created["id"])
    try:
        client.create_usage_plan_key(usagePlanId=plan_id, keyId=twin, keyType="API_KEY")
    except BaseException:
        delete_twin(client, twin)
        raise
    return twin


def disable_twin(client: Any, twin: str) -> bool:
    """Disable the API key (kept, not deleted: its usage stays in API Gateway's records); ``False`` if it is gone."""
    try:
        client.update_api_key(apiKey=twin, patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NotFoundException":
            return False
        raise
    return True


def delete_twin(client: Any, twin: str) -> None:
    """Best effort: undo a twin whose registry key could not be written."""
    try:
        client.delete_api_key(apiKey=twin)
    except (ClientError, UserError) as exc:
        # Its value was never shown to anyone, but it is enabled: say which one to delete by hand.
        log.warning("could not delete API Gateway key %s (%s): delete it with `aws apigateway delete-api-key`",
                    twin, exc)

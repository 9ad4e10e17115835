"""schemathesis over the published OpenAPI document: generated requests never get a 5xx or a non-JSON error."""

from __future__ import annotations

import json
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

EXAMPLES = 40  # per operation and auth mode: keeps the whole module near 20 s on the shared 2 cores


@pytest.fixture(scope="module")
def schema(gateway):
    return schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")


def _check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if (response.headers.get("content-type") or [""])[0].startswith("text/event-stream"):
        assert response.status_code == 200
        return
    body = response.json()  # always JSON, never a stack trace
    assert "Traceback" not in json.dumps(body)
    if response.status_code >= 400:
        assert ("error" in body and {"type", "message"} <= set(body["error"])) or "message" in body


@pytest.mark.slow
@pytest.mark.parametrize("authenticated", [False, True], ids=["as-generated", "valid-key"])
def test_no_server_errors(gateway, schema, authenticated):
    # GIVEN every operation of the document, with generated or valid credentials
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/invoke_model", "/v1/chat/completions", "/v1/embeddings"}
    started = time.monotonic()
    for operation in operations:
        # no shrinking: a failure is reported as found (with its curl line); shrinking a hang once took 5 minutes
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate])
        @given(case=operation.as_strategy())
        def run(case):
            if authenticated:
                case.headers = {**(case.headers or {}), "x-api-key": gateway.keys["alpha"], "team_id": "alpha",
                                "Authorization": f"Bearer {gateway.keys['alpha']}"}
            # WHEN it is sent to the running gateway THEN it is answered without a 5xx, in JSON
            _check(case.call(base_url=gateway.url, timeout=10))

        run()
    assert time.monotonic() - started < 60

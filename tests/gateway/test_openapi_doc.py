"""The exported OpenAPI document is the one the gateway serves."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from ingest.app import openapi_document as document

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_exported_document_is_current(gateway):
    served = requests.get(f"{gateway.url}/openapi.json", timeout=10).json()
    assert served == document()
    assert json.loads(DOC.read_text()) == served, "regenerate: python -m ingest.app > docs/openapi.json"
    paths = served["paths"]
    assert {"/invoke_model", "/list_foundation_models", "/v1/chat/completions", "/v1/embeddings",
            "/v1/models"} <= set(paths)
    invoke = paths["/invoke_model"]["post"]
    assert {p["name"] for p in invoke["parameters"]} >= {"model_id", "x-api-key", "team_id", "messages_api",
                                                         "streaming", "type", "requestId", "model_arn"}

"""Model id → provider routing: exact ids first, then fnmatch patterns (incl. ARNs) in order, then the default."""

from __future__ import annotations

import asyncio
import fnmatch
from typing import Any

from common.errors import NotFound
from ingest.providers.base import Provider
from ingest.providers.bedrock import BedrockProvider
from ingest.providers.openai_compat import OpenAICompatProvider
from ingest.providers.sagemaker import SageMakerProvider
from ingest.providers.simulator import SimulatorProvider


class ProviderRouter:
    """Which provider serves a model id as invoked (base id, inference profile, ARN or SageMaker endpoint name).

    Args:
        default: serves every model that no exact id or pattern names (``None``: such models are 404).
        exact: model id → provider (e.g. the SageMaker endpoint map's ids).
        patterns: ``(fnmatch pattern, provider)`` pairs, tried in order (e.g. ``arn:aws:sagemaker:*``).
    """

    def __init__(self, *, default: Provider | None = None, exact: dict[str, Provider] | None = None,
                 patterns: list[tuple[str, Provider]] | None = None):
        self.default = default
        self.exact = dict(exact or {})
        self.patterns = list(patterns or [])

    def resolve(self, model_id: str, *, model_arn: str | None = None) -> Provider:
        """The provider for ``model_arn`` when given (a custom/provisioned model), else for ``model_id``."""
        for key in (model_arn, model_id):
            if not key:
                continue
            provider = self.exact.get(key)
            if provider is not None:
                return provider
            for pattern, candidate in self.patterns:
                if fnmatch.fnmatchcase(key, pattern):
                    return candidate
        if self.default is not None:
            return self.default
        raise NotFound(f"no provider serves model {model_id!r}")

    def providers(self) -> list[Provider]:
        seen: dict[int, Provider] = {}
        for p in [*self.exact.values(), *(p for _, p in self.patterns), self.default]:
            if p is not None:
                seen.setdefault(id(p), p)
        return list(seen.values())

    async def list_models(self) -> list[dict[str, Any]]:
        """Every provider's models, de-duplicated by model id, in provider order."""
        results = await asyncio.gather(*(p.list_models() for p in self.providers()), return_exceptions=True)
        models: dict[str, dict[str, Any]] = {}
        for result in results:
            if isinstance(result, BaseException):
                continue  # one provider down must not hide the others' models
            for m in result:
                models.setdefault(m["model_id"], m)
        for model_id, provider in self.exact.items():
            models.setdefault(model_id, {"model_id": model_id, "provider_name": provider.name, "modalities": []})
        return list(models.values())

    async def aclose(self) -> None:
        for p in self.providers():
            await p.aclose()


def build_router(*, upstream: str, region: str | None = None, sagemaker_endpoints: dict[str, dict] | None = None,
                 simulator_latency: float = 0.0, bedrock_client: Any = None, sagemaker_client: Any = None,
                 timeout: float = 60.0) -> ProviderRouter:
    """The router for ``modelmeter serve --upstream``.

    Args:
        upstream: ``simulator`` (the labelled simulator serves everything), ``bedrock`` (Bedrock serves everything
            except the SageMaker map), or the URL of an OpenAI-compatible upstream (``http://host:port/v1``).
        sagemaker_endpoints: model id → ``{"endpoint_name": …, "inference_component": …?, …}``; those ids and
            ``arn:aws:sagemaker:*`` ARNs go to SageMaker whatever ``upstream`` is.
    """
    exact: dict[str, Provider] = {}
    patterns: list[tuple[str, Provider]] = []
    if sagemaker_endpoints:

        sagemaker = SageMakerProvider(endpoints=sagemaker_endpoints, region=region, client=sagemaker_client)
        exact.update({model_id: sagemaker for model_id in sagemaker_endpoints})
        patterns.append(("arn:aws:sagemaker:*", sagemaker))
    if upstream == "simulator":

        default: Provider = SimulatorProvider(latency=simulator_latency, region=region)
    elif upstream == "bedrock":

        default = BedrockProvider(region=region, client=bedrock_client)
    elif upstream.startswith(("http://", "https://")):

        default = OpenAICompatProvider(base_url=upstream, timeout=timeout)
    else:
        raise ValueError(f"unknown upstream {upstream!r}: write bedrock, simulator or an http(s):// URL")
    return ProviderRouter(default=default, exact=exact, patterns=patterns)

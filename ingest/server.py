"""``modelmeter serve``: the gateway under uvicorn, usage events spooled and landed in the local lake.

Also :func:`start_background`, which runs any app under uvicorn in a thread on 127.0.0.1 (tests, the demo).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

from common.constants import ENV_BUSINESS_UNIT, ENV_SAGEMAKER_ENDPOINTS
from ingest.alerts import LocalAlerts
from ingest.app import create_app
from ingest.emit import local_emitter
from ingest.longpoll import MemoryLongPollStore
from ingest.providers.registry import build_router
from ingest.spend import SqliteSpendStore, store_path
from ingest.tenants import LocalTenantRegistry, registry_path

log = logging.getLogger(__name__)


def fast_loop_options() -> dict[str, Any]:
    """uvloop and httptools when installed (they are pinned in requirements.lock), else uvicorn's pure defaults.

    Also no ``server`` header (names our software to strangers) and no X-Forwarded-* rewriting (we never use the
    client address; behind a proxy that is the proxy's business): both cost time on every request.
    """
    opts: dict[str, Any] = {"proxy_headers": False, "server_header": False}
    if importlib.util.find_spec("uvloop"):
        opts["loop"] = "uvloop"
    if importlib.util.find_spec("httptools"):
        opts["http"] = "httptools"
    return opts


@dataclass
class ServerHandle:
    """A uvicorn server running in a background thread."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop: in-flight requests finish, the app's shutdown runs."""
        self.server.should_exit = True
        self.thread.join(timeout=timeout)


def start_background(*, app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any) -> ServerHandle:
    """Serve ``app`` from a thread; ``port=0`` picks a free port. Returns once the server accepts connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           **{**fast_loop_options(), **config}))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="modelmeter-uvicorn",
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway server did not start")
        time.sleep(0.01)
    bound_host, bound_port = sock.getsockname()[:2]
    return ServerHandle(url=f"http://{bound_host}:{bound_port}", server=server, thread=thread)


def build_local_app(*, upstream: str, lake: Any, tenants: str | None, emitter: Any = None, **app_kwargs: Any) -> Any:
    """The app ``modelmeter serve`` runs: local tenant file, in-memory long-poll store, lake emitter, and the lake's
    price catalog for ``cost_usd``."""

    registry_file = registry_path(tenants=tenants, lake=lake.uri)
    registry = LocalTenantRegistry(registry_file)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    endpoints = os.environ.get(ENV_SAGEMAKER_ENDPOINTS)
    try:
        sagemaker = json.loads(endpoints) if endpoints else None
    except ValueError:
        raise ValueError(f"${ENV_SAGEMAKER_ENDPOINTS} is not JSON (write {{\"model id\": {{\"endpoint_name\": …}}}})"
                         ) from None
    router = build_router(upstream=upstream, region=region, sagemaker_endpoints=sagemaker)
    app_kwargs.setdefault("business_unit", os.environ.get(ENV_BUSINESS_UNIT))
    # Fleet-wide counters beside the registry (every gateway serving this registry shares them); alerts in the lake.
    app_kwargs.setdefault("spend", SqliteSpendStore(store_path(registry_file)))
    app_kwargs.setdefault("alerts", LocalAlerts.from_env(lake=lake))
    app_kwargs.setdefault("lake", lake)  # the lake's price catalog prices each call's cost_usd
    return create_app(registry=registry, providers=router, emitter=emitter or local_emitter(lake=lake),
                      longpoll=MemoryLongPollStore(), **app_kwargs)



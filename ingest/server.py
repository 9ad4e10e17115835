"""``modelmeter serve``: the gateway under uvicorn, usage events spooled and landed in the local lake.

Also :func:`start_background`, which runs any app under uvicorn in a thread on 127.0.0.1 (tests, the demo).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

from common.constants import ENV_BUSINESS_UNIT, ENV_SAGEMAKER_ENDPOINTS, ENV_SPOOL_MAX_BACKLOG

log = logging.getLogger(__name__)


def _fast_loop_options() -> dict[str, Any]:
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
                                           **{**_fast_loop_options(), **config}))
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
    """The app ``modelmeter serve`` runs: local tenant file, in-memory long-poll store, lake emitter."""
    from ingest.app import create_app
    from ingest.emit import local_emitter
    from ingest.longpoll import MemoryLongPollStore
    from ingest.providers.registry import build_router
    from ingest.tenants import LocalTenantRegistry, registry_path

    registry = LocalTenantRegistry(registry_path(tenants=tenants, lake=lake.uri))
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    endpoints = os.environ.get(ENV_SAGEMAKER_ENDPOINTS)
    try:
        sagemaker = json.loads(endpoints) if endpoints else None
    except ValueError:
        raise ValueError(f"${ENV_SAGEMAKER_ENDPOINTS} is not JSON (write {{\"model id\": {{\"endpoint_name\": …}}}})"
                         ) from None
    router = build_router(upstream=upstream, region=region, sagemaker_endpoints=sagemaker)
    app_kwargs.setdefault("business_unit", os.environ.get(ENV_BUSINESS_UNIT))
    return create_app(registry=registry, providers=router, emitter=emitter or local_emitter(lake=lake),
                      longpoll=MemoryLongPollStore(), **app_kwargs)


def _emitter_options() -> dict[str, Any]:
    value = os.environ.get(ENV_SPOOL_MAX_BACKLOG)
    if not value:
        return {}
    if not value.isdigit():
        raise ValueError(f"${ENV_SPOOL_MAX_BACKLOG} must be a whole number of events (got {value!r})")
    return {"max_backlog": int(value)}


def run_cli(args: Any) -> int:
    """``modelmeter serve``: serve until SIGTERM/SIGINT, then finish in-flight requests and flush every event."""
    from common.errors import UserError
    from common.lake import Lake

    lake = Lake.open(args.lake)
    try:
        from ingest.emit import SpoolLockedError, local_emitter

        emitter = local_emitter(lake=lake, **_emitter_options())
        app = build_local_app(upstream=args.upstream, lake=lake, tenants=args.tenants, emitter=emitter)
    except (ValueError, ImportError, OSError, SpoolLockedError) as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:
        if type(exc).__module__.startswith(("botocore", "boto3")):  # no region, no credentials …
            raise UserError(f"--upstream {args.upstream}: {exc} (set AWS_REGION and AWS credentials, or use "
                            f"--upstream simulator)") from None
        raise
    registry = app.state.gateway.registry
    if not registry.list_teams():
        print(f"warning: no teams in {registry.path}; add one with `modelmeter tenants add TEAM` and "
              f"`modelmeter keys create TEAM`", file=sys.stderr)
    print(f"modelmeter gateway on http://{args.host}:{args.port} (upstream: {args.upstream}; events → "
          f"{lake.uri}; tenants: {registry.path})", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=30, **_fast_loop_options()))
    # uvicorn turns SIGTERM into a graceful shutdown, then re-raises it to the handler that was there before: make
    # that one a no-op, so the process lives on to flush the spool below and exits 0.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        flushed = emitter.close()
        print("usage events flushed to the lake" if flushed else
              f"some usage events are still spooled in {emitter.spool_dir}; they are delivered on next start",
              file=sys.stderr)
    return 0 if server.started else 1

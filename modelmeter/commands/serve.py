"""``modelmeter serve``: the gateway under uvicorn, usage events spooled and landed in the local lake."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import uvicorn

from common.constants import ENV_SPOOL_MAX_BACKLOG
from common.errors import UserError
from common.lake import Lake
from ingest.emit import SpoolLockedError, local_emitter
from ingest.server import build_local_app, fast_loop_options


def _emitter_options() -> dict[str, Any]:
    value = os.environ.get(ENV_SPOOL_MAX_BACKLOG)
    if not value:
        return {}
    if not value.isdigit():
        raise ValueError(f"${ENV_SPOOL_MAX_BACKLOG} must be a whole number of events (got {value!r})")
    return {"max_backlog": int(value)}


def _build(args: Any, lake: Lake) -> tuple[Any, Any]:
    try:
        emitter = local_emitter(lake=lake, **_emitter_options())
        return emitter, build_local_app(upstream=args.upstream, lake=lake, tenants=args.tenants, emitter=emitter)
    except (ValueError, ImportError, OSError, SpoolLockedError) as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:
        if type(exc).__module__.startswith(("botocore", "boto3")):  # no region, no credentials …
            raise UserError(f"--upstream {args.upstream}: {exc} (set AWS_REGION and AWS credentials, or use "
                            f"--upstream simulator)") from None
        raise


def run(args: Any) -> int:
    """Serve until SIGTERM/SIGINT, then finish in-flight requests and flush every event."""
    lake = Lake.open(args.lake)
    emitter, app = _build(args, lake)
    registry = app.state.gateway.registry
    if not registry.list_teams():
        print(f"warning: no teams in {registry.path}; add one with `modelmeter tenants add TEAM` and "
              f"`modelmeter keys create TEAM`", file=sys.stderr)
    print(f"modelmeter gateway on http://{args.host}:{args.port} (upstream: {args.upstream}; events → "
          f"{lake.uri}; tenants: {registry.path})", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=30, **fast_loop_options()))
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

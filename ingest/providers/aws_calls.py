"""What the boto3-backed providers (Bedrock, SageMaker) share: the client config and iterating an EventStream.

boto3 blocks, so the providers run each call in a thread pool; a response stream is iterated the same way, one
``next`` per pool hop, and is closed however the iteration ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from botocore.config import Config

# Models answer long generations slowly; botocore's default 60 s read timeout cuts them off.
CLIENT_CONFIG = Config(read_timeout=300, connect_timeout=5, retries={"mode": "standard", "max_attempts": 2},
                       max_pool_connections=32)
_DONE = object()


async def iterate_in_pool(stream: Any, run: Callable[[Callable[[], Any]], Awaitable[Any]]
                          ) -> AsyncIterator[dict[str, Any]]:
    """The events of a blocking botocore EventStream, each fetched by ``run`` (the provider's pool call).

    Args:
        stream: the ``EventStream`` (or any iterable) of a streaming response.
        run: runs a no-argument blocking function off the event loop and maps its errors (``self._run``).
    """
    iterator: Iterator[dict[str, Any]] = iter(stream)
    try:
        while True:
            event = await run(lambda: next(iterator, _DONE))
            if event is _DONE:
                return
            yield event
    finally:
        # A tenant that hangs up mid-stream must not leave the HTTP connection to the provider open.
        close = getattr(stream, "close", None)
        if callable(close):
            close()

# modelmeter's gateway as a long-running container (deployment config: `gateway.runtime: container`): the same ASGI
# app as the Lambda, under uvicorn, on ECS Fargate behind an ALB (infra/constructs/gateway_container.py).
# Built by `cdk deploy` (asset publishing runs `docker build`); synthesis only stages this build context (the
# packages, the lock file and this file: infra/runtime_code.py CONTAINER_EXCLUDE).
FROM python:3.11-slim

# No .pyc files written at run time (the image is read-only in spirit), logs unbuffered for the awslogs driver.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

# Versions come from the project's lock file; only what the gateway imports is installed (no DuckDB, no GX).
# numpy, certifi and sniffio are optional imports of pyarrow, botocore and anyio that the tested environment has:
# the image loads the same modules as the tests (tests/infra/test_gateway_container.py checks it).
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir -c /tmp/requirements.lock \
        pyarrow pydantic PyYAML aws-lambda-powertools boto3 fastapi starlette mangum orjson aiohttp \
        uvicorn uvloop httptools numpy certifi sniffio \
    && rm /tmp/requirements.lock

# The gateway's packages only: ingest imports common and pricing_catalog (docs/architecture.md).
WORKDIR /app
COPY common /app/common
COPY ingest /app/ingest
COPY pricing_catalog /app/pricing_catalog

# A user without a login or a home to write to; the spool directory is the one place it writes (an ECS volume is
# mounted over it, owned by this user).
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin modelmeter \
    && mkdir -p /var/spool/modelmeter && chown modelmeter /var/spool/modelmeter
# ECS copies what the image holds at a VOLUME path (owner included) into the bind mount mounted there: that is how
# the non-root user may write its spool on the task's storage.
VOLUME ["/var/spool/modelmeter"]
USER 10001
ENV MODELMETER_SPOOL_DIR=/var/spool/modelmeter MODELMETER_PORT=8080
EXPOSE 8080

# /healthz answers 503 while usage cannot be spooled (the gateway would refuse calls): the container is unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MODELMETER_PORT', '8080') + '/healthz', timeout=4)"]

# ECS sends SIGTERM on stop: the gateway stops accepting, finishes in-flight calls, drains its spool, then exits.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "ingest.container"]

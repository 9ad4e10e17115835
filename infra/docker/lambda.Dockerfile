# modelmeter's Lambdas as a container image (deployment config: `lambda_package: image`). One image serves every
# function; each sets its handler as the image command (`ingest.lambda_handler.handler`,
# `transforms.lambda_handler.handler`, `finance.lambda_handler.handler`).
# Why an image: measured on the installed packages, the transform imports about 630 MB of third-party code (pyarrow,
# DuckDB, Great Expectations with pandas/NumPy/SciPy), over the 250 MB a zip function and its layers may hold; an
# image may hold 10 GB. (The gateway alone would fit a slim layer, about 185 MB; one image serves both.)
# Built by `cdk deploy` (asset publishing runs `docker build`); synthesis only stages this build context.
FROM public.ecr.aws/lambda/python:3.11

# Versions come from the project's lock file; only the packages the functions import are installed.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir -c /tmp/requirements.lock \
        pyarrow duckdb duckdb-extension-httpfs duckdb-engine SQLAlchemy great-expectations sqlglot \
        pydantic PyYAML aws-lambda-powertools boto3 fastapi starlette mangum orjson aiohttp \
    && rm /tmp/requirements.lock

COPY common ${LAMBDA_TASK_ROOT}/common
COPY modelmeter ${LAMBDA_TASK_ROOT}/modelmeter
COPY ingest ${LAMBDA_TASK_ROOT}/ingest
COPY transforms ${LAMBDA_TASK_ROOT}/transforms
COPY pricing_catalog ${LAMBDA_TASK_ROOT}/pricing_catalog
COPY sql ${LAMBDA_TASK_ROOT}/sql
COPY finance ${LAMBDA_TASK_ROOT}/finance

# Each function overrides this with its own handler (ImageConfig.Command).
CMD ["ingest.lambda_handler.handler"]

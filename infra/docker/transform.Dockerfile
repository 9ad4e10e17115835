# The scheduled transform as a container-image Lambda (infra: `transform.package: image`).
# Why an image: the transform's dependencies (pyarrow, DuckDB, Great Expectations with pandas/NumPy/SciPy) measure
# about 630 MB installed, over the 250 MB a zip function and its layers may hold; an image may hold 10 GB.
# Built by `cdk deploy` (asset publishing runs `docker build`); synthesis only stages this context.
FROM public.ecr.aws/lambda/python:3.11

# Versions come from the project's lock file; only the packages the transform imports are installed.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir -c /tmp/requirements.lock \
        pyarrow duckdb duckdb-extension-httpfs duckdb-engine SQLAlchemy great-expectations sqlglot \
        pydantic PyYAML aws-lambda-powertools boto3 \
    && rm /tmp/requirements.lock

COPY modelmeter ${LAMBDA_TASK_ROOT}/modelmeter
COPY ingest ${LAMBDA_TASK_ROOT}/ingest
COPY transforms ${LAMBDA_TASK_ROOT}/transforms
COPY pricing_catalog ${LAMBDA_TASK_ROOT}/pricing_catalog
COPY sql ${LAMBDA_TASK_ROOT}/sql

CMD ["transforms.lambda_handler.handler"]

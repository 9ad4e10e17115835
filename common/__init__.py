"""The ground floor every modelmeter package stands on: the data contract, errors, constants and lake IO.

- :mod:`common.contracts` — the usage event, the curated / quarantine / reference schemas and the billable units,
  each defined once; everything else (Parquet, Glue, JSON Schema, the rules, SQL column lists …) derives from it.
- :mod:`common.errors` — ``UserError`` (a command's one-line failure) and the gateway's service errors.
- :mod:`common.constants` — environment variable, table, path, service and metric names.
- :mod:`common.lake` and :mod:`common.locks` — the lake (a folder or ``s3://``) and its locks.

It imports nothing of the project's above it (see docs/architecture.md).
"""

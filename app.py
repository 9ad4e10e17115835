#!/usr/bin/env python3
"""modelmeter's CDK app: one stack per business unit of the deployment config, checked by cdk-nag on every synth.

    python app.py                      # templates in cdk.out/ (make synth)
    cdk deploy --all                   # cdk.json runs this file
    MODELMETER_UNITS_CONFIG=my.yaml python app.py   (or: cdk synth -c config=my.yaml)

Synthesis makes no AWS calls: stacks are environment-agnostic unless a unit sets account and region.
"""

from __future__ import annotations

import os
import sys

# Before aws_cdk starts its Node process: the Node 20 end-of-life banner is noise for a synth (make exports it too).
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from infra.config import DEFAULT_CONFIG, ConfigError, load_config  # noqa: E402
from infra.nag import new_app  # noqa: E402
from infra.stacks.unit import build_units  # noqa: E402
from modelmeter.deploy import CONTENT  # noqa: E402

ENV_UNITS_CONFIG = "MODELMETER_UNITS_CONFIG"


def main() -> int:
    app = new_app(outdir=os.environ.get("CDK_OUTDIR", "cdk.out"))
    path = app.node.try_get_context("config") or os.environ.get(ENV_UNITS_CONFIG) or DEFAULT_CONFIG
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    build_units(app, config, content=CONTENT)
    try:
        app.synth()
    except RuntimeError as exc:  # cdk-nag findings or CloudFormation validation: the report names each one
        print(f"synthesis failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Lambdas' code: the repo's runtime packages as one asset, built without Docker.

Synthesis copies only the allow-listed packages into ``cdk.out`` (tests, the venv, the lake, docs and ``cdk.out``
itself never enter the asset). Third-party dependencies (pyarrow, duckdb, powertools, …) are NOT in the zip asset:
building a Lambda layer for the Lambda platform is a deploy-time step described in docs/deploy.md. The functions
can instead run as a container image (``lambda_image``), whose Dockerfile installs them.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Packages the gateway, the transform and the billing import import at run time.
RUNTIME_PACKAGES = ("common", "modelmeter", "ingest", "transforms", "pricing_catalog", "sql", "finance")

# Glob ignore rules (gitignore-like): drop everything, then re-admit the runtime packages, then drop their caches.
EXCLUDE = [
    "*",
    ".*",  # dotfiles and dot-folders (.git, .venv, caches): "*" does not match them
    *(rule for pkg in RUNTIME_PACKAGES for rule in (f"!{pkg}", f"!{pkg}/**")),
    "**/__pycache__",
    "**/*.pyc",
    "**/tests",
]



LAMBDA_DOCKERFILE = "infra/docker/lambda.Dockerfile"
# The image's build context: the runtime packages, the lock file its pins come from, and the Dockerfile.
# (Re-admitting a folder re-admits everything under it, so infra/ is admitted, emptied, and one file re-admitted.)
IMAGE_EXCLUDE = [*EXCLUDE[:-3], "!requirements.lock", "!infra", "infra/*", "!infra/docker", "infra/docker/*",
                 f"!{LAMBDA_DOCKERFILE}", *EXCLUDE[-3:]]


def lambda_image(handler: str, root: Path = REPO_ROOT) -> lambda_.DockerImageCode:
    """The Lambdas' container image running ``handler`` (``lambda_package: image``); built by ``cdk deploy``.

    Every function uses the same build context and Dockerfile, so one image is built and pushed; the handler is the
    function's image command.
    """
    return lambda_.DockerImageCode.from_image_asset(
        str(root), file=LAMBDA_DOCKERFILE, exclude=IMAGE_EXCLUDE, platform=ecr_assets.Platform.LINUX_ARM64,
        cmd=[handler])


def runtime_code(root: Path = REPO_ROOT) -> lambda_.Code:
    """The code asset of a modelmeter Lambda. A new object per function (an asset belongs to one stack); equal
    contents hash alike, so ``cdk.out`` holds one copy."""
    return lambda_.Code.from_asset(str(root), exclude=EXCLUDE)

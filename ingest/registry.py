"""Which tenant registry a command works against: the local JSON file, or the DynamoDB tenant table.

``--tenants`` (else ``$MODELMETER_TENANTS``) names it:

* ``dynamodb://TABLE``: the DynamoDB tenant table of a deployed unit (the stack's tenant table name; the region and
  credentials come from the environment, as for every AWS client: ``AWS_DEFAULT_REGION``, ``AWS_PROFILE`` …);
* anything else: the local registry file; without either, ``tenants.json`` beside a local lake's folder
  (:func:`ingest.tenants.registry_path`).

Both registries hold the same things (teams with their dated cost-centre history, hashed keys with their expiry,
rotation and last use) and say where they are in ``location``, for messages. Errors of the DynamoDB registry that
the user can fix (no credentials, no region, no such table, access denied) reach the command as
:class:`common.errors.UserError`, one line; so do those of API Gateway, whose keys a DynamoDB registry opened with
``api_gateway_unit`` manages beside its own (``ingest.api_keys``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from common.constants import ENV_TENANTS
from common.contracts import Team
from common.errors import UserError
from ingest.dynamo import DynamoTenantRegistry
from ingest.ports import KeyRecord
from ingest.tenants import LocalTenantRegistry, registry_path

DYNAMODB_SCHEME = "dynamodb://"
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
#: ClientError codes of a call that can never succeed as configured (the rest, e.g. a failed condition, are the
#: registry's own business and pass through unchanged).
_USER_FIXABLE = {
    "ResourceNotFoundException": "no such table (check the name and the region)",
    "AccessDeniedException": "access denied",
    "UnauthorizedException": "not authorized (check the credentials and their permissions)",  # API Gateway's
    "UnrecognizedClientException": "the credentials are not valid",
    "InvalidSignatureException": "the credentials are not valid",
    "ExpiredTokenException": "the credentials have expired",
    "ExpiredToken": "the credentials have expired",
}


class AdminRegistry(Protocol):
    """What the commands use of a tenant registry (both implementations have it)."""

    @property
    def location(self) -> str: ...

    def get_team(self, team_id: str) -> Team | None: ...

    def put_team(self, team: Team) -> None: ...

    def list_teams(self) -> list[Team]: ...

    def create_key(self, team_id: str, *, expires_at: datetime | None = None) -> tuple[KeyRecord, str]: ...

    def rotate_key(self, api_key_id: str, *, grace: timedelta,
                   expires_at: datetime | None = None) -> tuple[KeyRecord, str, KeyRecord]: ...

    def list_keys(self, team_id: str | None = None) -> list[KeyRecord]: ...

    def revoke_key(self, api_key_id: str) -> bool: ...


def dynamodb_table(tenants: str | None) -> str | None:
    """The table name of a ``dynamodb://TABLE`` registry (``--tenants``, else ``$MODELMETER_TENANTS``), else None.

    Raises:
        UserError: it says ``dynamodb:`` but is not ``dynamodb://`` and a valid table name.
    """
    return dynamodb_uri_table((tenants or os.environ.get(ENV_TENANTS) or "").strip(), what="tenant registry",
                              table="the tenant table's name (3-255 letters, digits, '_', '-', '.')")


def dynamodb_uri_table(given: str, *, what: str, table: str) -> str | None:
    """The table of a ``dynamodb://TABLE`` value, else None (not a DynamoDB location).

    Raises:
        UserError: it says ``dynamodb:`` but is not ``dynamodb://`` and a valid table name (``what``, ``table`` word
            the message).
    """
    if not given.lower().startswith("dynamodb:"):
        return None
    name = given[len(DYNAMODB_SCHEME):] if given.lower().startswith(DYNAMODB_SCHEME) else ""
    if not _TABLE_NAME.fullmatch(name):
        raise UserError(f"{what} {given!r}: write dynamodb://TABLE with {table}")
    return name


def open_registry(*, tenants: str | None, lake: str | None, api_gateway_unit: str | None = None) -> AdminRegistry:
    """The registry a command works against: ``dynamodb://TABLE`` → the DynamoDB tenant table, else the local file.

    Args:
        tenants: ``--tenants`` (``None``: ``$MODELMETER_TENANTS``, else the file beside the lake).
        lake: ``--lake`` (``None``: ``$MODELMETER_LAKE``, else ``./lake``); only locates the default local file.
        api_gateway_unit: the deployed unit whose usage plans get an API Gateway twin of each new key (DynamoDB
            registry only).

    Raises:
        UserError: a malformed ``dynamodb:`` registry, no AWS region configured, no registry file can be named, or
            an API Gateway unit given for a local file.
    """
    table = dynamodb_table(tenants)
    if table is None:
        if api_gateway_unit:
            raise UserError("--api-gateway-unit manages API Gateway keys of a deployed unit: it needs the unit's "
                            "tenant table as --tenants dynamodb://TABLE")
        return LocalTenantRegistry(registry_path(tenants=tenants, lake=lake))
    location = f"{DYNAMODB_SCHEME}{table}"
    try:
        client = boto3.client("dynamodb")
        apigateway = boto3.client("apigateway")
    except NoRegionError:
        raise UserError(f"tenant registry {location}: no AWS region is configured (set "
                        f"AWS_DEFAULT_REGION, or a profile's region)") from None
    return DynamoTenantRegistry(table_name=table, client=_UserErrors(client, f"tenant registry {location}"),
                                cache_seconds=0, api_gateway_unit=api_gateway_unit,
                                apigateway=_UserErrors(apigateway, "API Gateway"))


def is_dynamodb(registry: AdminRegistry) -> bool:
    """The registry is a DynamoDB tenant table (in AWS: the deployed unit's), not the local file."""
    return isinstance(registry, DynamoTenantRegistry)


class _UserErrors:
    """An AWS client whose failures the user can fix become one-line :class:`UserError` messages."""

    def __init__(self, client: Any, location: str):
        self._client = client
        self._location = location
        self.meta = client.meta  # the region, for DynamoTenantRegistry.location

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method
        return self._wrapped(method)

    def _wrapped(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code not in _USER_FIXABLE:
                    raise
                region = self.meta.region_name
                raise UserError(f"{self._location} ({region}): {_USER_FIXABLE[code]} ({code})") from None
            except NoCredentialsError:
                raise UserError(f"{self._location}: no AWS credentials found (AWS_PROFILE, "
                                f"environment or SSO login)") from None
            except BotoCoreError as exc:  # endpoint unreachable, a proxy, a malformed config …
                raise UserError(f"{self._location}: {exc}") from None
        return call

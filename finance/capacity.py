"""The capacity configuration: what the bill charges by the hour, as finance configured it (``capacity.yaml``).

The quantities of time-based charges — provisioned-throughput model units and their commitment, SageMaker endpoint
instances — come from the bill or from this file, never from usage events. The month-end close
(:mod:`finance.reconcile`) uses it to price a time-based bill line (which model and commitment a provisioned-model
ARN is) and to value configured capacity the bill has no line for. The file (docs/finance.md, section 3)::

    provisioned_throughput:
      - name: support-claude                 # unique within the file
        model: anthropic.claude-v2:1:200k    # the model provisioned (id or foundation-model ARN)
        arn: arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123   # optional: the bill's resource id
        model_units: 2
        commitment: one_month                # no_commitment | one_month | six_months
        region: us-east-1
        from: 2026-11-01                     # inclusive, UTC
        to: 2026-12-01                       # exclusive, UTC; absent: still running
    sagemaker_endpoints:
      - name: support-bot-endpoint           # the endpoint name (the bill's resource id ends with endpoint/<name>)
        instance_type: ml.g5.xlarge
        instance_count: 1
        region: us-east-1
        from: 2026-11-01

A file is checked whole (pydantic, unknown keys refused); every problem names the file and line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from common.errors import UserError
from common.yamlfile import YamlFileError, read_yaml, validate
from pricing_catalog.model import one_region, parse_instant

CAPACITY_FILE = "capacity.yaml"
Commitment = Literal["no_commitment", "one_month", "six_months"]


class _Capacity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Unique name (an endpoint's: its SageMaker endpoint name).")
    region: str = Field(description="The AWS region it runs in.")
    start: datetime = Field(alias="from", description="Inclusive start: YYYY-MM-DD (midnight UTC) or an instant.")
    end: datetime | None = Field(default=None, alias="to", description="Exclusive end; absent: still running.")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _instant(cls, value: Any) -> datetime | None:
        return None if value is None else parse_instant(value, what="date")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return one_region(value)


class _Provisioned(_Capacity):
    model: str = Field(min_length=1, description="The model provisioned: a model id or foundation-model ARN.")
    arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:bedrock:[a-z0-9-]+:\d{12}:provisioned-model/.+$",
                            description="The provisioned model's ARN, as the bill's line_item_resource_id has it.")
    model_units: StrictInt = Field(ge=1, description="Model units bought.")
    commitment: Commitment = Field(description="no_commitment, one_month or six_months.")


class _Endpoint(_Capacity):
    instance_type: str = Field(pattern=r"^ml\.[a-z0-9-]+\.[a-z0-9]+$", description="e.g. ml.g5.xlarge.")
    instance_count: StrictInt = Field(ge=1, description="Instances behind the endpoint.")


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provisioned_throughput: list[_Provisioned] = Field(default_factory=list)
    sagemaker_endpoints: list[_Endpoint] = Field(default_factory=list)


@dataclass(frozen=True)
class Provisioned:
    """One provisioned-throughput purchase: ``model_units`` of ``model`` at ``commitment`` in ``[start, end)``."""

    name: str
    model: str
    model_units: int
    commitment: str
    region: str
    start: datetime
    end: datetime | None
    arn: str | None = None
    line: int = 0

    @property
    def units(self) -> int:
        return self.model_units


@dataclass(frozen=True)
class Endpoint:
    """One SageMaker endpoint: ``instance_count`` instances of ``instance_type`` in ``[start, end)``."""

    name: str
    instance_type: str
    instance_count: int
    region: str
    start: datetime
    end: datetime | None
    line: int = 0

    @property
    def units(self) -> int:
        return self.instance_count


@dataclass(frozen=True)
class Capacity:
    """A checked capacity file (or none: no configured capacity)."""

    provisioned: tuple[Provisioned, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    source: str | None = None  # the file (None: no capacity file)
    digest: str | None = None

    def active(self, start: datetime, end: datetime) -> list[Provisioned | Endpoint]:
        """The entries running at some time of ``[start, end)``."""
        entries: list[Provisioned | Endpoint] = [*self.provisioned, *self.endpoints]
        return [e for e in entries if e.start < end and (e.end is None or e.end > start)]


def _checked(doc: _File, lines: dict[Any, int], name: str) -> Capacity:
    problems: list[str] = []
    seen: dict[str, int] = {}
    provisioned, endpoints = [], []
    sections: tuple[tuple[str, list[_Provisioned] | list[_Endpoint]], ...] = (
        ("provisioned_throughput", doc.provisioned_throughput), ("sagemaker_endpoints", doc.sagemaker_endpoints))
    for section, items in sections:
        for index, item in enumerate(items):
            line = lines.get((section, index), 1)
            where = f"{name}:{line}: {section}[{index}]"
            if item.end is not None and item.end <= item.start:
                problems.append(f"{where}: `to` ({item.end:%Y-%m-%d}) is not after `from` ({item.start:%Y-%m-%d})")
            if item.name in seen:
                problems.append(f"{where}: name {item.name!r} is also on line {seen[item.name]}: names are unique")
            seen.setdefault(item.name, line)
            if isinstance(item, _Provisioned):
                provisioned.append(Provisioned(name=item.name, model=item.model, model_units=item.model_units,
                                               commitment=item.commitment, region=item.region, start=item.start,
                                               end=item.end, arn=item.arn, line=line))
            elif isinstance(item, _Endpoint):
                endpoints.append(Endpoint(name=item.name, instance_type=item.instance_type.lower(),
                                          instance_count=item.instance_count, region=item.region, start=item.start,
                                          end=item.end, line=line))
    arns = [p.arn.lower() for p in provisioned if p.arn]
    for p in provisioned:
        if p.arn and arns.count(p.arn.lower()) > 1:
            problems.append(f"{name}:{p.line}: provisioned throughput {p.name!r}: its arn is listed twice")
            break
    if problems:
        raise UserError("capacity not accepted: " + "; ".join(problems))
    return Capacity(provisioned=tuple(provisioned), endpoints=tuple(endpoints))


def load_capacity(path: Path | None) -> Capacity:
    """Read and check a capacity file; ``None`` (no file) means no configured capacity.

    Raises:
        UserError: the file is missing or not accepted, listing every problem as ``FILE:LINE: path: …``.
    """
    if path is None:
        return Capacity()
    if not path.is_file():
        raise UserError(f"{path}: no such capacity file")
    text = path.read_text(encoding="utf-8")
    try:
        data, lines = read_yaml(text, name=str(path))
        doc = validate(_File, data, lines=lines, name=str(path))
    except YamlFileError as exc:
        raise UserError("capacity not accepted: " + "; ".join(exc.problems)) from None
    checked = _checked(doc, lines, str(path))
    return Capacity(provisioned=checked.provisioned, endpoints=checked.endpoints, source=str(path),
                    digest=hashlib.sha256(text.encode()).hexdigest()[:16])

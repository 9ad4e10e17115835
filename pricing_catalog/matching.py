"""Model-id matching: which catalog model key prices an invoked ``model_id`` (see docs/pricing.md).

Rules, first match wins:

1. **Exact**: the id is a catalog key or an alias the catalog names (this is how a provisioned or custom model
   ARN gets a price).
2. **ARNs**: a ``…:inference-profile/<id>`` or ``…:foundation-model/<id>`` ARN is matched by its ``<id>``;
   every other ARN (provisioned throughput, custom, imported models) is unpriced.
3. **Inference-profile prefix**: ``us.`` ``eu.`` ``apac.`` ``us-gov.`` ``ca.`` ``jp.`` ``au.`` ``global.`` …
   A profile id is first looked up as is (so ``global.X`` can carry its own, global price), then without the
   prefix (the regional profile costs what the base model costs in the calling region).
4. **Version suffix**: the id, then the id without a context-window variant (``:0:200k`` → ``:0``), then without
   the ``:N`` revision, then without a trailing ``-vN`` is compared with the same stems of every catalog key;
   the most specific stem shared with exactly one key wins (an ambiguous stem matches nothing).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

#: Geography prefixes of Bedrock inference profiles (the first dotted segment of a profile id).
PROFILE_PREFIXES = ("us", "eu", "apac", "us-gov", "ca", "jp", "au", "global")

_PROFILE_RE = re.compile(r"^(?P<prefix>[a-z]{2,6}(?:-gov)?)\.(?P<rest>[a-z0-9-]+\..+)$")
_ARN_RE = re.compile(r"^arn:aws[a-z-]*:bedrock:[^:]*:[^:]*:(?P<kind>[a-z-]+)/(?P<id>.+)$")
_CONTEXT_RE = re.compile(r"^(?P<stem>.+:\d+):[0-9]+[km]$")
_REVISION_RE = re.compile(r"^(?P<stem>.+):\d+$")
_VERSION_RE = re.compile(r"^(?P<stem>.+)-v\d+$")


def stems(model_id: str) -> list[str]:
    """The id and its ever less specific forms: without context variant, without ``:N``, without ``-vN``."""
    found = [model_id]
    for pattern in (_CONTEXT_RE, _REVISION_RE, _VERSION_RE):
        match = pattern.match(found[-1])
        if match:
            found.append(match.group("stem"))
    return found


def split_profile(model_id: str) -> tuple[str | None, str]:
    """``("us", "anthropic.claude…")`` for an inference-profile id, ``(None, model_id)`` otherwise."""
    match = _PROFILE_RE.match(model_id)
    if match and match.group("prefix") in PROFILE_PREFIXES:
        return match.group("prefix"), match.group("rest")
    return None, model_id


class ModelIndex:
    """Resolves invoked model ids to catalog keys; built once per catalog."""

    def __init__(self, *, keys: Iterable[str], aliases: dict[str, str] | None = None) -> None:
        self._exact: dict[str, str] = {k: k for k in keys}
        for alias, key in (aliases or {}).items():
            self._exact[alias] = key
        by_stem: dict[str, set[str]] = defaultdict(set)
        for key in self._exact.values():
            for stem in stems(key):
                by_stem[stem].add(key)
        self._stems = {stem: next(iter(found)) for stem, found in by_stem.items() if len(found) == 1}
        self._cache: dict[str, str | None] = {}

    def resolve(self, model_id: str) -> str | None:
        """The catalog key that prices ``model_id``, or None (the event is then unpriced)."""
        if model_id not in self._cache:
            self._cache[model_id] = self._resolve(model_id.strip())
        return self._cache[model_id]

    def _resolve(self, model_id: str) -> str | None:
        for candidate in (model_id, model_id.lower()):
            if candidate in self._exact:
                return self._exact[candidate]
        model_id = model_id.lower()
        arn = _ARN_RE.match(model_id)
        if arn:
            if arn.group("kind") not in ("inference-profile", "foundation-model"):
                return None  # provisioned / custom / imported: billed by the hour or unknown, never guessed
            return self._resolve(arn.group("id"))
        prefix, base = split_profile(model_id)
        candidates = [model_id, base] if prefix else [model_id]
        for candidate in candidates:
            if candidate in self._exact:
                return self._exact[candidate]
        for candidate in candidates:
            for stem in stems(candidate):
                if stem in self._stems:
                    return self._stems[stem]
        return None

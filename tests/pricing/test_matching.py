"""Model-id matching rules (pricing_catalog.matching; docs/pricing.md)."""

from __future__ import annotations

import pytest

from pricing_catalog.catalog import Catalog
from pricing_catalog.matching import ModelIndex, split_profile, stems


@pytest.mark.parametrize("model_id, key", [
    # exact
    ("anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"),
    ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    # inference-profile prefixes fall back to the base model
    ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic.claude-3-7-sonnet-20250219-v1:0"),
    ("eu.anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic.claude-3-7-sonnet-20250219-v1:0"),
    ("apac.amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0"),
    ("us-gov.anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"),
    ("jp.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
    # a global. profile without its own price falls back to the base model
    ("global.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0"),
    # version suffixes and context-window variants
    ("anthropic.claude-3-haiku-20240307-v1:0:200k", "anthropic.claude-3-haiku-20240307-v1:0"),
    ("meta.llama3-1-8b-instruct-v1:0:128k", "meta.llama3-1-8b-instruct-v1:0"),
    ("amazon.nova-pro-v1:0:300k", "amazon.nova-pro-v1:0"),
    ("stability.stable-image-core-v1:0", "stability.stable-image-core-v1:1"),
    ("anthropic.claude-3-haiku-20240307", "anthropic.claude-3-haiku-20240307-v1:0"),
    ("us.anthropic.claude-3-haiku-20240307-v1:0:48k", "anthropic.claude-3-haiku-20240307-v1:0"),
    ("amazon.titan-embed-text-v2:1", "amazon.titan-embed-text-v2:0"),
    # the dated snapshot identifies an Anthropic model; -vN:N is only its API revision
    ("anthropic.claude-3-5-sonnet-20241022-v3:0", "anthropic.claude-3-5-sonnet-20241022-v2:0"),
    # case and whitespace do not matter
    ("  Anthropic.Claude-3-Haiku-20240307-V1:0 ", "anthropic.claude-3-haiku-20240307-v1:0"),
    # ARNs of foundation models and inference profiles resolve by their id
    ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
     "anthropic.claude-3-haiku-20240307-v1:0"),
    ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0",
     "anthropic.claude-3-7-sonnet-20250219-v1:0"),
])
def test_ids_resolve_to_the_documented_key(builtin: Catalog, model_id: str, key: str) -> None:
    assert builtin.resolve(model_id) == key


@pytest.mark.parametrize("model_id", [
    "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcd1234",
    "arn:aws:bedrock:us-east-1:123456789012:custom-model/anthropic.claude-3-haiku-20240307-v1:0/xyz",
    "arn:aws:bedrock:us-east-1:123456789012:imported-model/k2j3h4",
    "anthropic.claude-3-5-sonnet-20250101-v2:0",   # another dated snapshot is another model
    "amazon.titan-embed-text",                     # ambiguous between v1 and v2: never guessed
    "my-sagemaker-endpoint",
    "",
])
def test_unknown_provisioned_and_ambiguous_ids_are_unpriced(builtin: Catalog, model_id: str) -> None:
    assert builtin.resolve(model_id) is None
    assert builtin.prices_for(model_id=model_id, region="us-east-1", service_tier="on_demand") == []


def test_an_alias_gives_a_provisioned_arn_a_price() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcd1234"
    index = ModelIndex(keys=["anthropic.claude-3-haiku-20240307-v1:0"],
                       aliases={arn: "anthropic.claude-3-haiku-20240307-v1:0"})
    assert index.resolve(arn) == "anthropic.claude-3-haiku-20240307-v1:0"


def test_stems_and_profiles() -> None:
    assert stems("anthropic.claude-3-haiku-20240307-v1:0:200k") == [
        "anthropic.claude-3-haiku-20240307-v1:0:200k", "anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-3-haiku-20240307-v1", "anthropic.claude-3-haiku-20240307"]
    assert stems("cohere.embed-english-v3") == ["cohere.embed-english-v3", "cohere.embed-english"]
    assert split_profile("us-gov.meta.llama3-8b-instruct-v1:0") == ("us-gov", "meta.llama3-8b-instruct-v1:0")
    assert split_profile("amazon.nova-pro-v1:0") == (None, "amazon.nova-pro-v1:0")
    assert split_profile("global.amazon.nova-pro-v1:0") == ("global", "amazon.nova-pro-v1:0")
    assert split_profile("xx.amazon.nova-pro-v1:0") == (None, "xx.amazon.nova-pro-v1:0")

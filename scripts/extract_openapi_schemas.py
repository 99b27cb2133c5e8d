#!/usr/bin/env python3
"""Extracts the OpenAI OpenAPI component schemas the SDK suites validate against
(and everything they reference) into tests/sdk/openai-schemas.json, so the tests do
not need the 3 MB spec. OpenAPI 3.0 leftovers (`nullable: true`) become JSON Schema
2020-12 unions with null. Source: the official spec (MIT), path given as argument.
"""

import json
import os
import sys

import yaml

SPEC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "openai-openapi", "openapi.yaml")
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "sdk", "openai-schemas.json")
ROOTS = [
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionResponse",
    "CreateEmbeddingResponse",
    "ListModelsResponse",
    "ErrorResponse",
    "Response",
    "ResponseStreamEvent",
    "ResponseItemList",
]


def refs(node, out):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            out.add(ref.rsplit("/", 1)[1])
        for v in node.values():
            refs(v, out)
    elif isinstance(node, list):
        for v in node:
            refs(v, out)


def fix_nullable(node):
    if isinstance(node, dict):
        if node.pop("nullable", False):
            t = node.get("type")
            if isinstance(t, str):
                node["type"] = [t, "null"]
            elif "type" not in node:
                inner = dict(node)
                node.clear()
                node["anyOf"] = [inner, {"type": "null"}]
            if "enum" in node and None not in node["enum"]:
                node["enum"] = node["enum"] + [None]
        for v in list(node.values()):
            fix_nullable(v)
    elif isinstance(node, list):
        for v in node:
            fix_nullable(v)


def main():
    with open(SPEC) as f:
        spec = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    schemas = spec["components"]["schemas"]
    keep, todo = set(), list(ROOTS)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        found = set()
        refs(schemas[name], found)
        todo.extend(found - keep)
    out = {"source": f"openai-openapi {spec['info']['version']} (MIT)", "components": {"schemas": {k: schemas[k] for k in sorted(keep)}}}
    fix_nullable(out)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=None, sort_keys=True, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {len(keep)} schemas")


if __name__ == "__main__":
    main()

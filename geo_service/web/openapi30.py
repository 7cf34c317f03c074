"""OpenAPI 3.0 output: OGC API – Features (oas30) asks for a 3.0 document; FastAPI writes 3.1."""

from __future__ import annotations

from typing import Any


def downgrade(node: Any) -> Any:
    """Rewrite the JSON Schema 2020-12 idioms FastAPI emits into their OpenAPI 3.0 forms."""
    if isinstance(node, list):
        return [downgrade(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: downgrade(value) for key, value in node.items()}
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            node.pop(key)
            node["nullable"] = True
            if len(rest) == 1:
                node.update({k: v for k, v in rest[0].items() if k not in node})
            else:
                node[key] = rest
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("examples"), list) and ("type" in node or "$ref" in node):
        examples = node.pop("examples")
        if examples:
            node["example"] = examples[0]
    if node.get("type") == "null":
        node.pop("type")
        node["nullable"] = True
    return node


def openapi_30(schema: dict[str, Any]) -> dict[str, Any]:
    converted = downgrade(schema)
    converted["openapi"] = "3.0.3"
    return converted

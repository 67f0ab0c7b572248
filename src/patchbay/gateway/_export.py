"""`patchbay export`: each platform's own tool configuration, pointing at the gateway.

- Vapi: function tools (`type: function`) whose `server.url` is the gateway's `/vapi`, with the
  tool's delayed and failed words as Vapi `messages`.
- Retell: custom functions (`type: custom`) posting to `/retell/<tool>`.
- ElevenLabs: webhook tools (`tool_config` of POST /v1/convai/tools) posting to
  `/elevenlabs/<tool>`, with the conversation id and caller id bound to dynamic variables.

No secret ever appears here: the platform's credential is attached in its own dashboard.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from patchbay.gateway._auth import ELEVENLABS_SECRET_HEADER, VAPI_SECRET_HEADER
from patchbay.gateway._elevenlabs import CALL_ID_VARIABLE, CALLER_VARIABLE
from patchbay.spec import Tool, parameters_schema, tool_description

__all__ = ["Platform", "credential_hint", "export_platform"]

_VAPI_DELAY_MS = 2000  # Vapi's own example for request-response-delayed
_CONSTRAINT_WORDS = {
    "pattern": "pattern",
    "format": "format",
    "minimum": "minimum",
    "maximum": "maximum",
    "minLength": "at least {} characters",
    "maxLength": "at most {} characters",
    "minItems": "at least {} items",
    "maxItems": "at most {} items",
    "default": "default",
}


class Platform(StrEnum):
    """Hosted voice platforms the gateway speaks to."""

    VAPI = "vapi"
    RETELL = "retell"
    ELEVENLABS = "elevenlabs"


def _timeout_s(tool: Tool) -> int:
    # A second beyond the tool's own budget: the gateway always answers before the platform quits.
    return math.ceil(tool.budget_s) + 1


def _vapi(tool: Tool, base: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if tool.say.delayed:
        messages.append(
            {
                "type": "request-response-delayed",
                "content": tool.say.delayed,
                "timingMilliseconds": _VAPI_DELAY_MS,
            }
        )
    if tool.say.failed:
        messages.append({"type": "request-failed", "content": tool.say.failed})
    out: dict[str, Any] = {
        "type": "function",
        "async": False,
        "function": {
            "name": tool.name,
            "description": tool_description(tool),
            "parameters": parameters_schema(tool),
        },
        "server": {"url": f"{base}/vapi", "timeoutSeconds": _timeout_s(tool)},
    }
    if messages:
        out["messages"] = messages
    return out


def _retell(tool: Tool, base: str) -> dict[str, Any]:
    schema = parameters_schema(tool)
    out: dict[str, Any] = {
        "type": "custom",
        "name": tool.name,
        "description": tool_description(tool),
        "url": f"{base}/retell/{tool.name}",
        "method": "POST",
        "parameters": {
            "type": "object",
            "properties": schema["properties"],
            "required": schema["required"],
        },
        "speak_during_execution": bool(tool.say.delayed),
        "speak_after_execution": True,
        "timeout_ms": _timeout_s(tool) * 1000,
        "args_at_root": False,  # keep the call object: it names the call and the caller
    }
    if tool.say.delayed:
        out["execution_message_description"] = tool.say.delayed
    return out


def _words(schema: dict[str, Any]) -> str:
    parts = [schema["description"]] if schema.get("description") else []
    for key, label in _CONSTRAINT_WORDS.items():
        if key in schema:
            value = schema[key]
            parts.append(label.format(value) if "{}" in label else f"{label} {value}")
    if "enum" in schema and schema.get("type") != "string":
        parts.append("one of " + ", ".join(str(v) for v in schema["enum"]))
    return "; ".join(parts)


def _el_property(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema property in ElevenLabs' reduced form (type, description, enum, nesting)."""
    kind = schema.get("type", "string")
    description = _words(schema) or name
    if kind == "array":
        items = schema.get("items") or {"type": "string"}
        return {"type": "array", "description": description, "items": _el_property(name, items)}
    if kind == "object":
        props = schema.get("properties") or {}
        return {
            "type": "object",
            "description": description,
            "properties": {k: _el_property(k, v) for k, v in props.items()},
            "required": list(schema.get("required") or []),
        }
    out: dict[str, Any] = {"type": kind, "description": description}
    if kind == "string" and "enum" in schema:
        out["enum"] = [str(v) for v in schema["enum"]]
    return out


def _elevenlabs(tool: Tool, base: str) -> dict[str, Any]:
    schema = parameters_schema(tool)
    properties = {k: _el_property(k, v) for k, v in schema["properties"].items()}
    for variable in (CALL_ID_VARIABLE, CALLER_VARIABLE):
        # Filled by ElevenLabs from the dynamic variable, never by the LLM.
        properties[variable] = {"type": "string", "description": "", "dynamic_variable": variable}
    return {
        "tool_config": {
            "type": "webhook",
            "name": tool.name,
            "description": tool_description(tool),
            "response_timeout_secs": min(120, max(5, _timeout_s(tool))),
            "api_schema": {
                "url": f"{base}/elevenlabs/{tool.name}",
                "method": "POST",
                "request_body_schema": {
                    "type": "object",
                    "description": f"Arguments of {tool.name}",
                    "properties": properties,
                    "required": schema["required"],
                },
            },
        }
    }


_EXPORTERS = {Platform.VAPI: _vapi, Platform.RETELL: _retell, Platform.ELEVENLABS: _elevenlabs}


def export_platform(
    tools: Iterable[Tool], platform: Platform, base_url: str
) -> list[dict[str, Any]]:
    """Every tool as `platform`'s tool configuration, calling the gateway at `base_url`."""
    base = base_url.rstrip("/")
    exporter = _EXPORTERS[platform]
    return [exporter(tool, base) for tool in tools]


def credential_hint(platform: Platform) -> str:
    """Where the platform must put the gateway's secret: the header and the config key it meets.

    No secret is ever printed, so the exported JSON leaves the credential out and this says it.
    """
    if platform is Platform.VAPI:
        return (
            "attach a Bearer Token credential to each tool's server, or send the secret in the "
            f"{VAPI_SECRET_HEADER} header: the gateway checks gateway.auth.vapi_secret (or bearer)"
        )
    if platform is Platform.RETELL:
        return (
            "Retell signs every request with your API key in X-Retell-Signature: the gateway "
            "checks it against gateway.auth.retell_api_key"
        )
    return (
        f"add the request header {ELEVENLABS_SECRET_HEADER} to each tool, its value a workspace "
        "secret holding gateway.auth.elevenlabs_secret (or Authorization: Bearer with "
        "gateway.auth.bearer)"
    )

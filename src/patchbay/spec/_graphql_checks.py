"""Checks of GraphQL tools across the config: integration kinds, variable templates, policies."""

from __future__ import annotations

from collections.abc import Mapping

from patchbay._errors import ConfigError
from patchbay.spec._checks import _not_a_url, _strings, _template
from patchbay.spec._model import Integration, Tool


def check_graphql_tool(
    tool: Tool, where: str, integrations: Mapping[str, Integration] | None
) -> list[ConfigError]:
    """Every mistake of a GraphQL tool, or of a REST request on a GraphQL integration."""
    errors: list[ConfigError] = []
    integration = (integrations or {}).get(tool.integration)
    if integration is not None and integration.kind == "graphql" and tool.request is not None:
        errors.append(
            ConfigError(
                f"integration {tool.integration!r} is kind graphql: declare the operation "
                "under graphql: {query: ..., operation: ...} instead of request",
                f"{where}.request",
            )
        )
    spec = tool.graphql
    if spec is None:
        return errors
    if integration is not None and integration.kind != "graphql":
        errors.append(
            ConfigError(
                f"integration {tool.integration!r} is not a GraphQL endpoint: "
                f"set kind: graphql on it (its base_url is then the endpoint)",
                f"{where}.graphql",
            )
        )
    params = list(tool.parameters)
    errors += _not_a_url(spec.path, f"{where}.graphql.path", tool.integration)
    for text, at in _strings(spec.variables, f"{where}.graphql.variables"):
        errors += _template(text, at, params, in_path=False)
    if tool.cache is not None:
        errors.append(ConfigError("GraphQL answers are not cached; remove cache", f"{where}.cache"))
    if tool.mode == "background" and tool.is_write and tool.idempotency is None:
        errors.append(
            ConfigError(
                "a background write may be sent more than once (retries, restarts): "
                "give it an idempotency key",
                f"{where}.mode",
            )
        )
    return errors

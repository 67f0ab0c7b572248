"""GraphQL tools: one named operation of a document, sent to a `kind: graphql` integration."""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

from pydantic import Field, model_validator

from patchbay.spec._base import Frozen

OperationType = Literal["query", "mutation"]

_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
# Comments and string literals removed before looking for the definition, so neither can
# pretend to define the operation. A light reading on purpose: the config loader stays free of
# graphql-core (start-up time); `patchbay import graphql` validates documents against the schema.
_NOISE = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*')


@functools.lru_cache(maxsize=512)
def operation_type(document: str, operation: str) -> str | None:
    """`query`, `mutation` or `subscription` for the operation named `operation`, else None."""
    text = _NOISE.sub(" ", document)
    found = re.search(
        rf"\b(query|mutation|subscription)\s+{re.escape(operation)}(?![_0-9A-Za-z])", text
    )
    return found.group(1) if found else None


class GraphQLRequest(Frozen):
    """A named operation sent as `POST {endpoint}` with `{query, operationName, variables}`.

    `variables` is a template like a request body: `{args.x}` and `{call.*}` placeholders, a
    value that is one placeholder keeps its type, an optional argument not given is left out.
    The answer's `data` is what `response` works on (`response.root: customer` for
    `data.customer`); `errors` become error codes by their `extensions.code`.
    """

    query: str = Field(min_length=1)  # the GraphQL document; it may define several operations
    operation: str  # the name of the operation to run
    variables: dict[str, Any] = Field(default_factory=dict)
    path: str = ""  # after the integration's base_url; empty: base_url is the endpoint

    @model_validator(mode="after")
    def _names_its_operation(self) -> GraphQLRequest:
        if not _NAME.fullmatch(self.operation):
            raise ValueError(f"operation {self.operation!r} is not a GraphQL name")
        kind = operation_type(self.query, self.operation)
        if kind is None:
            raise ValueError(
                f"the query defines no operation named {self.operation!r} "
                f"(write `query {self.operation}(...)` or `mutation {self.operation}(...)`)"
            )
        if kind == "subscription":
            raise ValueError("subscriptions are not tool calls: use a query or a mutation")
        return self

    @property
    def kind(self) -> OperationType:
        """Whether the operation reads (query) or changes something (mutation)."""
        return "mutation" if operation_type(self.query, self.operation) == "mutation" else "query"

"""Immutable spec objects: integrations, tools and their policies, as loaded from patchbay.yaml."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    model_validator,
)

from patchbay.spec._auth import AuthSpec
from patchbay.spec._base import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Frozen,
    SecretRef,
)
from patchbay.spec._graphql import GraphQLRequest
from patchbay.spec._jsonschema import JsonSchema
from patchbay.spec._nested import contact_fields, nested_problem
from patchbay.spec._ops import Defaults, GatewaySpec, ObserveSpec
from patchbay.spec._proxy import ProxySetting
from patchbay.spec._secrets import SecretsSpec
from patchbay.spec._state import StateValue
from patchbay.spec._webhooks import Completion, WebhookSource

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
ParamType = Literal["string", "integer", "number", "boolean", "array", "object"]
ParamFormat = Literal["e164", "email", "date", "date-time", "uri"]


class Param(Frozen):
    """One argument the LLM may give a tool."""

    type: ParamType = "string"
    description: str | None = None
    enum: tuple[Any, ...] | None = None
    format: ParamFormat | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=0)
    items: Param | None = None
    min_items: int | None = Field(default=None, ge=0)
    max_items: int | None = Field(default=None, ge=0)
    required: bool | None = None  # None: required unless it has a default or sits in require
    default: Any = None
    region: str | None = None  # e164: the region for numbers given without a country code
    # type object: its fields, each required unless it has a default or says required: false
    properties: dict[str, Param] | None = None
    additional_properties: bool | None = None  # with properties: other fields allowed too

    @model_validator(mode="after")
    def _nested_shape(self) -> Param:
        problem = nested_problem(self)
        if problem is not None:
            raise ValueError(problem)
        return self


class Require(Frozen):
    """Constraints across arguments."""

    one_of: tuple[str, ...] = ()  # at least one of these must be given
    all_of: tuple[str, ...] = ()


class Rule(Frozen):
    """A business rule: a JMESPath expression over {args, call} that must be true."""

    check: str
    message: str


class RequestSpec(Frozen):
    """A declarative HTTP request; `{args.x}`, `{call.id}`... placeholders are filled per call."""

    method: Method = "GET"
    path: str
    query: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    # json: the body as JSON; form: application/x-www-form-urlencoded (Stripe-style APIs),
    # nested values as key[sub]=value
    body_encoding: Literal["json", "form"] = "json"

    @model_validator(mode="after")
    def _form_is_fields(self) -> RequestSpec:
        if self.body_encoding == "form" and not isinstance(self.body, dict):
            raise ValueError("body_encoding: form needs a body of named fields (a mapping)")
        return self


class ListSummary(Frozen):
    """Summarise a long list: keep the first `top`, count all, total some fields."""

    path: str | None = None  # JMESPath to the list inside the (rooted) response; None = the root
    top: int = Field(default=5, ge=0)
    count_as: str = "count"
    totals: dict[str, str] = Field(default_factory=dict)  # out name -> item field to sum
    items_as: str = "items"


class ResponseSpec(Frozen):
    """How an upstream answer is turned into something an LLM can speak from."""

    root: str | None = None  # JMESPath
    fields: dict[str, str] | None = None  # out name -> JMESPath; None keeps all
    messages: dict[str, str] = Field(default_factory=dict)  # upstream code -> words
    code_field: str = "code"  # where an upstream error body keeps its code (JMESPath)
    strip: tuple[str, ...] = ()  # keys removed wherever they appear
    summarize: ListSummary | None = None
    max_chars: int = Field(default=4000, ge=64)
    # JSON Schema of the upstream answer (before root/fields), checked on every answer: a
    # mismatch is a `contract` event and metric, and with `enforce` an error result.
    expect: JsonSchema | None = None
    enforce: bool = False


class Say(Frozen):
    """Words the agent can speak for slow, unfinished or failed calls.

    `failed` is for outages known to have changed nothing (unreachable, refused, rate
    limited, breaker open); `pending` for a write sent without a definitive answer (falls back
    to `timeout`); `not_found`, `conflict` and `client_error` for the API's own refusals,
    which otherwise speak the error's words (`response.messages`).
    """

    delayed: str | None = None
    failed: str | None = None
    timeout: str | None = None
    accepted: str | None = None
    pending: str | None = None
    not_found: str | None = None
    conflict: str | None = None
    client_error: str | None = None


class Idempotency(Frozen):
    """Idempotency key template, sent on every attempt of one logical write."""

    key: str
    header: str = "Idempotency-Key"
    ttl_s: float = Field(default=86400.0, gt=0)
    # How long a write sent without a definitive answer is resent (same key) in the background.
    reconcile_s: float = Field(default=600.0, gt=0, le=86400)


class CacheSpec(Frozen):
    """Read cache for a GET tool."""

    ttl_s: float = Field(gt=0)
    stale_if_error_s: float = Field(default=0.0, ge=0)


class RetrySpec(Frozen):
    """Retries for network errors, 408, 429 and 5xx, with exponential backoff and full jitter."""

    attempts: int = Field(default=3, ge=1, le=10)
    backoff_s: float = Field(default=0.2, ge=0)
    max_backoff_s: float = Field(default=2.0, ge=0)


class RateLimitSpec(Frozen):
    """Client-side rate limit (GCRA), per integration and tenant."""

    per_second: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)


class BreakerSpec(Frozen):
    """Circuit breaker over a count window."""

    failure_rate: float = Field(default=0.5, gt=0, le=1)
    slow_call_s: float | None = Field(default=None, gt=0)
    slow_rate: float = Field(default=1.0, gt=0, le=1)
    window: int = Field(default=20, ge=1)
    min_calls: int = Field(default=10, ge=1)
    open_s: float = Field(default=30.0, gt=0)
    half_open_calls: int = Field(default=2, ge=1)
    per_endpoint: bool = False


class QuotaSpec(Frozen):
    """Quotas: per integration and tenant per day; per tool per call."""

    per_day: int | None = Field(default=None, ge=1)
    per_call: int | None = Field(default=None, ge=1)


class GuardBaseline(Frozen):
    """An anomaly when a minute's calls exceed `factor` times the usual rate (alerts only).

    The usual rate is an exponentially weighted average of the calls per minute, halving the
    weight of a minute every `half_life_min` minutes; a minute is anomalous past both
    `factor` x that rate and `min_per_minute`, once `warmup_min` minutes have been seen.
    """

    factor: float = Field(default=3.0, gt=1, le=1000)
    min_per_minute: int = Field(default=20, ge=1)
    half_life_min: float = Field(default=10.0, gt=0, le=10080)
    warmup_min: int = Field(default=10, ge=0, le=10080)


class Guard(Frozen):
    """Anomaly guard of one tool, per tenant: static limits and a moving baseline.

    An excess is an `anomaly` event and metric; with `action: block` a call past
    `max_per_call` is refused (the rest of that call), and a minute past `max_per_minute`
    refuses the tool for the tenant for `cool_off_s`.
    """

    max_per_call: int | None = Field(default=None, ge=1)
    max_per_minute: int | None = Field(default=None, ge=1)
    baseline: GuardBaseline | None = None
    action: Literal["alert", "block"] = "alert"
    cool_off_s: float = Field(default=300.0, gt=0, le=86400)

    @model_validator(mode="after")
    def _guards_something(self) -> Guard:
        if self.max_per_call is None and self.max_per_minute is None and self.baseline is None:
            raise ValueError("give at least one of max_per_call, max_per_minute or baseline")
        return self


class Canary(Frozen):
    """A newer version for a share of calls: the header's value, or the path prefix."""

    value: str = Field(min_length=1, max_length=64)
    percent: float = Field(gt=0, le=100)  # of calls (sticky per phone call)


class VersionPin(Frozen):
    """Pin the API version, by header or by path prefix; optionally canary a newer one."""

    header: str | None = None
    value: str | None = None
    path_prefix: str | None = None  # e.g. "/v2", put before every path
    canary: Canary | None = None

    @model_validator(mode="after")
    def _one_way(self) -> VersionPin:
        if (self.header is None) == (self.path_prefix is None):
            raise ValueError("give either header (with value) or path_prefix")
        if self.header is not None and not self.value:
            raise ValueError("a version header needs a value")
        if self.canary is not None and self.canary.value == (self.value or self.path_prefix):
            raise ValueError("canary.value is the version already pinned; give the new one")
        return self


class TenantOverride(Frozen):
    """Per-tenant settings, chosen by the call's tenant."""

    base_url: str | None = None
    auth: AuthSpec | None = None
    secret: SecretRef | None = None  # shorthand: same auth type, another secret
    rate_limit: RateLimitSpec | None = None
    quota: QuotaSpec | None = None
    version: VersionPin | None = None  # replaces the integration's version (and its canary)


class ExampleAnswer(Frozen):
    """What the API answers in an example: status, JSON body and extra headers."""

    status: int = Field(default=200, ge=100, le=599)
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)


class Example(Frozen):
    """One example interaction: arguments and the API's answer, for docs and `patchbay mock`.

    On a tool the arguments are the tool's; on an operation they are its path parameters, query
    parameters and top-level body fields. On a tool with a handler, `answer.body` is what the
    handler returns (docs only): the mock answers its requests from the operations' examples.
    """

    args: dict[str, Any] = Field(default_factory=dict)
    answer: ExampleAnswer = Field(default_factory=ExampleAnswer)


class Operation(Frozen):
    """One method and path template an integration may call (least privilege)."""

    method: Method
    path: str
    examples: tuple[Example, ...] = ()  # answers `patchbay mock` gives to this operation


class Integration(Frozen):
    """A REST API patchbay may call, and the policies around every request to it."""

    name: str = ""
    # rest: tools declare `request`; graphql: base_url is the GraphQL endpoint and tools
    # declare `graphql` (one named operation each)
    kind: Literal["rest", "graphql"] = "rest"
    base_url: str
    auth: AuthSpec | None = None
    version: VersionPin | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=5.0, gt=0)
    # decoded bytes of one answer read at most (after gzip/deflate): a bigger one is refused
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=1024, le=1 << 30)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    rate_limit: RateLimitSpec | None = None
    breaker: BreakerSpec | None = None
    quota: QuotaSpec | None = None
    tenants: dict[str, TenantOverride] = Field(default_factory=dict)
    # A tenant not under `tenants`: `refuse` it (no request), or run it with the integration's
    # own settings (`default`), sharing their quotas, limits and caches.
    unknown_tenants: Literal["refuse", "default"] = "refuse"
    operations: tuple[Operation, ...] = ()  # extra operations Python handlers may call
    # a forward proxy (URL or {url, username, password}); false/none: direct, whatever the env says
    proxy: ProxySetting = None


class Prefetch(Frozen):
    """Run a read tool at call start, its arguments filled from the call (`{call.caller}`)."""

    args: dict[str, Any] = Field(default_factory=dict)


Builtin = Literal["callback_request"]

# Validation context key: with it set, a Tool is built even when shape_problems() finds
# something, so the config loader can report that along with every other mistake of the tool.
DEFER_TOOL_SHAPE = "patchbay.defer_tool_shape"


class Tool(Frozen):
    """One API operation as an LLM function."""

    name: str = ""
    integration: str = ""  # required unless the tool is `builtin`
    description: str
    parameters: dict[str, Param] = Field(default_factory=dict)
    require: Require | None = None
    rules: tuple[Rule, ...] = ()
    validators: tuple[str, ...] = ()  # "module:function" Python hooks
    request: RequestSpec | None = None
    graphql: GraphQLRequest | None = None  # instead of request, on a `kind: graphql` integration
    handler: str | None = None  # "module:function"
    response: ResponseSpec = Field(default_factory=ResponseSpec)
    say: Say = Field(default_factory=Say)
    budget_s: float = Field(default=5.0, gt=0, le=120)
    cache: CacheSpec | None = None
    idempotency: Idempotency | None = None
    retry: RetrySpec | None = None  # overrides the integration's
    quota: QuotaSpec | None = None
    guard: Guard | None = None  # anomaly guard: call-rate limits and baseline per tenant
    mode: Literal["sync", "background"] = "sync"
    prefetch: bool | Prefetch = False  # true: no arguments; {args: {...}}: filled from the call
    write: bool | None = None  # None: a write unless the request method is GET
    builtin: Builtin | None = None  # answered by patchbay itself: no integration, no request
    when: str | None = None  # when the agent calls it, in words (docs)
    examples: tuple[Example, ...] = ()  # arguments -> the API's answer (docs, `patchbay mock`)
    audit: tuple[str, ...] = ()  # argument or answer fields kept, as given, in its audit line
    returns: JsonSchema | None = None  # JSON Schema of what the LLM receives (docs, exports)
    # correlation keys from its answer: name -> JMESPath; webhooks find this call by them
    correlate: dict[str, str] = Field(default_factory=dict)
    completion: Completion | None = None  # long-running: a webhook completes the start answer

    @model_validator(mode="after")
    def _audit_keeps_no_contact(self) -> Tool:
        for name in self.audit:
            param = self.parameters.get(name)
            if param is not None and (param.format in ("e164", "email") or contact_fields(param)):
                raise ValueError(
                    f"audit: {name!r} is or holds a phone number or email; the audit trail "
                    "never keeps caller contact details"
                )
        return self

    @model_validator(mode="after")
    def _examples_name_parameters(self) -> Tool:
        for i, example in enumerate(self.examples):
            unknown = sorted(set(example.args) - set(self.parameters))
            if unknown and self.parameters:
                raise ValueError(
                    f"examples[{i}].args: {', '.join(map(repr, unknown))} is not a parameter "
                    f"of this tool (its parameters are: {', '.join(self.parameters)})"
                )
        return self

    @model_validator(mode="after")
    def _request_or_handler(self, info: ValidationInfo) -> Tool:
        context = info.context
        if isinstance(context, dict) and context.get(DEFER_TOOL_SHAPE):
            return self  # the loader reports shape_problems() with the tool's other mistakes
        problems = self.shape_problems()
        if problems:
            raise ValueError(problems[0])
        return self

    def shape_problems(self) -> list[str]:
        """What is wrong in how the tool is answered (request, handler, builtin, integration)."""
        if self.builtin is not None:
            if self.request is not None or self.handler is not None or self.graphql is not None:
                return ["a builtin tool takes no request or handler"]
            return []
        problems = []
        if self.graphql is not None:
            if self.request is not None or self.handler is not None:
                problems.append("give exactly one of request, graphql or handler")
        elif (self.request is None) == (self.handler is None):
            problems.append("give exactly one of request or handler")
        if not self.integration:
            problems.append("missing required key 'integration'")
        return problems

    @property
    def is_write(self) -> bool:
        """Whether the tool changes something upstream (never cached, shielded from cancel)."""
        if self.write is not None:
            return self.write
        if self.graphql is not None:
            return self.graphql.kind == "mutation"
        return self.request is None or self.request.method != "GET"

    def is_required(self, name: str) -> bool:
        """Whether the LLM must give argument `name`."""
        param = self.parameters[name]
        if param.required is not None:
            return param.required
        if param.default is not None:
            return False
        return not (self.require and name in self.require.one_of)


class Config(Frozen):
    """A whole patchbay.yaml."""

    version: Literal[1] = 1
    state: StateValue = "memory"  # one store URL, or {fast: URL, durable: URL}
    defaults: Defaults = Field(default_factory=Defaults)
    integrations: dict[str, Integration] = Field(default_factory=dict)
    tools: dict[str, Tool] = Field(default_factory=dict)
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    observe: ObserveSpec = Field(default_factory=ObserveSpec)
    secrets: SecretsSpec = Field(default_factory=SecretsSpec)  # secret managers, TTLs
    webhooks: dict[str, WebhookSource] = Field(default_factory=dict)  # POST /webhooks/{name}
    base_dir: str = Field(default=".", exclude=True)  # where handlers are imported from
    # HTTP(S)_PROXY and NO_PROXY as read when the config was loaded (spec._proxy.proxy_env)
    proxy_env: dict[str, str] = Field(default_factory=dict, exclude=True)

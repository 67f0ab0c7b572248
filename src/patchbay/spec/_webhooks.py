"""Webhook sources (`webhooks:`): how deliveries are verified, and what each event does to a call.

```yaml
webhooks:
  billing:                                   # POST /webhooks/billing
    verify: {scheme: standard, secret: env:BILLING_WEBHOOK_SECRET, tolerance_s: 300}
    type: type                               # JMESPath to the event type
    on:
      payment.succeeded:
        call: {correlate: data.payment_id}   # or {id: data.metadata.call_id}
        state: {last_payment: data.confirmation_number}
        say: "Your payment has cleared; confirmation {data.confirmation_number}."
        after_call: {tool: send_receipt, args: {phone: "{call.caller}"}}
```
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from typing import Annotated, Any, Literal

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import Field, model_validator

from patchbay._errors import ConfigError
from patchbay.spec._base import Frozen, SecretRef

# What a webhook template may name: `{call.id}`, `{call.tenant}`, `{call.caller}`,
# `{call.state.x}`, or a dotted path into the delivery's JSON (`{data.confirmation_number}`).
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*")
_CALL_FIELDS = ("id", "tenant", "caller")
DEFAULT_MAX_WEBHOOK_BYTES = 256 * 1024
Secrets = SecretRef | tuple[SecretRef, ...]  # several during a secret's rotation


class StandardVerify(Frozen):
    """Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature; `whsec_` secrets."""

    scheme: Literal["standard"]
    secret: Secrets
    tolerance_s: float = Field(default=300.0, gt=0, le=86400)


class HmacVerify(Frozen):
    """An HMAC of the raw body (or of `signed` text around it) in a header, as the API signs."""

    scheme: Literal["hmac"]
    header: str = Field(min_length=1)  # where the signature is, e.g. X-Signature
    secret: Secrets
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""  # before the signature in the header, e.g. "sha256="
    timestamp_header: str | None = None  # checked against tolerance_s when given
    id_header: str | None = None  # the delivery's id (else the body's hash deduplicates)
    # What is signed: {id}, {timestamp} and {body} (the raw bytes); default "{body}", or
    # "{timestamp}.{body}" with a timestamp header.
    signed: str | None = None
    tolerance_s: float = Field(default=300.0, gt=0, le=86400)

    @model_validator(mode="after")
    def _signed_names_what_exists(self) -> HmacVerify:
        text = self.signed_template
        if "{body}" not in text:
            raise ValueError("signed must contain {body}")
        for name in PLACEHOLDER.findall(text):
            if name not in ("id", "timestamp", "body"):
                raise ValueError(f"signed: unknown placeholder {{{name}}} (id, timestamp, body)")
        if "{timestamp}" in text and self.timestamp_header is None:
            raise ValueError("signed uses {timestamp}: give timestamp_header")
        if "{id}" in text and self.id_header is None:
            raise ValueError("signed uses {id}: give id_header")
        return self

    @property
    def signed_template(self) -> str:
        """The signed text's template."""
        if self.signed is not None:
            return self.signed
        return "{body}" if self.timestamp_header is None else "{timestamp}.{body}"


Verify = Annotated[StandardVerify | HmacVerify, Field(discriminator="scheme")]


class CallMatch(Frozen):
    """Which call an event belongs to: an id the API echoes, or a key a tool's answer gave."""

    id: str | None = None  # JMESPath to the call id
    correlate: str | None = None  # JMESPath to a value some tool's `correlate` recorded
    tenant: str | None = None  # JMESPath to the call's tenant (with `id`)

    @model_validator(mode="after")
    def _one_way(self) -> CallMatch:
        if (self.id is None) == (self.correlate is None):
            raise ValueError("give exactly one of id or correlate")
        return self


class AfterCall(Frozen):
    """What happens when the call has already ended: a tool through the outbox, or a callback."""

    tool: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    callback: bool = False

    @model_validator(mode="after")
    def _one_way(self) -> AfterCall:
        if (self.tool is None) == (not self.callback):
            raise ValueError("give either tool (with args) or callback: true")
        if self.callback and self.args:
            raise ValueError("a callback takes no args")
        return self


class WebhookEvent(Frozen):
    """What one event type does."""

    call: CallMatch | None = None
    state: dict[str, str] = Field(default_factory=dict)  # call state name -> JMESPath
    say: str | None = None  # words for the agent: {data.x}, {call.caller}...
    after_call: AfterCall | None = None


class WebhookSource(Frozen):
    """One API that sends webhooks to `POST /webhooks/{name}`."""

    verify: Verify
    type: str = "type"  # JMESPath to the event type
    max_body_bytes: int = Field(default=DEFAULT_MAX_WEBHOOK_BYTES, ge=1024, le=16 * 1024 * 1024)
    on: dict[str, WebhookEvent] = Field(default_factory=dict)


class Completion(Frozen):
    """A long-running tool: its start answer is completed by a webhook event.

    The tool waits up to `wait_s` for the event whose `match` value equals the `key` entry of
    its `correlate`, and answers with it; later, it answers `pending` and the completion
    reaches the call as a call event of kind "completion".
    """

    webhook: str = Field(min_length=1)  # the webhook source
    event: str = Field(min_length=1)  # the event type that completes the operation
    match: str = Field(min_length=1)  # JMESPath over the delivery to the correlation value
    key: str | None = None  # which `correlate` entry it equals (default: the only one)
    wait_s: float = Field(gt=0, le=120)  # at most the tool's budget_s
    result: str = "data"  # JMESPath over the delivery: what the answer gains
    say: str | None = None  # words while it is pending (default: say.pending)


def secret_refs(verify: StandardVerify | HmacVerify) -> tuple[str, ...]:
    """Every secret reference of a source, newest first as given."""
    return (verify.secret,) if isinstance(verify.secret, str) else verify.secret


def _jmespath(expr: str, where: str) -> list[ConfigError]:
    try:
        jmespath.compile(expr)
    except JMESPathError as exc:
        first = str(exc).splitlines()[0]
        return [ConfigError(f"invalid JMESPath expression {expr!r}: {first}", where)]
    return []


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield value, where
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")


def placeholder_problem(name: str) -> str | None:
    """What is wrong with a webhook template's `{name}`, or None."""
    if not _PATH.fullmatch(name):
        return f"malformed placeholder {{{name}}}; write {{data.field}} or {{call.caller}}"
    parts = name.split(".")
    if parts[0] != "call":
        return None
    if len(parts) == 2 and parts[1] in _CALL_FIELDS:
        return None
    if len(parts) >= 3 and parts[1] == "state":
        return None
    return (
        f"unknown placeholder {{{name}}}; use call.id, call.tenant, call.caller, call.state.<name>"
    )


def _template(text: str, where: str) -> list[ConfigError]:
    found = (placeholder_problem(m) for m in PLACEHOLDER.findall(text))
    return [ConfigError(problem, where) for problem in found if problem]


def check_webhooks(
    webhooks: Mapping[str, WebhookSource],
    tools: Collection[str],
    correlations: Mapping[str, Mapping[str, str]],
) -> list[ConfigError]:
    """Cross-checks: expressions compile, templates are valid, after_call tools exist.

    `correlations`: each tool's `correlate` mapping (name -> JMESPath over its answer).
    """
    errors: list[ConfigError] = []
    for tool, mapping in correlations.items():
        for name, expr in mapping.items():
            errors += _jmespath(expr, f"tools.{tool}.correlate.{name}")
    for source, spec in webhooks.items():
        at = f"webhooks.{source}"
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", source):
            errors.append(ConfigError("source names are 1 to 64 letters, digits, '_' or '-'", at))
        errors += _jmespath(spec.type, f"{at}.type")
        for event, rule in spec.on.items():
            here = f"{at}.on.{event}"
            if rule.call is not None:
                for part in ("id", "correlate", "tenant"):
                    expr = getattr(rule.call, part)
                    if expr is not None:
                        errors += _jmespath(expr, f"{here}.call.{part}")
            elif rule.state or rule.say or rule.after_call:
                errors.append(
                    ConfigError("state, say and after_call need `call` to find the call", here)
                )
            for name, expr in rule.state.items():
                errors += _jmespath(expr, f"{here}.state.{name}")
            if rule.say is not None:
                errors += _template(rule.say, f"{here}.say")
            after = rule.after_call
            if after is not None and after.tool is not None:
                if after.tool not in tools:
                    known = ", ".join(tools) or "none"
                    errors.append(
                        ConfigError(
                            f"unknown tool {after.tool!r} (tools: {known})",
                            f"{here}.after_call.tool",
                        )
                    )
                for text, loc in _strings(after.args, f"{here}.after_call.args"):
                    errors += _template(text, loc)
    return errors


def check_completions(
    webhooks: Mapping[str, WebhookSource],
    completions: Mapping[str, tuple[Completion, Mapping[str, str], float]],
) -> list[ConfigError]:
    """Cross-checks of long-running tools: tool name -> (completion, correlate, budget_s)."""
    errors: list[ConfigError] = []
    for tool, (done, correlate, budget_s) in completions.items():
        at = f"tools.{tool}.completion"
        if done.wait_s > budget_s:
            errors.append(
                ConfigError(
                    f"wait_s ({done.wait_s:g}) must be at most the tool's budget_s ({budget_s:g})",
                    f"{at}.wait_s",
                )
            )
        source = webhooks.get(done.webhook)
        if source is None:
            known = ", ".join(webhooks) or "none"
            errors.append(
                ConfigError(f"unknown webhook source {done.webhook!r} (webhooks: {known})", at)
            )
        else:
            rule = source.on.get(done.event)
            if rule is None or rule.call is None:
                errors.append(
                    ConfigError(
                        f"webhooks.{done.webhook}.on needs a {done.event!r} rule with `call` "
                        "to find the call",
                        f"{at}.event",
                    )
                )
        if not correlate:
            errors.append(
                ConfigError("a completion needs `correlate` on the tool: its match key", at)
            )
        elif done.key is not None and done.key not in correlate:
            names = ", ".join(correlate)
            errors.append(ConfigError(f"key {done.key!r} is not in correlate ({names})", at))
        elif done.key is None and len(correlate) > 1:
            names = ", ".join(correlate)
            errors.append(ConfigError(f"give key: which correlate entry ({names})", at))
        errors += _jmespath(done.match, f"{at}.match")
        errors += _jmespath(done.result, f"{at}.result")
        if done.say is not None:
            errors += _template(done.say, f"{at}.say")
    return errors

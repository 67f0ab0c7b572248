"""Business rules: JMESPath expressions over `{args, call}` that must hold before a request.

JMESPath is the rule language because it can only read and compare data: a config file can
state "the amount must not exceed the open invoice" without being able to run code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.visitor import TreeInterpreter

from patchbay._errors import ConfigError
from patchbay.spec._call import CallContext, unlinked_words
from patchbay.spec._model import Rule

RULES_FIELD = "_rules"  # the field key of a rule that names no argument
_STATE_READ = re.compile(r"\bcall\.state\.([A-Za-z_][A-Za-z0-9_]*)")

# ParsedResult.search builds a new interpreter per call, which is most of a small rule's cost;
# the interpreter keeps no state between visits, so one is shared.
_INTERPRETER = TreeInterpreter()


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule's expression, compiled once, and the argument its failure is reported under."""

    ast: Any  # the parsed JMESPath tree
    message: str
    field: str
    source: str
    state: tuple[str, ...] = ()  # the call.state keys the expression reads


def _fields_mentioned(node: Mapping[str, Any]) -> Iterator[str]:
    """Argument names an expression reads (`args.<name>`), in the order they appear."""
    children = node.get("children") or []
    if node.get("type") == "subexpression" and len(children) >= 2:
        head, name = children[0], children[1]
        is_args = head.get("type") == "field" and head.get("value") == "args"
        if is_args and name.get("type") == "field":
            yield str(name["value"])
    for child in children:
        if isinstance(child, Mapping):
            yield from _fields_mentioned(child)


def compile_rule(rule: Rule, location: str = "") -> CompiledRule:
    """Compile one rule; a broken expression is a ConfigError naming where it is."""
    try:
        parsed = jmespath.compile(rule.check)
    except JMESPathError as exc:
        raise ConfigError(f"rule {rule.check!r} is not valid JMESPath: {exc}", location) from None
    field = next(_fields_mentioned(parsed.parsed), RULES_FIELD)
    state = tuple(dict.fromkeys(_STATE_READ.findall(rule.check)))
    return CompiledRule(parsed.parsed, rule.message, field, rule.check, state)


def _jmespath_false(value: Any) -> bool:
    # JMESPath truthiness, not Python's: 0 is true, only null, false and empty things are false.
    return value is None or value is False or value == "" or value == [] or value == {}


def check_rules(
    rules: tuple[CompiledRule, ...], args: Mapping[str, Any], call: CallContext
) -> dict[str, str]:
    """The failed rules' messages by field; empty when every rule holds."""
    if not rules:
        return {}
    scope = {"args": args, "call": call.as_template_scope()}
    failed: dict[str, str] = {}
    for rule in rules:
        try:
            ok = not _jmespath_false(_INTERPRETER.visit(rule.ast, scope))
        except (JMESPathError, TypeError, ValueError, ArithmeticError):
            # A rule that cannot be evaluated on these values (a function given the wrong type)
            # has not been shown to hold, so it fails like a false one.
            ok = False
        if not ok:
            message = rule.message
            if not call.linked:
                # The rule's own words ("look it up first") would be wrong: the lookup may
                # have happened, on a tool call the platform did not link to this one.
                missing = [key for key in rule.state if key not in call.state]
                if missing:
                    message = unlinked_words(f"call.state.{missing[0]}")
            before = failed.get(rule.field)
            failed[rule.field] = f"{before}; {message}" if before else message
    return failed

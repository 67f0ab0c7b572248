"""Argument validation before any request: types, ranges, formats, require, rules, hooks."""

from patchbay.validate._args import (
    ToolValidator,
    Validator,
    tool_validator,
    validate_arguments,
    validate_arguments_async,
)
from patchbay.validate._formats import (
    BadValue,
    check_format,
    normalize_email,
    normalize_phone,
)
from patchbay.validate._rules import RULES_FIELD

__all__ = [
    "RULES_FIELD",
    "BadValue",
    "ToolValidator",
    "Validator",
    "check_format",
    "normalize_email",
    "normalize_phone",
    "tool_validator",
    "validate_arguments",
    "validate_arguments_async",
]

"""Rules for object parameters that declare their fields (`properties`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Object levels with declared fields, the parameter itself included (OpenAI strict mode's
# long-standing limit; deeper shapes stay free-form objects).
MAX_NESTING = 5
# Letters, digits, '_' and '-': what every LLM format accepts as a property key, and no '.',
# which would make field paths (`address.city`) ambiguous.
FIELD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def field_required(param: Any) -> bool:
    """Whether a declared field must be given: as for arguments, unless it has a default."""
    if param.required is not None:
        return bool(param.required)
    return param.default is None


def nesting(param: Any) -> int:
    """Object levels with declared fields in `param` (items included), itself counted."""
    inner = [nesting(p) for p in (param.properties or {}).values()]
    if param.items is not None:
        inner.append(nesting(param.items))
    return (1 if param.properties is not None else 0) + max(inner, default=0)


def nested_problem(param: Any) -> str | None:
    """What is wrong with `param`'s `properties` / `additional_properties`, or None."""
    props: Mapping[str, Any] | None = param.properties
    if props is None:
        if param.additional_properties is not None:
            return "additional_properties applies only with properties"
        return None
    if param.type != "object":
        return f"properties are only for type: object, not {param.type}"
    bad = [name for name in props if not FIELD_NAME.fullmatch(name)]
    if bad:
        return f"field name {bad[0]!r}: field names are 1 to 64 letters, digits, '_' or '-'"
    if nesting(param) > MAX_NESTING:
        return (
            f"objects nest too deeply: at most {MAX_NESTING} levels of declared fields; "
            "leave the innermost as a free-form object (no properties)"
        )
    return None


def contact_fields(param: Any) -> set[str]:
    """Names of fields inside `param` (any depth) that hold a phone number or an email."""
    out: set[str] = set()
    for name, field in (param.properties or {}).items():
        if field.format in ("e164", "email"):
            out.add(name)
        out |= contact_fields(field)
    if param.items is not None:
        out |= contact_fields(param.items)
    return out

"""Every secret reference a config holds, with where it is, for checking them before serving."""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from typing import Any, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel
from pydantic.fields import FieldInfo

from patchbay.spec._base import SecretRef
from patchbay.spec._messages import Loc, join_loc

__all__ = ["secret_references"]

_REF_CHECK = next(m for m in get_args(SecretRef)[1:] if isinstance(m, AfterValidator))


def _holds_reference(field: FieldInfo) -> bool:
    """Whether a field is typed SecretRef (also inside Optional, lists or mappings)."""
    if _REF_CHECK in field.metadata:
        return True
    stack: list[Any] = [field.annotation]
    while stack:
        tp = stack.pop()
        if tp == SecretRef:
            return True
        if get_origin(tp) in (Union, types.UnionType, list, tuple, dict, Mapping):
            stack.extend(get_args(tp))
    return False


def _walk(value: Any, loc: Loc, is_ref: bool) -> Iterator[tuple[str, str]]:
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            yield from _walk(getattr(value, name), (*loc, name), _holds_reference(field))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, (*loc, str(key)), is_ref)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk(item, (*loc, i), is_ref)
    elif is_ref and isinstance(value, str):
        yield join_loc(loc), value


def secret_references(config: BaseModel) -> list[tuple[str, str]]:
    """(location, reference) for every secret reference in `config`, in file order.

    Found by type (every field declared SecretRef), so a section added later is covered.
    """
    return list(_walk(config, (), False))

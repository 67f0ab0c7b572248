"""Checking an object argument whose fields are declared (`properties`), field by field.

Problems inside are reported per field path (`address.city`, `lines[0].sku`), in the same
words as top-level arguments; nested values are normalised as top-level ones are.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from patchbay.spec._model import Param
from patchbay.spec._nested import field_required
from patchbay.validate._formats import BadValue


class BadFields(BadValue):
    """Problems inside an object or list: path suffix (`.city`, `[2].sku`) -> words."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{path.lstrip('.')}: {w}" for path, w in fields.items()))
        self.fields = dict(fields)


class Cleaner(Protocol):
    """One value's compiled checks."""

    def clean(self, value: Any, region: str) -> Any: ...


class ObjectCheck:
    """The declared fields of one object parameter, compiled once."""

    __slots__ = ("checks", "defaults", "extra", "known", "required")

    def __init__(self, param: Param, location: str, make: Callable[[Param, str], Cleaner]) -> None:
        fields = param.properties or {}
        self.checks = {n: make(p, f"{location}.properties.{n}") for n, p in fields.items()}
        self.required = tuple(n for n, p in fields.items() if field_required(p))
        self.defaults = {n: p.default for n, p in fields.items() if p.default is not None}
        self.extra = bool(param.additional_properties)
        self.known = ", ".join(fields) or "none"

    def clean(self, value: Mapping[str, Any], region: str) -> dict[str, Any]:
        """The normalised object, or BadFields naming each bad field."""
        bad: dict[str, str] = {}
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            check = self.checks.get(key)
            if check is None:
                if self.extra:
                    cleaned[key] = item  # free-form: checked as JSON by the caller
                else:
                    bad[f".{key}"] = f"is not a field of this object (its fields are: {self.known})"
            elif item is not None:  # OpenAI strict mode sends null for "not given"
                try:
                    cleaned[key] = check.clean(item, region)
                except BadFields as exc:
                    bad.update((f".{key}{path}", words) for path, words in exc.fields.items())
                except BadValue as exc:
                    bad[f".{key}"] = exc.words
        for name in self.required:
            if value.get(name) is None:  # absent or null; a bad value is said above
                bad[f".{name}"] = "is required but was not given"
        if bad:
            raise BadFields(bad)
        for name, default in self.defaults.items():
            if name not in cleaned:
                mutable = isinstance(default, list | dict)
                cleaned[name] = copy.deepcopy(default) if mutable else default
        return cleaned

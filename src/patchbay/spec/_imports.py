"""Importing `module:function` references (handlers, validators) relative to a config's folder."""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

from patchbay._errors import ConfigError

Handler = Callable[..., Awaitable[Any]]


def is_async_callable(obj: object) -> bool:
    """Whether calling `obj` returns an awaitable coroutine (async def, or an async __call__)."""
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def import_callable(ref: str, base_dir: str) -> Callable[..., Any]:
    """Import `module:qualname`, with `base_dir` on sys.path; raise ConfigError in plain words."""
    obj = import_object(ref, base_dir)
    if not callable(obj):
        raise ConfigError(f"{ref!r} is not callable")
    return cast(Callable[..., Any], obj)


def import_object(ref: str, base_dir: str) -> Any:
    """The object `module:qualname` names, imported with `base_dir` on sys.path."""
    module_name, sep, qualname = ref.partition(":")
    if not sep or not module_name or not qualname:
        raise ConfigError(f"expected 'module:function', got {ref!r}")
    if "<locals>" in qualname:
        raise ConfigError(
            f"{ref!r} is defined inside a function and cannot be imported; "
            "register it with ToolRegistry instead"
        )
    # Left on sys.path: a handler module may import its siblings lazily, long after loading.
    if base_dir not in sys.path:
        sys.path.insert(0, base_dir)
    if module_name not in sys.modules:
        importlib.invalidate_caches()  # finders cache folder listings; the file may be new
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise ConfigError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no {qualname!r}") from None
    return obj


@functools.cache
def load_handler(base_dir: str, ref: str) -> Handler:
    """Import an async handler once per (folder, reference); failures are not cached."""
    func = import_callable(ref, base_dir)
    if not is_async_callable(func):
        raise ConfigError(f"{ref!r} is not an async function (define it with 'async def')")
    return cast(Handler, func)

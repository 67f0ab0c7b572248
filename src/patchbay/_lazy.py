"""Lazy package exports (PEP 562): a public name's module is imported when the name is first used.

A package's `__init__` lists where each public name lives instead of importing every module, so
`import patchbay` or `from patchbay.http import check_secrets` does not pay for aiohttp, redis or
the MCP SDK: the command line starts in a fraction of the time. Type checkers read the same names
from an `if TYPE_CHECKING:` block beside the table.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, where: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Module `__getattr__` and `__dir__` for `package`, from {module: (public names...)}."""
    home = {name: module for module, names in where.items() for name in names}

    def __getattr__(name: str) -> object:
        module = home.get(name)
        if module is None:
            # `import patchbay` then `patchbay.gateway.X`: a submodule, as if imported eagerly.
            if not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}"):
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        found = importlib.import_module(module, package)
        # A name that is its module's own name stands for the module (a submodule export).
        value = found if module.rpartition(".")[2] == name else getattr(found, name)
        setattr(sys.modules[package], name, value)  # found once; later lookups skip this hook
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *home})

    return __getattr__, __dir__

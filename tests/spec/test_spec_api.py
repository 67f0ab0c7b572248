"""The spec package's public names."""

from __future__ import annotations

import patchbay.spec
import patchbay.spec.formats


def test_all_is_exactly_the_public_names() -> None:
    public = {n for n in vars(patchbay.spec) if not n.startswith("_")} - {"formats", "annotations"}
    assert set(patchbay.spec.__all__) == public
    assert sorted(patchbay.spec.__all__) == patchbay.spec.__all__


def test_formats_all() -> None:
    public = {n for n in vars(patchbay.spec.formats) if not n.startswith("_")}
    assert set(patchbay.spec.formats.__all__) == public == {"SchemaFormat", "export_tools"}


def test_brief_names_are_exported() -> None:
    brief = {
        "Config",
        "Integration",
        "Tool",
        "Param",
        "CallContext",
        "load_config",
        "load_config_text",
        "ToolRegistry",
        "SchemaFormat",
        "export_tools",
        "parameters_schema",
        "merge_tools",
        "resolve_handler",
    }
    assert brief <= set(patchbay.spec.__all__)

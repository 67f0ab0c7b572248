"""The validate package's public names are exactly its __all__."""

from __future__ import annotations

import patchbay.validate


def test_all_is_exactly_the_public_names() -> None:
    public = {n for n in vars(patchbay.validate) if not n.startswith("_")}
    modules = {"annotations"}
    assert set(patchbay.validate.__all__) == public - modules

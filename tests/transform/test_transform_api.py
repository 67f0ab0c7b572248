"""The transform package's public names are exactly its __all__."""

from __future__ import annotations

import patchbay.transform


def test_all_is_exactly_the_public_names() -> None:
    public = {n for n in vars(patchbay.transform) if not n.startswith("_")}
    assert set(patchbay.transform.__all__) == public - {"annotations"}

"""Which API version an exchange speaks: the pinned one, or a canary for a share of calls."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from patchbay.spec._call import CallContext
from patchbay.spec._model import Integration, VersionPin

__all__ = ["VersionChooser", "canary_share", "version_label"]

_SCALE = float(1 << 64)


def version_label(pin: VersionPin | None) -> str | None:
    """The label of a pinned version: the header's value or the path prefix (config text)."""
    if pin is None:
        return None
    return pin.value if pin.header is not None else pin.path_prefix


def canary_share(tenant: str | None, call_id: str) -> float:
    """Where a phone call falls in [0, 100): the same for every request of the call.

    A keyed hash rather than Python's hash(): that one changes per process, and replicas of a
    gateway must send one call's requests to the same version.
    """
    digest = hashlib.blake2b(f"{tenant or ''}\x00{call_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE * 100.0


class VersionChooser:
    """Chooses per exchange between an integration's pinned version and its canary.

    A call with an id (`CallContext.linked`) is placed by a hash of its tenant and id, so
    every request of one phone call uses the same version; a tool call without a call decides
    by itself. The canary's settings are a copy of the integration, built once.
    """

    __slots__ = ("_canaries", "_random")

    def __init__(self, rand: Callable[[], float] = random.random) -> None:
        self._random = rand
        # id(effective integration) -> (that integration, its canary copy); the effective
        # integrations are cached per known tenant, so this stays as small as they are.
        self._canaries: dict[int, tuple[Integration, Integration]] = {}

    def choose(self, integration: Integration, call: CallContext) -> tuple[Integration, str | None]:
        """The settings to send with and the version label (None: no version pinned)."""
        pin = integration.version
        if pin is None:
            return integration, None
        canary = pin.canary
        if canary is None:
            return integration, version_label(pin)
        linked = call.linked
        share = canary_share(call.tenant, call.id) if linked else self._random() * 100.0
        if share >= canary.percent:
            return integration, version_label(pin)
        return self._canary(integration, pin), canary.value

    def _canary(self, integration: Integration, pin: VersionPin) -> Integration:
        found = self._canaries.get(id(integration))
        if found is not None and found[0] is integration:
            return found[1]
        assert pin.canary is not None
        if pin.header is not None:
            moved = pin.model_copy(update={"value": pin.canary.value, "canary": None})
        else:
            moved = pin.model_copy(update={"path_prefix": pin.canary.value, "canary": None})
        copy = integration.model_copy(update={"version": moved})
        self._canaries[id(integration)] = (integration, copy)
        return copy

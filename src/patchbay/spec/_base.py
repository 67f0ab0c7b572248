"""The base of every spec object, and secret references."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

_REFERENCE = re.compile(r"[a-z][a-z0-9+.-]*:\S+")
# An HTTP header name: an RFC 9110 token (config headers, tool headers, collector headers).
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # an integration's `max_response_bytes`


def _reference(value: str) -> str:
    if not _REFERENCE.fullmatch(value):
        raise ValueError(
            "must be a secret reference like env:NAME or file:PATH; "
            "never put a secret in the config"
        )
    return value


SecretRef = Annotated[str, AfterValidator(_reference)]


class Frozen(BaseModel):
    """Base of every spec object: immutable, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

"""API version pins: a header, or a path prefix right after the base URL's own path."""

from __future__ import annotations

import pytest

from patchbay.http._types import Request
from patchbay.http._version import apply_version
from patchbay.spec._model import VersionPin


def req(url: str) -> Request:
    return Request(method="GET", url=url, path_template="/x", integration="it", tool="t")


def test_no_pin_changes_nothing() -> None:
    request = req("https://api.test/base/customers")
    assert apply_version(request, None, "https://api.test/base") is request


def test_header_pin() -> None:
    pin = VersionPin(header="X-API-Version", value="2024-06-01")
    pinned = apply_version(req("https://api.test/customers"), pin, "https://api.test")
    assert pinned.headers == {"X-API-Version": "2024-06-01"}
    assert pinned.url == "https://api.test/customers"


@pytest.mark.parametrize(
    ("base", "url", "expected"),
    [
        (
            "https://api.test/base",
            "https://api.test/base/customers/1",
            "https://api.test/base/v2/customers/1",
        ),
        (
            "https://api.test/base/",
            "https://api.test/base/customers",
            "https://api.test/base/v2/customers",
        ),
        ("https://api.test", "https://api.test/customers?x=1", "https://api.test/v2/customers?x=1"),
        ("https://api.test", "https://api.test", "https://api.test/v2"),
        ("https://api.test", "https://api.test/v2/customers", "https://api.test/v2/customers"),
    ],
)
def test_path_prefix_goes_after_the_base_path(base: str, url: str, expected: str) -> None:
    pin = VersionPin(path_prefix="/v2/")
    pinned = apply_version(req(url), pin, base)
    assert pinned.url == expected
    assert apply_version(pinned, pin, base).url == expected  # applying twice is harmless


@pytest.mark.parametrize("url", ["https://other.test/base/x", "https://api.test/basement/x"])
def test_a_request_off_the_base_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        apply_version(req(url), VersionPin(path_prefix="v2"), "https://api.test/base")

"""Secrets in a config are references; a literal is refused at load time, never echoed."""

from __future__ import annotations

import pytest

from patchbay import ConfigErrors
from patchbay.spec import load_config_text

LITERAL = "sk_live_abcdef123456"


@pytest.mark.parametrize(
    ("auth", "where"),
    [
        (f"{{type: bearer, secret: {LITERAL}}}", "integrations.b.auth.secret"),
        (f"{{type: api_key, secret: {LITERAL}}}", "integrations.b.auth.secret"),
        (f"{{type: basic, username: u, secret: {LITERAL}}}", "integrations.b.auth.secret"),
        (f"{{type: mtls, cert: {LITERAL}, key: env:K}}", "integrations.b.auth.cert"),
    ],
)
def test_literal_secret_is_refused_with_its_location(auth: str, where: str) -> None:
    text = f"version: 1\nintegrations:\n  b:\n    base_url: http://x.test\n    auth: {auth}\n"
    with pytest.raises(ConfigErrors) as err:
        load_config_text(text)
    assert any(e.location == where and "secret reference" in e.message for e in err.value.errors)
    assert LITERAL not in str(err.value)


def test_references_are_accepted() -> None:
    text = (
        "version: 1\nintegrations:\n  b:\n    base_url: http://x.test\n"
        "    auth: {type: bearer, secret: env:TOKEN}\n"
        "gateway:\n  auth: {bearer: file:token.txt, vapi_secret: vault:kv/vapi}\n"
    )
    cfg = load_config_text(text)
    assert cfg.gateway.auth.vapi_secret == "vault:kv/vapi"

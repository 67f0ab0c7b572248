"""Outbound proxies: an integration's `proxy:` and the proxy variables of the environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, model_validator

from patchbay.spec._base import Frozen, SecretRef

__all__ = ["ProxySetting", "ProxySpec", "proxy_env"]

_OFF = frozenset({"none", "off", "direct"})


class ProxySpec(Frozen):
    """A forward proxy every request of the integration goes through (HTTPS by CONNECT)."""

    url: str  # http://host:port of the proxy itself
    username: str | None = None
    password: SecretRef | None = None  # Proxy-Authorization: Basic, by secret reference

    @model_validator(mode="after")
    def _check(self) -> ProxySpec:
        parts = urlsplit(self.url)
        if parts.scheme.lower() != "http":
            raise ValueError(
                f"proxy url must start with http:// (got {parts.scheme or 'no'} scheme); "
                "HTTPS requests still travel end to end encrypted through it (CONNECT)"
            )
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "proxy url must not hold credentials: give username and password "
                "(a secret reference like env:PROXY_PASSWORD)"
            )
        try:
            parts.port  # noqa: B018 - read for its check: a port that is no number raises
        except ValueError:
            raise ValueError("proxy url has a port that is not a number") from None
        if not parts.hostname:
            raise ValueError("proxy url has no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("proxy url is only scheme, host and port, like http://proxy:3128")
        if self.password is not None and self.username is None:
            raise ValueError("a proxy password needs a username")
        return self


def _shorthand(value: Any) -> Any:
    """`proxy: URL` is `{url: URL}`; `proxy: none` (or false) goes direct, ignoring the env.

    An empty value (`proxy: ${EGRESS_PROXY:-}` with the variable unset) is no setting at all.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        return False if text.lower() in _OFF else {"url": text}
    if value is True:
        raise ValueError("give the proxy's URL (or false / none to go direct)")
    return value


# None: the environment's proxy variables apply; False: never through a proxy.
ProxySetting = Annotated[ProxySpec | Literal[False] | None, BeforeValidator(_shorthand)]


def proxy_env(env: Mapping[str, str]) -> dict[str, str]:
    """HTTP_PROXY, HTTPS_PROXY and NO_PROXY of `env` as {"http", "https", "no"}.

    Read when the config is loaded (with the `${VAR}` interpolation, from the same mapping);
    the lowercase name wins over the uppercase one, as in curl and urllib. Under CGI
    (REQUEST_METHOD set) HTTP_PROXY may come from a request's `Proxy:` header: ignored there.
    """
    found: dict[str, str] = {}
    for scheme in ("http", "https", "no"):
        lower, upper = f"{scheme}_proxy", f"{scheme.upper()}_PROXY"
        value = env.get(lower)
        if value is None and not (scheme == "http" and "REQUEST_METHOD" in env):
            value = env.get(upper)
        if value and value.strip():
            found[scheme] = value.strip()
    return found

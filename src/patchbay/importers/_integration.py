"""The integration part of an import: base URL from `servers` (or Swagger's host) and auth from
the security schemes, as secret references to environment variables it names."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from patchbay.importers._source import RefError, Refs, listed, mapping

_SERVER_VAR = re.compile(r"\{([^{}]+)\}")


@dataclass
class Found:
    """An integration as config data, the comments a person should read, and the env names."""

    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)  # variables to set before a call works


def server_urls(doc: Mapping[str, Any]) -> list[str]:
    """Every server URL the document gives, its variables filled with their defaults."""
    if str(doc.get("swagger", "")).startswith("2"):
        host = doc.get("host") if isinstance(doc.get("host"), str) else None
        base = str(doc.get("basePath") or "")
        if not host:
            return [base] if base else []
        schemes = [s for s in listed(doc.get("schemes")) if s in ("http", "https")]
        return [f"{s}://{host}{base}" for s in schemes or ["https"]]
    urls = []
    for server in listed(doc.get("servers")):
        if not isinstance(server, Mapping) or not isinstance(server.get("url"), str):
            continue
        variables = mapping(server.get("variables"))

        def default(match: re.Match[str], variables: Mapping[str, Any] = variables) -> str:
            var = variables.get(match.group(1))
            return str(var.get("default", "")) if isinstance(var, Mapping) else match.group(0)

        urls.append(_SERVER_VAR.sub(default, server["url"]))
    return urls


def _absolute(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # brackets that are no IPv6 address, a bad port
        return False


def _schemes(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    if str(doc.get("swagger", "")).startswith("2"):
        return mapping(doc.get("securityDefinitions"))
    return mapping(mapping(doc.get("components")).get("securitySchemes"))


def _auth(
    scheme: Mapping[str, Any], prefix: str, base_url: str
) -> tuple[dict[str, Any] | None, list[str], str | None]:
    """(auth config, env names, reason it cannot be expressed) for one security scheme."""
    kind = scheme.get("type")
    where = scheme.get("in")
    if kind == "apiKey" and where in ("header", "query"):
        env = f"{prefix}_API_KEY"
        auth: dict[str, Any] = {"type": "api_key"}
        auth["header" if where == "header" else "query"] = str(scheme.get("name") or "X-API-Key")
        if where == "query":
            auth["header"] = None
        auth["secret"] = f"env:{env}"
        return auth, [env], None
    if kind == "apiKey":
        return None, [], f"an API key sent in a {where}"
    bearer = kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer"
    if bearer:
        return {"type": "bearer", "secret": f"env:{prefix}_TOKEN"}, [f"{prefix}_TOKEN"], None
    if (kind == "http" and str(scheme.get("scheme", "")).lower() == "basic") or kind == "basic":
        user, password = f"{prefix}_USERNAME", f"{prefix}_PASSWORD"
        auth = {"type": "basic", "username": f"${{{user}}}", "secret": f"env:{password}"}
        return auth, [user, password], None
    if kind == "oauth2":
        flow = mapping(scheme.get("flows")).get("clientCredentials")
        if flow is None and scheme.get("flow") == "application":  # Swagger 2.0
            flow = scheme
        if not isinstance(flow, Mapping) or not flow.get("tokenUrl"):
            # A user's flow (authorization code, implicit): patchbay cannot log in for the
            # user, but sends the access token one obtained, as a bearer token.
            return {"type": "bearer", "secret": f"env:{prefix}_TOKEN"}, [f"{prefix}_TOKEN"], None
        token_url = urljoin(base_url, str(flow["tokenUrl"]))
        if not _absolute(token_url):
            return None, [], f"OAuth2 token URL {flow['tokenUrl']!r} is not absolute"
        client_id, secret = f"{prefix}_CLIENT_ID", f"{prefix}_CLIENT_SECRET"
        auth = {
            "type": "oauth2",
            "token_url": token_url,
            "client_id": f"${{{client_id}}}",
            "secret": f"env:{secret}",
        }
        scopes = flow.get("scopes")
        if isinstance(scopes, Mapping) and scopes:
            auth["scope"] = " ".join(map(str, scopes))
        return auth, [client_id, secret], None
    if kind == "openIdConnect":  # the same: an ID provider's access token, obtained beforehand
        return {"type": "bearer", "secret": f"env:{prefix}_TOKEN"}, [f"{prefix}_TOKEN"], None
    if kind == "mutualTLS":
        cert, key = f"{prefix}_CLIENT_CERT", f"{prefix}_CLIENT_KEY"
        return {"type": "mtls", "cert": f"env:{cert}", "key": f"env:{key}"}, [cert, key], None
    return None, [], f"security scheme type {kind!r}"


def _together(
    doc: Mapping[str, Any],
    refs: Refs,
    schemes: Mapping[str, Any],
    chosen: str,
    prefix: str,
    found: Found,
) -> None:
    """API keys the document asks for together with the chosen scheme (`security: [{appKey: [],
    appToken: []}]`): each a header of the integration, its value from an environment variable
    (patchbay's auth sends one credential)."""
    # The document's requirement, else the first an operation states.
    stated = [*listed(doc.get("security"))]
    for item in mapping(doc.get("paths")).values():
        for op in mapping(item).values():
            stated += listed(op.get("security")) if isinstance(op, Mapping) else []
    first = next((r for r in stated if isinstance(r, Mapping) and chosen in r), {})
    for other in first:
        try:
            scheme = mapping(refs.deref(schemes.get(other)))
        except RefError:
            continue
        if other == chosen or scheme.get("type") != "apiKey" or scheme.get("in") != "header":
            continue
        env = f"{prefix}_{re.sub(r'[^A-Z0-9]+', '_', str(other).upper()).strip('_')}"
        header = str(scheme.get("name") or other)
        found.data.setdefault("headers", {})[header] = f"${{{env}}}"
        found.env.append(env)
        found.notes.append(f"the API asks for {header} too: sent from ${env}")


def integration(doc: Mapping[str, Any], refs: Refs, prefix: str) -> Found:
    """The integration for `doc`: `${PREFIX_URL:-first server}` and its first usable auth."""
    urls = server_urls(doc)
    first = urls[0] if urls else ""
    found = Found(data={})
    # Braces or `$` left (a server variable without a default) would break `${...:-...}`.
    if _absolute(first) and not re.search(r"[{}$\s]", first):
        default = first.rstrip("/")
    else:
        relative = first.startswith("/") and not re.search(r"[{}$\s]", first)
        default = "http://localhost" + (first.rstrip("/") if relative else "")
        found.notes.append(
            f"the document gives no absolute server URL: set {prefix}_URL to the API's address"
        )
        found.env.append(f"{prefix}_URL")
    found.data["base_url"] = f"${{{prefix}_URL:-{default}}}"
    if len(urls) > 1:
        found.notes.append("other servers: " + ", ".join(urls[1:4]))
    schemes = _schemes(doc)
    # The document-wide requirement first (its order is the API's preference), then any scheme.
    wanted = [
        str(name)
        for requirement in listed(doc.get("security"))
        if isinstance(requirement, Mapping)
        for name in requirement
    ]
    order = list(dict.fromkeys([*wanted, *schemes]))
    refused = []
    for name in order:
        try:
            scheme = refs.deref(schemes.get(name))
        except RefError as exc:
            refused.append(f"{name}: {exc}")
            continue
        if not isinstance(scheme, Mapping):
            continue
        auth, env, reason = _auth(scheme, prefix, default)
        if auth is None:
            refused.append(f"{name}: {reason} is not supported")
            continue
        found.data["auth"] = auth
        found.env += env
        _together(doc, refs, schemes, name, prefix, found)
        if len(order) > 1:
            others = ", ".join(n for n in order if n != name)
            found.notes.append(f"auth from security scheme {name!r}; the API also offers {others}")
        found.notes += [f"not usable: {reason}" for reason in refused]
        break
    else:
        if refused:
            found.notes.append("no usable auth: " + "; ".join(refused))
    return found

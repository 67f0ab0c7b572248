"""How an integration authenticates to its API: one spec per scheme."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from patchbay.spec._base import Frozen, SecretRef


class ApiKeyAuth(Frozen):
    type: Literal["api_key"]
    secret: SecretRef
    header: str | None = "X-API-Key"
    query: str | None = None  # send as this query parameter instead of a header


class BearerAuth(Frozen):
    type: Literal["bearer"]
    secret: SecretRef


class BasicAuth(Frozen):
    type: Literal["basic"]
    username: str
    secret: SecretRef


class OAuth2Auth(Frozen):
    type: Literal["oauth2"]
    token_url: str
    client_id: str
    secret: SecretRef  # the client secret reference
    scope: str | None = None
    audience: str | None = None
    refresh_before_s: float = Field(default=30.0, ge=0)


class JwtAuth(Frozen):
    type: Literal["jwt"]
    algorithm: Literal["HS256", "RS256", "ES256"] = "HS256"
    secret: SecretRef  # HMAC secret or PEM private key reference
    claims: dict[str, Any] = Field(default_factory=dict)
    ttl_s: float = Field(default=60.0, gt=0)
    key_id: str | None = None
    header: str = "Authorization"


class MtlsAuth(Frozen):
    type: Literal["mtls"]
    cert: SecretRef  # reference to a PEM client certificate
    key: SecretRef  # reference to its PEM private key
    ca: SecretRef | None = None  # reference to a PEM CA bundle to verify the server


AuthSpec = Annotated[
    ApiKeyAuth | BearerAuth | BasicAuth | OAuth2Auth | JwtAuth | MtlsAuth,
    Field(discriminator="type"),
]

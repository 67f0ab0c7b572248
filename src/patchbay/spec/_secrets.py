"""`secrets`: the secret managers references may name (`vault:`, `aws-sm:`, plugins) and TTLs.

```yaml
secrets:
  ttl_s: 300                        # default for every reference (none: read once)
  vault: {url: "http://127.0.0.1:8200", token: env:VAULT_TOKEN, mount: secret}
  aws: {region: eu-west-1}
  providers: {doppler: {project: billing}}   # settings handed to a plugin provider
```
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from patchbay._errors import ConfigError
from patchbay.spec._base import Frozen, SecretRef
from patchbay.spec._refs import secret_references

__all__ = ["AppRoleSpec", "AwsSecretsSpec", "SecretsSpec", "VaultSpec", "check_secret_refs"]

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,31}")
# Seconds: a TTL below one would hammer the secret manager; above a day is "read once".
_TTL = Field(default=None, ge=1, le=86400)


class AppRoleSpec(Frozen):
    """Vault AppRole login: the token comes from `auth/<mount>/login` and is renewed by login."""

    role_id: SecretRef
    secret_id: SecretRef
    mount: str = "approle"


class VaultSpec(Frozen):
    """HashiCorp Vault or OpenBao, KV version 2: `vault:PATH#KEY` reads KEY of secret PATH."""

    url: str
    token: SecretRef | None = None
    approle: AppRoleSpec | None = None
    mount: str = "secret"  # where the KV v2 engine is mounted
    namespace: str | None = None  # Vault Enterprise / OpenBao namespaces
    ttl_s: float | None = _TTL
    timeout_s: float = Field(default=5.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not re.match(r"https?://[^/\s]+", url):
            raise ValueError("must be an http:// or https:// URL of the Vault server")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _one_login(self) -> VaultSpec:
        if (self.token is None) == (self.approle is None):
            raise ValueError(
                "set exactly one of token (a reference) or approle {role_id, secret_id}"
            )
        return self


class AwsSecretsSpec(Frozen):
    """AWS Secrets Manager: `aws-sm:NAME#KEY` (KEY of a JSON secret) or `aws-sm:NAME`.

    Without keys, boto3's own credential chain is used (instance role, AWS_* variables...).
    """

    region: str | None = None
    endpoint_url: str | None = None  # a compatible server (LocalStack, moto) instead of AWS
    access_key_id: SecretRef | None = None
    secret_access_key: SecretRef | None = None
    ttl_s: float | None = _TTL
    timeout_s: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _pair(self) -> AwsSecretsSpec:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both access_key_id and secret_access_key, or neither")
        return self


class SecretsSpec(Frozen):
    """`secrets`: secret managers, plugin providers' settings and the default refresh TTL."""

    ttl_s: float | None = _TTL  # re-read every reference after this long (rotation)
    vault: VaultSpec | None = None
    aws: AwsSecretsSpec | None = None
    # scheme -> settings for a provider registered in Python or by an entry point;
    # `ttl_s` in them sets that scheme's TTL
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("providers")
    @classmethod
    def _schemes(cls, providers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for scheme, settings in providers.items():
            if not _SCHEME.fullmatch(scheme):
                raise ValueError(f"{scheme!r} is not a scheme name (lowercase, like 'doppler')")
            if scheme in ("env", "file", "vault", "aws-sm"):
                raise ValueError(f"{scheme!r} is built in; configure vault and aws directly")
            ttl = settings.get("ttl_s")
            if ttl is not None and (not isinstance(ttl, int | float) or not 1 <= ttl <= 86400):
                raise ValueError(f"{scheme}.ttl_s must be a number of seconds from 1 to 86400")
        return providers

    def ttl_for(self, scheme: str) -> float | None:
        """The refresh TTL of references with `scheme` (None: read once)."""
        own: Any = None
        if scheme == "vault" and self.vault is not None:
            own = self.vault.ttl_s
        elif scheme == "aws-sm" and self.aws is not None:
            own = self.aws.ttl_s
        elif scheme in self.providers:
            own = self.providers[scheme].get("ttl_s")
        return float(own) if own is not None else self.ttl_s


def check_secret_refs(config: Any) -> list[ConfigError]:
    """Errors for malformed `vault:` / `aws-sm:` references when their secrets block is set.

    Without the block the scheme is not built in (a provider registered in Python may serve
    it); `patchbay validate` then reports a scheme nobody serves.
    """
    spec: SecretsSpec = config.secrets
    errors = []
    for where, ref in secret_references(config):
        scheme, _, name = ref.partition(":")
        if scheme == "vault" and spec.vault is not None:
            path, sep, key = name.partition("#")
            if not sep or not path.strip("/") or not key:
                errors.append(ConfigError(f"{ref!r}: a vault reference is vault:PATH#KEY", where))
        elif scheme == "aws-sm" and spec.aws is not None:
            secret_id, sep, key = name.partition("#")
            if not secret_id or (sep and not key):
                errors.append(
                    ConfigError(f"{ref!r}: an AWS reference is aws-sm:NAME or NAME#KEY", where)
                )
    return errors

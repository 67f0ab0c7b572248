"""`aws-sm:NAME#KEY` / `aws-sm:NAME`: AWS Secrets Manager (a JSON secret's key, or its text).

boto3 is synchronous and slow to import (about 0.3 s): it is imported on the first lookup, and
each request runs in a thread (boto3 clients are thread-safe).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from patchbay._errors import SecretError
from patchbay.http._secrets import SecretResolver
from patchbay.spec._secrets import AwsSecretsSpec

# boto3 clients are built at run time from a service name; they carry no static type.
SecretsManagerClient = Any

__all__ = ["AwsSecretsManagerProvider"]


class AwsSecretsManagerProvider:
    """Reads secrets from AWS Secrets Manager (or a compatible `endpoint_url`)."""

    def __init__(self, spec: AwsSecretsSpec, resolver: SecretResolver) -> None:
        self._spec = spec
        self._resolver = resolver
        self._client: SecretsManagerClient | None = None
        self._lock = asyncio.Lock()

    async def resolve(self, name: str) -> str:
        """The secret's text, or KEY of its JSON object (`name` is `NAME` or `NAME#KEY`)."""
        secret_id, sep, key = name.partition("#")
        if not secret_id or (sep and not key):
            raise SecretError(f"secret aws-sm:{name} must be aws-sm:NAME or aws-sm:NAME#KEY")
        client = await self._get_client()
        # Imported on first use with boto3, see the module's docstring.
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        try:
            answer = await asyncio.to_thread(client.get_secret_value, SecretId=secret_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise SecretError(f"secret aws-sm:{name}: AWS answered {code}") from None
        text = answer.get("SecretString")
        if not isinstance(text, str):
            raise SecretError(f"secret aws-sm:{name} is binary; patchbay reads text secrets")
        if not sep:
            return text
        try:
            data = json.loads(text)
        except ValueError:
            raise SecretError(f"secret aws-sm:{name}: the secret is not a JSON object") from None
        if not isinstance(data, dict) or key not in data:
            raise SecretError(f"secret aws-sm:{name}: the secret has no key {key!r}")
        value = data[key]
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise SecretError(f"secret aws-sm:{name}: the key holds {type(value).__name__}")
        return str(value)

    async def _get_client(self) -> SecretsManagerClient:
        async with self._lock:
            if self._client is None:
                spec = self._spec
                keys: dict[str, str] = {}
                if spec.access_key_id is not None and spec.secret_access_key is not None:
                    keys["aws_access_key_id"] = (
                        await self._resolver.resolve(spec.access_key_id)
                    ).reveal()
                    keys["aws_secret_access_key"] = (
                        await self._resolver.resolve(spec.secret_access_key)
                    ).reveal()
                self._client = await asyncio.to_thread(self._make, keys)
            return self._client

    def _make(self, keys: dict[str, str]) -> SecretsManagerClient:
        # Imported here, on the first lookup, for start-up time (see the module's docstring).
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]

        spec = self._spec
        return boto3.client(
            "secretsmanager",
            region_name=spec.region,
            endpoint_url=spec.endpoint_url,
            config=BotoConfig(
                connect_timeout=spec.timeout_s,
                read_timeout=spec.timeout_s,
                retries={"max_attempts": 2},
            ),
            **keys,
        )

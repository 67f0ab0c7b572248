"""The resilience pipeline: small policies around one send, outermost first.

deadline, quota, idempotency, cache, retry, breaker, rate limit, auth, transport. Before
any of it, tools with a `guard` are counted by the runtime (`GuardPolicy`).
"""

from typing import TYPE_CHECKING

from patchbay._lazy import lazy_exports

if TYPE_CHECKING:
    from patchbay.policies._base import Exchange, Policy, Send, chain
    from patchbay.policies._breaker import BreakerPolicy
    from patchbay.policies._cache import CachePolicy
    from patchbay.policies._classify import (
        error_for_status,
        is_failure_status,
        is_retryable_status,
        may_resend,
        parse_retry_after,
    )
    from patchbay.policies._deadline import DeadlinePolicy
    from patchbay.policies._guard import GuardPolicy
    from patchbay.policies._idempotency import IdempotencyPolicy
    from patchbay.policies._quota import QuotaPolicy
    from patchbay.policies._ratelimit import RateLimitPolicy
    from patchbay.policies._retry import RetryPolicy
    from patchbay.policies._send import AuthPolicy, TransportStep

__all__ = [
    "AuthPolicy",
    "BreakerPolicy",
    "CachePolicy",
    "DeadlinePolicy",
    "Exchange",
    "GuardPolicy",
    "IdempotencyPolicy",
    "Policy",
    "QuotaPolicy",
    "RateLimitPolicy",
    "RetryPolicy",
    "Send",
    "TransportStep",
    "chain",
    "error_for_status",
    "is_failure_status",
    "is_retryable_status",
    "may_resend",
    "parse_retry_after",
]

# Each name's module is imported on first use, for start-up time (see patchbay._lazy).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._base": (
            "Exchange",
            "Policy",
            "Send",
            "chain",
        ),
        "._breaker": ("BreakerPolicy",),
        "._cache": ("CachePolicy",),
        "._classify": (
            "error_for_status",
            "is_failure_status",
            "is_retryable_status",
            "may_resend",
            "parse_retry_after",
        ),
        "._deadline": ("DeadlinePolicy",),
        "._guard": ("GuardPolicy",),
        "._idempotency": ("IdempotencyPolicy",),
        "._quota": ("QuotaPolicy",),
        "._ratelimit": ("RateLimitPolicy",),
        "._retry": ("RetryPolicy",),
        "._send": (
            "AuthPolicy",
            "TransportStep",
        ),
    },
)

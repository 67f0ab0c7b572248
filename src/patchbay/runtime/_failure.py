"""The words of failures and of outcomes that arrive later: for the LLM and for the caller."""

from __future__ import annotations

from typing import Any

from patchbay._errors import ErrorCode
from patchbay.spec._model import Say, Tool

DEFAULT_WORDS = {
    ErrorCode.NOT_FOUND: "Nothing was found for that.",
    ErrorCode.UNAUTHORIZED: "The system refused our credentials.",
    ErrorCode.CONFLICT: "That conflicts with the current state.",
    ErrorCode.CLIENT_ERROR: "The system did not accept that request.",
    ErrorCode.RATE_LIMITED: "The system is busy; try again in a moment.",
    ErrorCode.UPSTREAM_UNAVAILABLE: "The system is not answering right now.",
    ErrorCode.TIMEOUT: "The system took too long to answer.",
}
CONFIRMING = (
    "The request was sent and its outcome is not known yet; it is being confirmed in the "
    "background, so do not send it again. Tell the caller it is in progress and will be "
    "confirmed."
)
UNCONFIRMED = (
    "The request was sent and its outcome is not known; do not send it again. Tell the "
    "caller it could not be confirmed yet and will be checked."
)
# Outcomes known to have changed nothing, with nobody at fault but the system: `say.failed`.
OUTAGES = frozenset(
    {
        ErrorCode.UPSTREAM_UNAVAILABLE,
        ErrorCode.CIRCUIT_OPEN,
        ErrorCode.RATE_LIMITED,
        ErrorCode.QUOTA_EXCEEDED,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.TIMEOUT,
        ErrorCode.INTERNAL,
    }
)

# The words of a background or reconciled write's outcome, spoken into the call.
DONE_WORDS = "The request that was still being completed has now gone through."
NOT_DONE_WORDS = "The request that was still being completed did not go through."
UNKNOWN_WORDS = (
    "The request that was still being completed could not be confirmed; it will be checked."
)


def error_say(say: Say, code: ErrorCode, wrote: bool) -> str | None:
    """What the agent may say for an error: `failed` only where nothing can have changed."""
    if code is ErrorCode.PENDING:
        return say.pending or say.timeout
    if code is ErrorCode.TIMEOUT:
        return say.timeout or say.failed
    if code is ErrorCode.NOT_FOUND:
        return say.not_found
    if code is ErrorCode.CONFLICT:
        return say.conflict
    if code is ErrorCode.CLIENT_ERROR:
        return say.client_error
    if code is ErrorCode.INTERNAL and wrote:
        return None  # a bug after a write was sent: nobody can say that nothing changed
    return say.failed if code in OUTAGES else None


def outcome_say(tool: Tool | None, record: dict[str, Any]) -> str:
    """Words for the caller when a write finished after its answer (`Outcomes.record`)."""
    outcome = record.get("outcome")
    if outcome == "ok":
        return DONE_WORDS
    if outcome in ("unresolved", "abandoned"):
        return UNKNOWN_WORDS
    try:
        code = ErrorCode(str(outcome))
    except ValueError:
        return NOT_DONE_WORDS
    specific = error_say(tool.say, code, wrote=True) if tool is not None else None
    return specific or NOT_DONE_WORDS

"""Exceptions logged with their traceback, scrubbed like events: no secrets, no caller PII."""

from __future__ import annotations

import logging
import traceback

from patchbay.observe._redact import Redactor

_redactor = Redactor()


def redacted(text: str) -> str:
    """`text` as events would carry it: secrets, auth tokens, phone numbers, emails replaced."""
    return _redactor.text(text)


def log_exception(logger: logging.Logger, exc: BaseException, message: str, *args: object) -> None:
    """Log `message` at error level with `exc`'s traceback, redacted.

    An exception's text may quote what it was given (a caller's phone or email, a secret
    value, an upstream body), so the traceback is formatted here and passed through the same
    redaction as events instead of being left to the logging handler (`log.exception`).
    """
    if not logger.isEnabledFor(logging.ERROR):
        return
    text = "".join(traceback.format_exception(exc))
    logger.error("%s\n%s", message % args if args else message, _redactor.text(text.rstrip()))

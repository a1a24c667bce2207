"""Remove secrets from text that leaves the bridge (error events, HTTP errors, log lines).

Providers echo credentials back in their messages: OpenAI's 401 says "Incorrect API key
provided: sk-pro***abcd", URLs carry ``?key=``. Anything shaped like a key or token is replaced
with ``[redacted]`` before a peer or a log sees it; so is every secret the bridge was given.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"

_PATTERNS = (
    # OpenAI keys (sk-…, sk-proj-…), also when partly masked with *, and ephemeral keys.
    re.compile(r"\bsk-[A-Za-z0-9_*.\-]{3,}"),
    re.compile(r"\bek_[A-Za-z0-9_\-]{6,}"),
    # Google API keys and Gemini ephemeral tokens.
    re.compile(r"\bAIza[0-9A-Za-z_\-]{6,}"),
    re.compile(r"\bauth_tokens/[A-Za-z0-9_\-.]+"),
    # JSON Web Tokens.
    re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"),
    # Authorization header values.
    re.compile(r"(?i)\b(?:bearer|token|basic)\s+[A-Za-z0-9._~+/=\-*]{8,}"),
)
# key=value pairs (query strings, logfmt): keep the name, drop the value.
_PAIRS = re.compile(
    r"(?i)\b((?:api[_-]?key|key|access[_-]?token|token|secret|password|auth)=)[^&\s\"',;]+"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and anything shaped like a key or token removed."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return _PAIRS.sub(lambda m: m.group(1) + REDACTED, text)


_SECRETS: set[str] = set()  # process-wide, like logging itself: every app's secrets
_installed = False


def install_log_redaction(secrets: Iterable[str] = ()) -> None:
    """Redact every log record of this process, whichever logger or handler it reaches
    (aiohttp's access log prints request paths with their ``?token=``; a provider's error may
    quote a key). Idempotent; ``secrets`` join the set redacted by value.

    Done in the record factory, not in a handler's filter: records reach handlers the bridge
    does not own (a test's capture, an embedding application's)."""
    global _installed
    _SECRETS.update(s for s in secrets if s and len(s) >= 4)
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed format: let logging report it as usual
            return record
        clean = redact(message, _SECRETS)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(redacted_record)

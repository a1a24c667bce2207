"""Remove secrets from text that leaves the bridge (error events, HTTP errors, log lines).

Providers echo credentials back in their messages: OpenAI's 401 says "Incorrect API key
provided: sk-pro***abcd", URLs carry ``?key=``. Anything shaped like a key or token is replaced
with ``[redacted]`` before a peer or a log sees it; so is every secret the bridge was given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

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

"""The bridge's small exception set.

Every error that can reach a client carries a stable machine-readable ``code`` and a human
``message``; HTTP handlers turn them into ``{"error": {"code", "message"}}`` bodies and sessions
turn them into ``error`` events.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base class: an error with a stable code and a message safe to show to a client."""

    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(BridgeError):
    """A setting is missing or invalid; raised at startup, never mid-call."""

    code = "invalid_config"


class BadRequest(BridgeError):
    """The client sent something we cannot use; maps to an HTTP 4xx."""

    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int = 400) -> None:
        super().__init__(message, code=code)
        self.status = status


class ProviderError(BridgeError):
    """The provider refused or failed; ``fatal`` errors end the session."""

    code = "provider_error"

    def __init__(self, message: str, *, code: str | None = None, fatal: bool = False) -> None:
        super().__init__(message, code=code)
        self.fatal = fatal

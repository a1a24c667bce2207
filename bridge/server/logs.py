"""Logging setup: plain text or JSON lines, and never a secret in either.

``--log-format text`` (the default) writes ``time LEVEL logger: message`` lines;
``--log-format json`` writes one JSON object a line::

    {"time": "2026-11-23T17:02:00.123+00:00", "level": "INFO", "logger": "bridge.core...",
     "message": "session 0-AbC... ending: deleted", "session": "0-AbC...",
     "exception": "Traceback ..."}

``session`` is there when the line is about one session: from ``extra={"session": id}``, from
:data:`current_session` (a context variable code may set around a session's work; asyncio
tasks inherit it), or from the bridge's own convention of logging ``"session %s ..."`` (and
``"gateway %s ..."``) with the id as the first argument. ``exception`` holds the traceback
when there is one.

Every line, whatever its format and origin (aiohttp's access log included, whose request
lines carry query strings), goes through :func:`bridge.core.redact.redact` plus the values of
the credentials the bridge was given (from the environment), and ``Authorization`` header
values of any length are cut.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from typing import IO, Any

from bridge.core.redact import REDACTED, redact
from bridge.server.config import Settings

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

current_session: ContextVar[str | None] = ContextVar("bridge_log_session", default=None)
"""The session the current code works for, shown as ``session`` in JSON lines."""

_ABOUT_A_SESSION = re.compile(r"(?:session|gateway) %s\b")
_NAMES_A_SESSION = re.compile(r"(?:session|gateway) ((?:[0-9]{1,3}-)?[A-Za-z0-9_-]{16})(?=[:\s]|$)")
# "Authorization: Bearer x", "authorization=Basic x", '"Authorization": "x"': the value goes
# whatever its length (redact() takes bearer tokens of 8 characters and more).
_AUTHORIZATION = re.compile(
    r"(?i)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(?:bearer|basic|token|digest)\s+)?[^\s\"',;]+"
)


def _env_secrets() -> tuple[str, ...]:
    """The credentials the bridge reads from the environment (keys, auth secrets)."""
    names = [f.metadata["secret"] for f in dataclasses.fields(Settings) if f.metadata.get("secret")]
    names.append("GOOGLE_API_KEY")
    return tuple(value for name in names if (value := os.environ.get(name, "")))


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without credentials: :func:`redact` and ``Authorization`` values."""
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    return redact(text, secrets)


def session_of(record: logging.LogRecord) -> str | None:
    """The session a record is about, if it says (see the module docstring)."""
    explicit = getattr(record, "session", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    bound = current_session.get()
    if bound:
        return bound
    msg, args = record.msg, record.args
    if not isinstance(msg, str):
        return None
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0] if _ABOUT_A_SESSION.match(msg) else None
    if not args:  # already formatted (e.g. by a redacting record factory)
        named = _NAMES_A_SESSION.match(msg)
        return named.group(1) if named else None
    return None


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # arguments that do not fit the format: still one JSON line
        return f"{record.msg!s} {record.args!r}"


class TextFormatter(logging.Formatter):
    """The classic ``time LEVEL logger: message`` line, redacted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(TEXT_FORMAT)
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record), self.secrets)


class JsonFormatter(logging.Formatter):
    """One JSON object a line (newlines in messages and tracebacks are escaped)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": self._scrub(_message(record)),
        }
        session = session_of(record)
        if session:
            line["session"] = self._scrub(session)
        if record.exc_info:
            line["exception"] = self._scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = self._scrub(record.exc_text)
        if record.stack_info:
            line["stack"] = self._scrub(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)

    def _scrub(self, text: str) -> str:
        return scrub(text, self.secrets)


def make_handler(
    fmt: str, stream: IO[str] | None = None, secrets: Iterable[str] | None = None
) -> logging.Handler:
    """A handler writing ``fmt`` lines to ``stream`` (stderr), redacting ``secrets`` (the
    environment's credentials unless given) and anything shaped like one."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    known = _env_secrets() if secrets is None else tuple(secrets)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(known) if fmt == "json" else TextFormatter(known))
    return handler


_OURS = "_bridge_handler"


def configure(level: str, fmt: str) -> None:
    """Configure the root logger once, at startup (again replaces what this set before)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
            handler.close()
    handler = make_handler(fmt)
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(level.upper())

"""A local OpenAI Realtime server (GA interface) for tests, demos and benchmarks.

It speaks the wire protocol of ``shared/protocols.md`` Part 1 over a real WebSocket:
``session.created`` / ``session.updated`` with the full session object, an energy VAD that
emits speech_started / speech_stopped / committed, replies (an echo of the user's audio, a
tone, or text) streamed as deltas in the documented order and ending with ``response.done``
and its usage, validation errors shaped like the real ones, truncate validation, and faults a
test can script: an invalid key, a 1011 close, ``session_expired``, a stall, and a barge-in.

Every connection is recorded (:class:`EmulatedSession`) so tests can assert on what the
bridge sent. This module is the server (auth, faults, connections); ``openai_connection``
handles client events, ``openai_reply`` streams responses, ``openai_session`` holds the data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from bridge.emulators.openai_connection import Connection
from bridge.emulators.openai_session import EmulatedSession, OpenAIEmulatorOptions
from bridge.emulators.server import EmulatorServer
from bridge.protocols.openai_server import default_session

__all__ = ["EmulatedSession", "OpenAIEmulator", "OpenAIEmulatorOptions"]


def _select_subprotocol(
    conn: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """Browsers authenticate with subprotocols; the server answers with ``realtime``."""
    return Subprotocol("realtime") if "realtime" in offered else None


def _masked(key: str) -> str:
    """How OpenAI quotes a wrong key back: its first and last characters."""
    return (key[:7] + "***" + key[-4:]) if len(key) > 12 else "***"


class OpenAIEmulator(EmulatorServer):
    """A WebSocket server on 127.0.0.1 speaking OpenAI Realtime GA; see the module docstring."""

    options: OpenAIEmulatorOptions

    def __init__(
        self, options: OpenAIEmulatorOptions | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(host, port)
        self.options = options or OpenAIEmulatorOptions()
        self.sessions: list[EmulatedSession] = []
        self.stalled: list[EmulatedSession] = []

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/v1/realtime"

    async def start(self, **serve_options: Any) -> None:
        await super().start(select_subprotocol=_select_subprotocol, **serve_options)

    def _api_key(self, request: Request) -> str:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer ") :].strip()
        for proto in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
            proto = proto.strip()
            if proto.startswith("openai-insecure-api-key."):
                return proto[len("openai-insecure-api-key.") :]
        return ""

    def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        key = self._api_key(request)
        bad = not key or (self.options.api_keys and key not in self.options.api_keys)
        if bad or (self.options.invalid_key and "invalid_key" not in self._fired):
            if self.options.invalid_key:
                self._fired.add("invalid_key")
            shown = _masked(key)
            body = json.dumps(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                        "message": f"Incorrect API key provided: {shown}.",
                        "param": None,
                    }
                }
            ).encode()
            headers = Headers({"Content-Type": "application/json"})
            return Response(HTTPStatus.UNAUTHORIZED, "Unauthorized", headers, body)
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        query = request.path.partition("?")[2]
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        model = params.get("model", "gpt-realtime")
        headers = {k: v for k, v in request.headers.raw_items() if k.lower() != "authorization"}
        rec = EmulatedSession(model=model, headers=headers, session=default_session(model))
        self.sessions.append(rec)
        conn = Connection(self.options, self.take_fault, self.stalled, ws, rec)
        beta = request.headers.get("OpenAI-Beta") == "realtime=v1" or "openai-beta.realtime-v1" in (
            request.headers.get("Sec-WebSocket-Protocol") or ""
        )
        if beta and not self.options.accept_beta:
            await conn.error(
                "beta_api_shape_disabled",
                "The beta Realtime API shape has been disabled.",
                None,
                None,
            )
            await ws.close(4000, "beta_api_shape_disabled")
            rec.close_code = 4000
            return
        if self.take_fault("invalid_key_in_band"):
            key = self._api_key(request)
            await conn.error(
                "invalid_api_key", f"Incorrect API key provided: {_masked(key)}.", None, None
            )
            await ws.close(1008, "invalid_api_key")
            rec.close_code = 1008
            return
        await conn.send("session.created", session=rec.session)
        conn.arm_faults()
        try:
            async for raw in ws:
                await conn.handle(raw)
        except Exception:
            pass
        finally:
            await conn.shutdown()
            rec.close_code = ws.close_code

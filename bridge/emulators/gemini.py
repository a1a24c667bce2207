"""A local Gemini Live (``BidiGenerateContent``, Developer API) server for tests, demos and
benchmarks.

It speaks ``shared/protocols.md`` Part 2 as updated by ``shared/protocols-2026.md`` Part C over
a real WebSocket (or TLS, for clients such as google-genai that insist on ``wss://``):
``setup`` first (snake_case or camelCase, every field checked at every depth, unknown ones
refused with 1007, unknown models with 1008, what a model generation refuses with 1007 —
:mod:`.gemini_rules`), ``setupComplete`` and every later message as JSON in **binary**
frames, an energy VAD on the 16 kHz uplink with ``voiceActivity`` start/end (3.x models),
replies as 24 kHz ``inlineData`` parts (optionally slower than real time) with
transcriptions, bundled with the end of the turn on 3.x models, ``generationComplete`` /
``turnComplete`` + ``usageMetadata`` (the whole context as the prompt, 25 tokens a second of
audio), ``interrupted`` on barge-in, ``interactionStatus`` on extended thinking, and session
resumption the Developer-API way: handles without ``lastConsumedClientMessageIndex``, and
``transparent`` refused. Scriptable faults: ``goAway``, a 1011 close, a quota close, a refused
resumption, a slow uplink (handles lack what is still on its way), a late handle after a turn.

Each connection is recorded (:class:`GeminiSessionRecord`); :meth:`GeminiSessionRecord.heard`
stitches the user audio a resumed session "remembers" so tests can check that none was lost
or repeated across a handover.
"""

from __future__ import annotations

import ssl
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from bridge.emulators.gemini_connection import GeminiConnection
from bridge.emulators.gemini_session import (
    LIVE_MODELS,
    GeminiEmulatorOptions,
    GeminiSessionRecord,
)
from bridge.emulators.server import EmulatorServer

__all__ = ["LIVE_MODELS", "GeminiEmulator", "GeminiEmulatorOptions", "GeminiSessionRecord"]


class GeminiEmulator(EmulatorServer):
    """A WebSocket server on 127.0.0.1 speaking Gemini Live; see the module docstring."""

    options: GeminiEmulatorOptions

    PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"

    def __init__(
        self,
        options: GeminiEmulatorOptions | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host, port)
        self.options = options or GeminiEmulatorOptions()
        self.tls = tls
        self.sessions: list[GeminiSessionRecord] = []
        # handle -> (session, index of the last message it includes, context tokens)
        self.handles: dict[str, tuple[GeminiSessionRecord, int, int]] = {}

    @property
    def url(self) -> str:
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://{self.host}:{self.port}{self.PATH}"

    async def start(self, **serve_options: Any) -> None:
        if self.tls is not None:
            serve_options.setdefault("ssl", self.tls)
        await super().start(**serve_options)

    def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if "BidiGenerateContent" not in urlsplit(request.path).path:
            return conn.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    def _key_ok(self, request: Request) -> bool:
        query = parse_qs(urlsplit(request.path).query)
        key = (query.get("key") or [""])[0] or request.headers.get("x-goog-api-key", "")
        return bool(key) and (not self.options.api_keys or key in self.options.api_keys)

    async def _handle(self, ws: ServerConnection) -> None:
        rec = GeminiSessionRecord()
        self.sessions.append(rec)
        assert ws.request is not None
        if not self._key_ok(ws.request):
            await ws.close(1007, "API key not valid. Please pass a valid API key.")
            rec.close_code = 1007
            return
        await GeminiConnection(self.options, self.take_fault, self.handles, ws, rec).run()

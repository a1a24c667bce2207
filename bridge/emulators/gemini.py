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
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from bridge.emulators.gemini_connection import GeminiConnection
from bridge.emulators.server import EmulatorServer

__all__ = ["GeminiEmulator", "GeminiEmulatorOptions", "GeminiSessionRecord"]

# The Live models of the Developer API (protocols-2026.md §C.1, protocols.md §2.8).
LIVE_MODELS = (
    "gemini-3.8-live",
    "gemini-3.8-live-extended-thinking",
    "gemini-3.1-flash-live-preview",
    "gemini-2.5-flash-native-audio-preview-12-2025",
    "gemini-2.5-flash-native-audio-preview-09-2025",
    "gemini-2.5-flash-native-audio-latest",
    "gemini-live-2.5-flash-preview",
    "gemini-2.0-flash-live-001",
)


@dataclass
class GeminiEmulatorOptions:
    """Replies and faults (each fault fires once)."""

    reply: str = "tone"  # tone | echo | text
    tone_hz: float = 660.0
    tone_seconds: float = 1.0
    reply_text: str = "Hello from the Gemini emulator."
    speed: float = 4.0  # reply audio per wall-clock second; 0.8 is slower than real time
    chunk_ms: int = 40
    api_keys: tuple[str, ...] = ()  # accepted keys; empty accepts any non-empty key
    models: tuple[str, ...] = LIVE_MODELS  # accepted (without "models/"); empty accepts any
    voice_activity: bool | None = None  # emit voiceActivity; None: as the model does
    resumption_interval_s: float = 0.25
    # Client messages are handled this long after they arrive, as if still on their way: a
    # handle then lacks what the client sent during that time (it must send it again).
    uplink_delay_s: float = 0.0
    handle_after_turn_s: float = 0.0  # the handle covering a finished turn comes this late
    go_away_after_s: float | None = None
    go_away_time_left_s: float = 1.0
    close_1011_after_s: float | None = None
    quota_close_after_s: float | None = None
    reject_resume: bool = False


@dataclass
class GeminiSessionRecord:
    """One connection as the emulator saw it."""

    setup: dict[str, Any] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)  # all but audio
    wire: list[tuple[str, Any]] = field(default_factory=list)  # ("in" | "out", message)
    audio: list[tuple[int, bytes, int]] = field(default_factory=list)  # (index, pcm, rate)
    resumed_from: tuple[GeminiSessionRecord, int] | None = None  # (parent, last index it had)
    replies: list[tuple[int, str]] = field(default_factory=list)  # (message index, answered)
    instructions: list[Any] = field(default_factory=list)  # from contextUpdate
    close_code: int | None = None
    close_reason: str = ""
    turns: int = 0

    def heard(self, upto: int | None = None) -> bytes:
        """The user audio this session's state includes, across resumptions, in order."""
        base = b""
        if self.resumed_from is not None:
            parent, consumed = self.resumed_from
            base = parent.heard(consumed)
        return base + b"".join(pcm for i, pcm, _ in self.audio if upto is None or i <= upto)


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
        await GeminiConnection(self, ws, rec).run()

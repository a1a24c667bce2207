"""A local OpenAI GPT-Live server (``/v1/live/sessions``, full duplex) for tests and demos.

It speaks ``shared/protocols-2026.md`` Part A over a real WebSocket, following the emulator
checklist of §A.12 and the ``openai`` SDK 3.54 types where the two differ:

* the upgrade on any path ending in ``/live/sessions`` needs ``Authorization: Bearer <key>``
  (HTTP 401 otherwise); a ``model`` query parameter is refused with HTTP 400 (optional);
* ``session.start`` first (anything else: ``error`` ``session_not_started``), validated
  strictly at every depth (``unknown_parameter`` with ``param: "session.<path>"``, models,
  formats, voices, initial items), answered by ``session.started`` with the resolved session;
* the appended input audio is the clock: an energy VAD finds utterances, which get input
  transcript fragments and a reply (a tone or an echo) as ``session.output_audio.delta``
  chunks (no ``event_id``) interleaved with output transcript fragments, paced at most
  ``speed`` times ahead of the input, and nothing at all while no input arrives;
* barge-in without any event (speech over a reply for ``backchannel_ms`` stops it after
  ``yield_ms``; shorter back-channels do not), optional inline trailing silence;
* ``*.append`` context with ``*.appended`` acks (a commentary makes it speak), optional
  client delegations, ``session.update`` (delegation settings and triggers only), mute acks,
  ``session.usage.updated`` every ``usage_interval_s``, ``session.close`` →
  ``session.closed`` + close 1000, expiry → ``session.closed{reason:"expired"}``;
* faults: an invalid key (401), a 1011 drop, a stall.

Each connection is recorded (:class:`GptLiveSessionRecord`). The protocol itself is the
sans-I/O :class:`~bridge.emulators.gpt_live_session.GptLiveSession`; this module is the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bridge.emulators.gpt_live_options import GptLiveEmulatorOptions, GptLiveSessionRecord
from bridge.emulators.gpt_live_rules import BUILT_IN_VOICES, MODELS
from bridge.emulators.gpt_live_session import Close, GptLiveSession
from bridge.emulators.server import EmulatorServer

__all__ = [
    "BUILT_IN_VOICES",
    "MODELS",
    "GptLiveEmulator",
    "GptLiveEmulatorOptions",
    "GptLiveSessionRecord",
]

PATH = "/v1/live/sessions"


def _json_response(status: HTTPStatus, error: dict[str, object]) -> Response:
    body = json.dumps({"error": error}).encode()
    headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(body))})
    return Response(status.value, status.phrase, headers, body)


def _masked(key: str) -> str:
    return (key[:7] + "***" + key[-4:]) if len(key) > 12 else "***"


class GptLiveEmulator(EmulatorServer):
    """A WebSocket server on 127.0.0.1 speaking GPT-Live; see the module docstring."""

    options: GptLiveEmulatorOptions

    def __init__(
        self, options: GptLiveEmulatorOptions | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(host, port)
        self.options = options or GptLiveEmulatorOptions()
        self.sessions: list[GptLiveSessionRecord] = []

    @property
    def url(self) -> str:
        """The primary WebSocket's URL."""
        return f"ws://{self.host}:{self.port}{PATH}"

    @property
    def base_url(self) -> str:
        """What the SDK takes as ``websocket_base_url`` (it appends ``/live/sessions``)."""
        return f"ws://{self.host}:{self.port}/v1"

    def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if not parts.path.rstrip("/").endswith("/live/sessions"):
            return conn.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        auth = request.headers.get("Authorization", "")
        key = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else ""
        refused = (self.options.api_keys and key not in self.options.api_keys) or (
            self.options.invalid_key and "invalid_key" not in self._fired
        )
        if not key:
            return _json_response(
                HTTPStatus.UNAUTHORIZED,
                {
                    "type": "invalid_request_error",
                    "code": None,
                    "message": "You didn't provide an API key. Send it as "
                    "'Authorization: Bearer YOUR_KEY'.",
                    "param": None,
                },
            )
        if refused:
            if self.options.invalid_key:
                self._fired.add("invalid_key")
            return _json_response(
                HTTPStatus.UNAUTHORIZED,
                {
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                    "message": f"Incorrect API key provided: {_masked(key)}.",
                    "param": None,
                },
            )
        if "model" in parse_qs(parts.query, keep_blank_values=True):
            if not self.options.allow_model_query:
                return _json_response(
                    HTTPStatus.BAD_REQUEST,
                    {
                        "type": "invalid_request_error",
                        "code": "unknown_parameter",
                        "message": "Unknown query parameter: 'model'. GPT-Live takes the model "
                        "in session.start.session.model.",
                        "param": "model",
                    },
                )
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        headers = {k: v for k, v in request.headers.raw_items() if k.lower() != "authorization"}
        rec = GptLiveSessionRecord(path=request.path, headers=headers)
        self.sessions.append(rec)
        session = GptLiveSession(self.options, rec)
        loop = asyncio.get_running_loop()
        opened = loop.time()
        drop = self.take_fault("drop_after_s")
        stall = self.take_fault("stall_after_s")
        drop_at = opened + drop if drop is not None else None
        stall_at = opened + stall if stall is not None else None
        try:
            while True:
                deadlines = [
                    t for t in (session.next_deadline(), drop_at, stall_at) if t is not None
                ]
                timeout = max(0.0, min(deadlines) - loop.time()) if deadlines else None
                raw: str | bytes | None
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout)
                except TimeoutError:
                    raw = None
                now = loop.time()
                if drop_at is not None and now >= drop_at:
                    rec.close_code = 1011
                    await ws.close(1011, "internal server error")
                    return
                if stall_at is not None and now >= stall_at:
                    rec.stalled = True
                    ws.transport.pause_reading()  # pings go unanswered, nothing is sent
                    await ws.wait_closed()
                    return
                outputs = session.receive(raw, now) if raw is not None else []
                outputs += session.tick(now)
                for out in outputs:
                    if isinstance(out, Close):
                        rec.close_code = out.code
                        await ws.close(out.code, out.reason)
                        return
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(json.dumps(out))
        except ConnectionClosed:
            pass
        finally:
            if rec.close_code is None:
                rec.close_code = ws.close_code

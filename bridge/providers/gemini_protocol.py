"""Gemini Live (``BidiGenerateContent``), sans I/O: server JSON in -> neutral events; commands
-> client JSON out. Tested with literal JSON in ``tests/test_gemini_protocol.py``.

Besides translation it keeps what a seamless handover needs: the latest resumption handle,
and every client message the server has not yet confirmed consuming. Setup is the first
message of a connection (index 0); each later message gets the next index, and
``lastConsumedClientMessageIndex`` in a ``sessionResumptionUpdate`` says up to which index the
handle's state includes (``transparent`` resumption). On a new connection the unconfirmed
messages are replayed, so no user audio is lost and none is sent twice.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from .. import events as ev
from ..pricing import gemini_cost
from ..session_config import SessionConfig

INPUT_MIME = "audio/pcm;rate=16000"
_RATE = re.compile(r"rate=(\d+)")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")
MAX_REPLAY = 1000  # messages kept for replay (~20 s of 20 ms audio)
IGNORED = {"toolCall", "toolCallCancellation", "voiceActivityDetectionSignal"}


@dataclass
class GeminiConnection:
    """What is true of the current socket only."""

    ready: bool = False  # setupComplete received
    generating: bool = False
    go_away_in: float | None = None  # seconds left, from goAway
    next_index: int = 1  # setup is message 0


class GeminiLiveProtocol:
    """The translator; see the module docstring."""

    def __init__(self, model: str, config: SessionConfig) -> None:
        self.model = model if model.startswith("models/") else f"models/{model}"
        self.config = config
        self.conn = GeminiConnection()
        self.handle: str | None = None
        self.unknown_events: Counter[str] = Counter()
        self._opened = False
        self._turns = itertools.count(1)
        self._turn = f"turn_{next(self._turns)}"
        self._replay: deque[tuple[int, dict[str, Any]]] = deque(maxlen=MAX_REPLAY)
        self._assistant_text = ""
        self._user_text = ""

    # -- commands ------------------------------------------------------------------------------

    def setup(self, config: SessionConfig | None = None) -> dict[str, Any]:
        """The ``setup`` message; resumes the session when a handle is known."""
        if config is not None:
            self.config = config
        c = self.config
        audio_out = "audio" in c.output_modalities
        generation: dict[str, Any] = {"responseModalities": ["AUDIO" if audio_out else "TEXT"]}
        if c.voice:
            generation["speechConfig"] = {
                "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": c.voice}}
            }
        detection: dict[str, Any] = {"disabled": c.turn_detection.type == "none"}
        params = c.turn_detection.params
        for ours, theirs in (
            ("silence_duration_ms", "silenceDurationMs"),
            ("prefix_padding_ms", "prefixPaddingMs"),
        ):
            if isinstance(params.get(ours), (int, float)):
                detection[theirs] = int(params[ours])
        setup: dict[str, Any] = {
            "model": self.model,
            "generationConfig": generation,
            "realtimeInputConfig": {"automaticActivityDetection": detection},
            "outputAudioTranscription": {},
            "sessionResumption": {"transparent": True},
            "contextWindowCompression": {"slidingWindow": {}},
        }
        if c.input_transcription:
            setup["inputAudioTranscription"] = {}
        if c.instructions:
            setup["systemInstruction"] = {"parts": [{"text": c.instructions}]}
        if self.handle:
            setup["sessionResumption"]["handle"] = self.handle
        return {"setup": setup}

    def audio(self, pcm: bytes) -> dict[str, Any]:
        data = base64.b64encode(pcm).decode("ascii")
        return {"realtimeInput": {"audio": {"data": data, "mimeType": INPUT_MIME}}}

    def user_text(self, text: str) -> dict[str, Any]:
        turn = {"role": "user", "parts": [{"text": text}]}
        return {"clientContent": {"turns": [turn], "turnComplete": True}}

    def new_connection(self) -> list[dict[str, Any]]:
        """Start a connection; returns the messages to replay once it is set up."""
        self.conn = GeminiConnection()
        # Without a handle the new session starts fresh: old audio would be heard twice.
        replay = [message for _, message in self._replay] if self.handle else []
        self._replay.clear()
        return replay

    def sent(self, message: dict[str, Any]) -> None:
        """A message went out: remember it until the server confirms consuming it."""
        if "setup" in message:
            return
        self._replay.append((self.conn.next_index, message))
        self.conn.next_index += 1

    @property
    def at_turn_boundary(self) -> bool:
        return not self.conn.generating

    @property
    def unconfirmed(self) -> int:
        return len(self._replay)

    # -- server messages -----------------------------------------------------------------------

    def receive(self, raw: str | bytes) -> list[ev.Event]:
        """Translate one message (JSON, usually in a binary frame); every field present."""
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self.unknown_events["<invalid json>"] += 1
            return []
        if not isinstance(message, dict):
            self.unknown_events["<not an object>"] += 1
            return []
        out: list[ev.Event] = []
        for key, value in message.items():
            handler = _HANDLERS.get(key)
            if handler is not None and isinstance(value, dict):
                out.extend(handler(self, value))
            elif key not in IGNORED:
                self.unknown_events[key] += 1
        return out

    def _setup_complete(self, m: dict[str, Any]) -> list[ev.Event]:
        self.conn.ready = True
        if self._opened:
            return []
        self._opened = True
        return [ev.Open()]

    def _server_content(self, m: dict[str, Any]) -> list[ev.Event]:
        out: list[ev.Event] = []
        if m.get("interrupted"):
            out.append(ev.Interrupted())
            self._end_turn(out)
        user = m.get("inputTranscription")
        if isinstance(user, dict) and user.get("text"):
            self._user_text += str(user["text"])
            out.append(ev.Transcript("user", str(user["text"]), final=False))
        turn = m.get("modelTurn")
        if isinstance(turn, dict):
            for part in turn.get("parts") or []:
                out.extend(self._part(part))
        said = m.get("outputTranscription")
        if isinstance(said, dict) and said.get("text"):
            self._assistant_text += str(said["text"])
            out.append(ev.Transcript("assistant", str(said["text"]), final=False))
        if m.get("generationComplete"):
            out.append(ev.AudioDone(self._turn))
        if m.get("turnComplete"):
            self._end_turn(out)
            out.append(ev.TurnComplete())
        return out

    def _part(self, part: Any) -> list[ev.Event]:
        if not isinstance(part, dict) or part.get("thought"):
            return []
        inline = part.get("inlineData") or part.get("inline_data")
        if isinstance(inline, dict):
            mime = str(inline.get("mimeType") or inline.get("mime_type") or "")
            if not mime.startswith("audio/pcm"):
                self.unknown_events[f"<part {mime}>"] += 1
                return []
            try:
                data = base64.b64decode(str(inline.get("data") or ""), validate=True)
            except (binascii.Error, ValueError):
                self.unknown_events["<bad audio part>"] += 1
                return []
            rate = _RATE.search(mime)
            self.conn.generating = True
            return [ev.AudioOut(data, int(rate.group(1)) if rate else 24000, self._turn)]
        if isinstance(part.get("text"), str) and part["text"]:
            self.conn.generating = True
            self._assistant_text += part["text"]
            return [ev.TextDelta(part["text"])]
        return []

    def _end_turn(self, out: list[ev.Event]) -> None:
        if self._user_text:
            out.append(ev.Transcript("user", self._user_text.strip(), final=True))
        if self._assistant_text:
            out.append(ev.Transcript("assistant", self._assistant_text.strip(), final=True))
        self._user_text = self._assistant_text = ""
        self.conn.generating = False
        self._turn = f"turn_{next(self._turns)}"

    def _usage(self, m: dict[str, Any]) -> list[ev.Event]:
        return [ev.Usage(m, gemini_cost(self.model, m))]

    def _go_away(self, m: dict[str, Any]) -> list[ev.Event]:
        match = _DURATION.match(str(m.get("timeLeft") or ""))
        self.conn.go_away_in = float(match.group(1)) if match else 0.0
        return []

    def _resumption(self, m: dict[str, Any]) -> list[ev.Event]:
        if m.get("resumable") and m.get("newHandle"):
            self.handle = str(m["newHandle"])
            index = m.get("lastConsumedClientMessageIndex")
            if index is not None:
                consumed = int(index)
                while self._replay and self._replay[0][0] <= consumed:
                    self._replay.popleft()
        return []

    def _voice_activity(self, m: dict[str, Any]) -> list[ev.Event]:
        kind = m.get("voiceActivityType")
        if kind == "ACTIVITY_START":
            return [ev.SpeechStarted()]
        if kind == "ACTIVITY_END":
            return [ev.SpeechStopped()]
        return []


_HANDLERS = {
    "setupComplete": GeminiLiveProtocol._setup_complete,
    "serverContent": GeminiLiveProtocol._server_content,
    "usageMetadata": GeminiLiveProtocol._usage,
    "goAway": GeminiLiveProtocol._go_away,
    "sessionResumptionUpdate": GeminiLiveProtocol._resumption,
    "voiceActivity": GeminiLiveProtocol._voice_activity,
}

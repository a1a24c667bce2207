"""Gemini Live (``BidiGenerateContent``, Developer API), sans I/O: server JSON in -> neutral
events; commands -> client JSON out. Tested with literal JSON in
``tests/test_gemini_protocol.py``; every message it writes is checked against google-genai.

**Resumption without the server's index.** The Developer API never says how much of our input
a resumption handle includes (``lastConsumedClientMessageIndex`` comes only with Vertex's
``transparent`` mode, which the Developer API refuses). So the translator keeps its own log of
what it sent since the newest resumable handle arrived, and on a new connection replays exactly
that:

* when a handle arrives, everything up to the last finished turn is dropped (a resumable handle
  is only issued while nothing is being generated, so it covers every finished turn), and so is
  user audio older than ``overlap_ms``: audio still in flight while the server made the handle
  would otherwise be lost, so that much is sent again (the documented overlap; repeated audio
  just before a handle is almost always the silence after a turn);
* typed text sent since the last finished turn is kept: a handle issued while nothing was
  being generated cannot contain a message that starts a reply;
* after a turn finishes, a newer handle is *due*. The provider waits for it (bounded) before it
  resumes on purpose, so the finished turn is never replayed and answered twice. If it must
  resume before the handle came (a drop), the finished turns' messages are not replayed and are
  counted in :attr:`GeminiLiveProtocol.dropped_turns`.

Model differences (AUDIO-only responses, ``contextUpdate``, ``voiceActivity``,
``interactionStatus``) come from :data:`bridge.providers.models.GEMINI_LIVE_MODELS`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Literal

from bridge.core import events as ev
from bridge.core.session_config import SessionConfig
from bridge.providers.models import gemini_model

INPUT_MIME = "audio/pcm;rate=16000"
INPUT_BYTES_PER_MS = 32  # PCM16 mono at 16 kHz
_RATE = re.compile(r"rate=(\d+)")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")
MAX_LOG = 2000  # messages kept for replay (~40 s of 20 ms audio, more when merged)
IGNORED = {"toolCallCancellation", "voiceActivityDetectionSignal"}
# Top-level fields in the order they are handled when one message carries several.
ORDER = (
    "setupComplete",
    "voiceActivity",
    "serverContent",
    "toolCall",
    "usageMetadata",
    "sessionResumptionUpdate",
    "goAway",
)
EAGERNESS = {"high": "END_SENSITIVITY_HIGH", "low": "END_SENSITIVITY_LOW"}
NO_TOOLS = "tools are not available in this session"

Kind = Literal["audio", "input", "config", "turn"]


@dataclass(frozen=True, slots=True)
class _Sent:
    kind: Kind  # audio; other input (text, tool responses); config (not replayed); turn end
    message: dict[str, Any] | None = None
    ms: int = 0


@dataclass
class GeminiConnection:
    """What is true of the current socket only."""

    ready: bool = False  # setupComplete received
    generating: bool = False
    user_speaking: bool = False  # between voiceActivity start and end
    go_away_in: float | None = None  # seconds left, from goAway


class GeminiLiveProtocol:
    """The translator; see the module docstring."""

    def __init__(self, model: str, config: SessionConfig, *, overlap_ms: int = 500) -> None:
        self.model = model if model.startswith("models/") else f"models/{model}"
        self.rules = gemini_model(self.model)
        self.config = config
        self.overlap_ms = overlap_ms
        self.conn = GeminiConnection()
        self.handle: str | None = None
        self.handle_due = False  # a turn finished after the newest handle: a newer one is due
        self.unknown_events: Counter[str] = Counter()
        self.dropped_turns = 0
        self._unreplayed = 0  # finished turns the current attempt leaves out of its replay
        self.lost_messages = 0
        self._opened = False
        self._turns = itertools.count(1)
        self._turn = f"turn_{next(self._turns)}"
        self._log: deque[_Sent] = deque()
        self._assistant_text = ""
        self._user_text = ""
        self._outbox: list[dict[str, Any]] = []
        self._activity = False  # a manual activityStart is open

    # -- commands ------------------------------------------------------------------------------

    @property
    def text_only(self) -> bool:
        """The client wants text; AUDIO-only models then speak and we pass on the transcript."""
        return "audio" not in self.config.output_modalities

    def setup(self, config: SessionConfig | None = None) -> dict[str, Any]:
        """The ``setup`` message; resumes the session when a handle is known."""
        if config is not None:
            self.config = config
        setup = self._setup_body(self.config)
        setup["sessionResumption"] = {"handle": self.handle} if self.handle else {}
        return {"setup": setup}

    def _setup_body(self, c: SessionConfig) -> dict[str, Any]:
        modality = "TEXT" if self.text_only and not self.rules.audio_only else "AUDIO"
        generation: dict[str, Any] = {"responseModalities": [modality]}
        if c.voice and modality == "AUDIO":
            generation["speechConfig"] = {
                "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": c.voice}}
            }
        detection: dict[str, Any] = {"disabled": c.turn_detection.type == "none"}
        params = c.turn_detection.params
        for ours, theirs in (
            ("silence_duration_ms", "silenceDurationMs"),
            ("prefix_padding_ms", "prefixPaddingMs"),
        ):
            if isinstance(params.get(ours), int):
                detection[theirs] = params[ours]
        if params.get("eagerness") in EAGERNESS:
            detection["endOfSpeechSensitivity"] = EAGERNESS[params["eagerness"]]
        setup: dict[str, Any] = {
            "model": self.model,
            "generationConfig": generation,
            "realtimeInputConfig": {"automaticActivityDetection": detection},
            "outputAudioTranscription": {},
            "contextWindowCompression": {"slidingWindow": {}},
        }
        if c.input_transcription:
            setup["inputAudioTranscription"] = {}
        if c.instructions:
            setup["systemInstruction"] = {"parts": [{"text": c.instructions}]}
        return setup

    def update(self, config: SessionConfig) -> tuple[list[dict[str, Any]], bool]:
        """A client's new configuration: messages to send now, and whether the session must be
        resumed with a new ``setup`` (models without ``contextUpdate``, voice changes...)."""
        old, new = self._setup_body(self.config), self._setup_body(config)
        self.config = config
        if old == new:
            return [], False
        changed = {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
        if changed == {"systemInstruction"} and "systemInstruction" in new:
            if self.rules.context_update:
                return [{"contextUpdate": {"systemInstruction": new["systemInstruction"]}}], False
        return [], True

    def audio(self, pcm: bytes) -> dict[str, Any]:
        data = base64.b64encode(pcm).decode("ascii")
        return {"realtimeInput": {"audio": {"data": data, "mimeType": INPUT_MIME}}}

    def user_text(self, text: str, turn_complete: bool = True) -> dict[str, Any]:
        turn = {"role": "user", "parts": [{"text": text}]}
        return {"clientContent": {"turns": [turn], "turnComplete": turn_complete}}

    @property
    def manual(self) -> bool:
        """Turns are marked by the client (activityStart/End), not the server's VAD."""
        return self.config.turn_detection.type == "none"

    def activity_start(self) -> dict[str, Any] | None:
        """Before the first audio of a manual turn: ``activityStart`` (else None)."""
        if not self.manual or self._activity:
            return None
        self._activity = True
        return {"realtimeInput": {"activityStart": {}}}

    def commit(self) -> dict[str, Any]:
        """End the user's turn: ``activityEnd`` in manual mode, else ``audioStreamEnd`` (the
        microphone is off: the server's VAD ends the turn now)."""
        if self.manual:
            self._activity = False
            return {"realtimeInput": {"activityEnd": {}}}
        return {"realtimeInput": {"audioStreamEnd": True}}

    def take_outbox(self) -> list[dict[str, Any]]:
        """Messages that received events made necessary (an answer to a tool call)."""
        out, self._outbox = self._outbox, []
        return out

    def new_connection(self) -> list[dict[str, Any]]:
        """Start a connection; returns the messages to replay once it is set up. The log is
        kept until :meth:`set_up` (an attempt that fails must leave it for the next one)."""
        self.conn = GeminiConnection()
        self._outbox.clear()
        entries = list(self._log)
        if self.handle is None:
            return []  # a fresh session: old input would be heard out of context
        finished = [i for i, entry in enumerate(entries) if entry.kind == "turn"]
        if finished:
            # Resuming from a handle older than these turns: replaying their input would make
            # the model answer again, so they are left out (and counted, once).
            self._unreplayed = len(finished)
            entries = entries[finished[-1] + 1 :]
        return [e.message for e in entries if e.kind in ("audio", "input") and e.message]

    def set_up(self) -> None:
        """The new session is ready: what the log held is replayed now (and logged anew)."""
        self._log.clear()
        self.dropped_turns += self._unreplayed
        self._unreplayed = 0

    def sent(self, message: dict[str, Any]) -> None:
        """A message went out: log it until a handle covers it."""
        if "setup" in message:
            return
        realtime = message.get("realtimeInput")
        if isinstance(realtime, dict) and isinstance(realtime.get("audio"), dict):
            size = len(str(realtime["audio"].get("data", ""))) * 3 // 4
            self._append(_Sent("audio", message, size // INPUT_BYTES_PER_MS))
        elif "contextUpdate" in message:
            self._append(_Sent("config", message))
        else:
            self._append(_Sent("input", message))
            content = message.get("clientContent")
            realtime = message.get("realtimeInput")
            ends_turn = isinstance(realtime, dict) and "activityEnd" in realtime
            if (isinstance(content, dict) and content.get("turnComplete")) or ends_turn:
                self.conn.generating = True  # a reply is coming: not a moment to hand over

    def _append(self, entry: _Sent) -> None:
        if len(self._log) >= MAX_LOG:
            self._log.popleft()
            self.lost_messages += 1
        self._log.append(entry)

    @property
    def at_turn_boundary(self) -> bool:
        return not self.conn.generating and not self.conn.user_speaking

    @property
    def replay_size(self) -> int:
        """Messages a resumption would send again now."""
        return sum(1 for e in self._log if e.kind in ("audio", "input"))

    # -- server messages -----------------------------------------------------------------------

    def receive(self, raw: str | bytes) -> list[ev.Event]:
        """Translate one message (JSON, usually in a binary frame); every field present."""
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            self.unknown_events["<invalid json>"] += 1
            return []
        if not isinstance(message, dict):
            self.unknown_events["<not an object>"] += 1
            return []
        out: list[ev.Event] = []
        for key in ORDER:
            value = message.get(key)
            if isinstance(value, dict):
                try:
                    out.extend(_HANDLERS[key](self, value))
                except Exception:  # a field of an unexpected type: counted, never fatal
                    self.unknown_events[f"<malformed {key}>"] += 1
            elif value is not None:
                self.unknown_events[f"<malformed {key}>"] += 1
        for key in message.keys() - set(ORDER) - IGNORED:
            self.unknown_events[str(key)[:64]] += 1
        return out

    def _setup_complete(self, m: dict[str, Any]) -> list[ev.Event]:
        self.conn.ready = True
        if self._opened:
            return []
        self._opened = True
        return [ev.Open()]

    def _voice_activity(self, m: dict[str, Any]) -> list[ev.Event]:
        kind = m.get("type", m.get("voiceActivityType"))
        if kind == "ACTIVITY_START":
            self.conn.user_speaking = True
            return [ev.SpeechStarted()]
        if kind == "ACTIVITY_END":
            self.conn.user_speaking = False
            return [ev.SpeechStopped()]
        return []

    def _server_content(self, m: dict[str, Any]) -> list[ev.Event]:
        out: list[ev.Event] = []
        if m.get("interrupted"):
            out.append(ev.Interrupted())
            self._end_turn(out)
        user = m.get("inputTranscription")
        if isinstance(user, dict) and isinstance(user.get("text"), str) and user["text"]:
            self._user_text += user["text"]
            out.append(ev.Transcript("user", user["text"], final=False))
        turn = m.get("modelTurn")
        if isinstance(turn, dict) and isinstance(turn.get("parts"), list):
            for part in turn["parts"]:
                out.extend(self._part(part))
        said = m.get("outputTranscription")
        if isinstance(said, dict) and isinstance(said.get("text"), str) and said["text"]:
            self._assistant_text += said["text"]
            self.conn.generating = True
            if self.text_only:
                out.append(ev.TextDelta(said["text"]))
            else:
                out.append(ev.Transcript("assistant", said["text"], final=False))
        if m.get("generationComplete"):
            out.append(ev.AudioDone(self._turn))
        if m.get("turnComplete"):
            if m.get("interactionStatus") == "IN_PROGRESS":
                # Extended thinking: this utterance is over, the request is not.
                out.append(ev.AudioDone(self._turn))
                self._turn = f"turn_{next(self._turns)}"
            else:
                self._end_turn(out)
                out.append(ev.TurnComplete())
                self._append(_Sent("turn"))
                self.handle_due = True
        return out

    def _part(self, part: Any) -> list[ev.Event]:
        if not isinstance(part, dict) or part.get("thought"):
            return []
        inline = part.get("inlineData")
        if isinstance(inline, dict):
            mime = str(inline.get("mimeType") or "")
            if not mime.startswith("audio/pcm"):
                self.unknown_events[f"<part {mime[:40]}>"] += 1
                return []
            try:
                data = base64.b64decode(
                    str(inline.get("data") or "").replace("-", "+").replace("_", "/"),
                    validate=True,
                )
            except (binascii.Error, ValueError):
                self.unknown_events["<bad audio part>"] += 1
                return []
            rate = _RATE.search(mime)
            self.conn.generating = True
            if self.text_only:
                return []  # spoken by an AUDIO-only model; the client reads the transcript
            return [ev.AudioOut(data, int(rate.group(1)) if rate else 24000, self._turn)]
        if isinstance(part.get("text"), str) and part["text"]:
            self.conn.generating = True
            self._assistant_text += part["text"]
            return [ev.TextDelta(part["text"])]
        return []

    def _end_turn(self, out: list[ev.Event]) -> None:
        if self._user_text:
            out.append(ev.Transcript("user", self._user_text.strip(), final=True))
        if self._assistant_text and not self.text_only:
            out.append(ev.Transcript("assistant", self._assistant_text.strip(), final=True))
        self._user_text = self._assistant_text = ""
        self.conn.generating = False
        self._turn = f"turn_{next(self._turns)}"

    def _tool_call(self, m: dict[str, Any]) -> list[ev.Event]:
        """No tools are declared, so none should be called; answer any call at once so a
        blocking-tools model never waits for us."""
        calls = m.get("functionCalls")
        responses = []
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict) and isinstance(call.get("id"), str):
                name = call.get("name") if isinstance(call.get("name"), str) else ""
                responses.append({"id": call["id"], "name": name, "response": {"error": NO_TOOLS}})
        if responses:
            self._outbox.append({"toolResponse": {"functionResponses": responses}})
        return []

    def _usage(self, m: dict[str, Any]) -> list[ev.Event]:
        return [ev.Usage(m)]

    def _go_away(self, m: dict[str, Any]) -> list[ev.Event]:
        match = _DURATION.match(str(m.get("timeLeft") or ""))
        self.conn.go_away_in = float(match.group(1)) if match else 0.0
        return []

    def _resumption(self, m: dict[str, Any]) -> list[ev.Event]:
        handle = m.get("newHandle")
        if m.get("resumable") is not True or not isinstance(handle, str) or not handle:
            return []
        self.handle = handle
        self.handle_due = False
        entries = list(self._log)
        finished = [i for i, entry in enumerate(entries) if entry.kind == "turn"]
        if finished:
            entries = entries[finished[-1] + 1 :]
        kept: list[_Sent] = []
        budget = self.overlap_ms
        for entry in reversed(entries):
            if entry.kind == "audio":
                if budget <= 0:
                    continue
                budget -= entry.ms
            kept.append(entry)
        self._log = deque(reversed(kept))
        return []


_HANDLERS = {
    "setupComplete": GeminiLiveProtocol._setup_complete,
    "voiceActivity": GeminiLiveProtocol._voice_activity,
    "serverContent": GeminiLiveProtocol._server_content,
    "toolCall": GeminiLiveProtocol._tool_call,
    "usageMetadata": GeminiLiveProtocol._usage,
    "goAway": GeminiLiveProtocol._go_away,
    "sessionResumptionUpdate": GeminiLiveProtocol._resumption,
}

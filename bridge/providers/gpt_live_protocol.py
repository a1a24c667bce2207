"""OpenAI GPT-Live (``/v1/live/sessions``) as neutral events, sans I/O.

GPT-Live is full duplex: no turns, no responses, no VAD events, no cancel, no truncate. This
module turns its JSON into :mod:`bridge.core.events` and commands into its JSON; it never
awaits, opens sockets or reads clocks (times are passed in, in milliseconds). What differs
from the Realtime API, and what the bridge does about it:

* ``session.start`` goes first and nothing else until ``session.started``. The config is
  strict (the server refuses unknown fields), so only documented fields are ever sent; one
  audio format serves both directions.
* Transcripts are timed fragments with no "done": a speaker's transcript is closed (a final
  :class:`~bridge.core.events.Transcript`) when the other speaker's fragment arrives or the
  model's output goes quiet.
* Usage is cumulative seconds (``session.usage.updated`` / ``session.closed``): each
  :class:`~bridge.core.events.Usage` carries only the seconds not reported before
  (``billed_seconds``), so totals never count a second twice.
* Barge-in is local (:class:`BargeIn`): the user speaking over the model flushes playback only
  once the model's own output has gone quiet, never on a back-channel.
* Typed messages and instruction changes are appended as commentary and instructions (the
  only ways into a running session); voice and format cannot change mid-session.
* ``session.closed`` with ``expired`` renews the session, re-seeded with the conversation so
  far as ``input`` (GPT-Live cannot resume).
* A delegation (the model asks its backend for help) is answered at once, so the call never
  waits on tools the bridge does not bridge.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridge.audio import g711
from bridge.audio.format import PCM16_24K, AudioFormat
from bridge.audio.playout import Playback
from bridge.core import events as ev
from bridge.core.session_config import SessionConfig

MODELS = ("gpt-live-1", "gpt-live-1.1")
VOICES = (
    "alloy", "ash", "ballad", "beacon", "bossa", "cedar", "cinder", "coral", "delta", "echo",
    "gleam", "marin", "meridian", "quartz", "ripple", "sage", "shida", "shimmer", "stone",
    "tempo", "verse", "vesper", "willow",
)  # fmt: skip
MAX_INPUT_ITEMS = 128
MAX_INPUT_CHARS = 24_000  # ~8 192 rendered tokens
MAX_APPEND_CHARS = 1_800  # ~500 tokens, the limit of each *.append
DELEGATION_ANSWER = (
    "No backend is connected to this call: tell the user you cannot do that right now, and "
    "carry on the conversation."
)
FATAL_CODES = frozenset(
    {
        "invalid_api_key",
        "insufficient_quota",
        "account_deactivated",
        "billing_hard_limit_reached",
        "invalid_model",
        "model_not_found",
    }
)
CLOSE_REASONS = {  # session.closed reason -> what the call is told
    "content": ("provider_content_filter", "GPT-Live ended the session (content policy)"),
    "remote_hangup": ("provider_closed", "GPT-Live ended the session (remote hangup)"),
    "connection_lost": ("provider_closed", "GPT-Live lost the session's connection"),
    "close_requested": ("provider_closed", "GPT-Live closed the session"),
}


def audio_format(fmt: AudioFormat) -> dict[str, Any]:
    """The ``audio.format`` object of a session in ``fmt`` (G.711 carries its rate too)."""
    kind = {"pcm16": "audio/pcm", "pcmu": "audio/pcmu", "pcma": "audio/pcma"}[fmt.encoding]
    return {"type": kind, "rate": fmt.rate}


def level_dbfs(data: bytes, fmt: AudioFormat) -> float:
    """RMS level of a chunk in dBFS (-120 for digital silence)."""
    if fmt.is_g711:
        pcm = g711.decode(data, fmt.encoding)
    else:
        pcm = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
    if pcm.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    return 20 * math.log10(rms / 32768) if rms > 0 else -120.0


@dataclass
class BargeIn:
    """Local barge-in for a model that yields without telling (sans I/O; times in ms).

    The user's speech starts a watch; playback is flushed once the user has spoken for
    ``min_speech_ms`` (a shorter sound is a back-channel) *and* no audible model output has
    arrived for ``quiet_ms`` (the model yielded). Audio arriving is not the model speaking:
    output is gated on energy, since GPT-Live may send its silences inline.
    """

    min_speech_ms: float = 250.0
    quiet_ms: float = 150.0
    speech_dbfs: float = -45.0
    output_dbfs: float = -50.0
    user_pause_ms: float = 300.0  # this much quiet ends the user's speech
    speaking_since: float | None = None
    _user_quiet_since: float | None = None
    last_loud_output: float | None = None
    fired: bool = False  # this user utterance already flushed

    def user_audio(self, dbfs: float, now: float) -> bool:
        """Feed one chunk's level; True when an utterance (not a back-channel) just ended."""
        if dbfs >= self.speech_dbfs:
            if self.speaking_since is None:
                self.speaking_since = now
            self._user_quiet_since = None
        elif self.speaking_since is not None:
            if self._user_quiet_since is None:
                self._user_quiet_since = now
            elif now - self._user_quiet_since >= self.user_pause_ms:
                spoke = self._user_quiet_since - self.speaking_since
                self.speaking_since = self._user_quiet_since = None
                self.fired = False
                return spoke >= self.min_speech_ms
        return False

    def model_audio(self, dbfs: float, now: float) -> None:
        if dbfs >= self.output_dbfs:
            self.last_loud_output = now

    def due(self, now: float) -> bool:
        """Flush now: the user talks over a model that went quiet (once per utterance)."""
        if self.fired or self.speaking_since is None or self.last_loud_output is None:
            return False
        if now - self.speaking_since < self.min_speech_ms:
            return False
        if now - self.last_loud_output < self.quiet_ms:
            return False
        if self.last_loud_output < self.speaking_since - 5000:
            return False  # the model was not speaking when the user began: nothing to cut
        self.fired = True
        return True


@dataclass
class _Turn:
    role: str
    text: str


@dataclass
class LiveConnection:
    """What belongs to one socket."""

    started: bool = False
    fatal: ev.Error | None = None
    expired: bool = False
    closed_reason: str | None = None
    seconds_reported: float = 0.0
    session_id: str = ""


@dataclass
class GptLiveProtocol:
    """See the module docstring."""

    model: str
    config: SessionConfig
    fmt: AudioFormat = PCM16_24K
    tell_heard: bool = True
    conn: LiveConnection = field(default_factory=LiveConnection)
    history: list[_Turn] = field(default_factory=list)
    unknown_events: dict[str, int] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _opened: bool = False
    _reply: int = 1  # the number of the model's current stretch of speech (its item id)
    _reply_generated: int = 0  # bytes of it received
    _reply_text: str = ""
    _speaker: str | None = None  # whose transcript is open
    _open_text: str = ""
    _seconds_total: float = 0.0  # over every socket of this call
    delegations: int = 0
    closing: bool = False  # the bridge sent session.close: session.closed is the answer

    # -- commands ------------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": f"evt_bridge_{next(self._ids)}", **fields}

    def start(self) -> dict[str, Any]:
        """``session.start`` for a new socket, with the conversation so far as ``input``."""
        self.conn = LiveConnection()
        session: dict[str, Any] = {"model": self.model}
        if self.config.instructions:
            session["instructions"] = self.config.instructions
        items = self._input_items()
        if items:
            session["input"] = items
        audio: dict[str, Any] = {"format": audio_format(self.fmt)}
        if self.config.voice:
            audio["output"] = {"voice": self.config.voice}
        session["audio"] = audio
        return self._event("session.start", session=session)

    def _input_items(self) -> list[dict[str, Any]]:
        turns: list[_Turn] = []
        size = 0
        for turn in reversed(self.history):
            size += len(turn.text)
            if len(turns) >= MAX_INPUT_ITEMS or size > MAX_INPUT_CHARS:
                break
            turns.append(turn)
        items = []
        for turn in reversed(turns):
            part = "output_text" if turn.role == "assistant" else "input_text"
            items.append(
                {
                    "type": "message",
                    "role": turn.role,
                    "content": [{"type": part, "text": turn.text}],
                }
            )
        return items

    def append_audio(self, data: bytes) -> dict[str, Any]:
        return {"type": "session.input_audio.append", "audio": base64.b64encode(data).decode()}

    def user_text(self, text: str) -> dict[str, Any]:
        """A typed message: GPT-Live takes text only as appended context; commentary is the
        kind it speaks about."""
        self._remember("user", text)
        content = f"The user typed: {text[:MAX_APPEND_CHARS]}\nAnswer them now."
        return self._event("session.commentary.append", content=content, delegation_id=None)

    def update(self, config: SessionConfig) -> tuple[list[dict[str, Any]], list[ev.Error]]:
        """New instructions are appended as a standing rule; voice and formats are fixed for
        the session (an error event says so, the rest applies)."""
        messages: list[dict[str, Any]] = []
        notices: list[ev.Error] = []
        if config.voice != self.config.voice:
            notices.append(
                ev.Error("voice_locked", "GPT-Live cannot change the voice during a session")
            )
            config = SessionConfig(
                instructions=config.instructions,
                voice=self.config.voice,
                output_modalities=config.output_modalities,
                turn_detection=config.turn_detection,
                input_transcription=config.input_transcription,
            )
        if config.instructions and config.instructions != self.config.instructions:
            content = config.instructions[:MAX_APPEND_CHARS]
            messages.append(
                self._event("session.instructions.append", content=content, delegation_id=None)
            )
        self.config = config
        return messages, notices

    def heard(self, played: Playback | None) -> dict[str, Any] | None:
        """After a local flush: tell the model what the user really heard of its reply, as
        silent context (the model otherwise believes it said all of it)."""
        if not self.tell_heard or played is None or played.item_id != self._item_id():
            return None
        generated_ms = self.fmt.bytes_to_ms(self._reply_generated)
        if generated_ms <= 0 or not self._reply_text:
            return None
        share = min(max(played.played_ms / generated_ms, 0.0), 1.0)
        text = self._reply_text
        cut = int(len(text) * share)
        if cut < len(text) and not text[cut].isspace():
            cut = text.rfind(" ", 0, cut) + 1  # whole words only: err on less heard
        heard = text[:cut].strip()
        content = (
            f'The user interrupted you; they heard only: "{heard[: MAX_APPEND_CHARS - 100]}". '
            "Do not assume they heard the rest."
        )
        return self._event("session.thinking.append", content=content, delegation_id=None)

    def close(self) -> dict[str, Any]:
        return self._event("session.close")

    def cut(self) -> list[ev.Event]:
        """Playback was flushed: the model's next speech is a new reply."""
        events = self._close_transcript()
        self._reply += 1
        self._reply_generated, self._reply_text = 0, ""
        return events

    def quiet(self) -> list[ev.Event]:
        """The model's output went quiet: its reply is done (no server event says so)."""
        events: list[ev.Event] = []
        if self._reply_generated:
            events.append(ev.AudioDone(self._item_id()))
        if self._speaker == "assistant":  # the user's closes when the model answers
            events += self._close_transcript()
        if self._reply_generated:
            events.append(ev.TurnComplete())
            self._reply += 1
            self._reply_generated, self._reply_text = 0, ""
        return events

    # -- server events -------------------------------------------------------------------------

    def receive(self, raw: str | bytes) -> tuple[list[ev.Event], list[dict[str, Any]]]:
        """Events for the call, and messages to send back (an answer to a delegation)."""
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError):
            return [], []
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return [], []
        kind = message["type"]
        handler = _HANDLERS.get(kind)
        if handler is None:
            self.unknown_events[kind[:40]] = self.unknown_events.get(kind[:40], 0) + 1
            return [], []
        out: _Out = handler(self, message)
        return out

    def _started(self, m: dict[str, Any]) -> _Out:
        self.conn.started = True
        session = m.get("session")
        if isinstance(session, dict) and isinstance(session.get("id"), str):
            self.conn.session_id = session["id"][:64]
        if self._opened:
            return [], []
        self._opened = True
        return [ev.Open()], []

    def _audio(self, m: dict[str, Any]) -> _Out:
        try:
            data = base64.b64decode(str(m.get("delta") or ""), validate=True)
        except ValueError:
            return [], []
        if self.fmt.encoding == "pcm16" and len(data) % 2:
            data = data[:-1]
        if not data:
            return [], []
        self._reply_generated += len(data)
        return [ev.AudioOut(data, self.fmt.rate, self._item_id(), self.fmt.encoding)], []

    def _transcript(self, role: str, m: dict[str, Any]) -> _Out:
        delta = m.get("delta")
        if not isinstance(delta, str) or not delta:
            return [], []
        events = self._close_transcript() if self._speaker not in (None, role) else []
        self._speaker = role
        self._open_text += delta
        if role == "assistant":
            self._reply_text += delta
        events.append(ev.Transcript("assistant" if role == "assistant" else "user", delta, False))
        return events, []

    def _close_transcript(self) -> list[ev.Event]:
        speaker, text = self._speaker, self._open_text.strip()
        self._speaker, self._open_text = None, ""
        if speaker is None or not text:
            return []
        self._remember(speaker, text)
        return [ev.Transcript("assistant" if speaker == "assistant" else "user", text, True)]

    def _usage(self, m: dict[str, Any]) -> list[ev.Event]:
        usage = m.get("usage")
        seconds = usage.get("seconds") if isinstance(usage, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            return []
        if not math.isfinite(seconds) or seconds < 0:
            return []
        seconds = min(float(seconds), 7 * 24 * 3600.0)
        new = seconds - self.conn.seconds_reported
        if new <= 0:
            return []  # a snapshot we already counted (they are cumulative)
        self.conn.seconds_reported = seconds
        self._seconds_total += new
        report = {
            "seconds": round(self._seconds_total, 3),
            "billed_seconds": round(new, 3),
        }
        return [ev.Usage(report)]

    def _usage_updated(self, m: dict[str, Any]) -> _Out:
        return self._usage(m), []

    def _closed(self, m: dict[str, Any]) -> _Out:
        events = self._usage(m)
        reason = m.get("reason")
        reason = reason if isinstance(reason, str) else "connection_lost"
        self.conn.closed_reason = reason
        if reason == "expired":
            self.conn.expired = True
            return events, []
        if self.closing:
            return events, []
        code, message = CLOSE_REASONS.get(reason, ("provider_closed", "GPT-Live closed"))
        error = ev.Error(code, f"{message} ({reason[:40]})", fatal=True)
        self.conn.fatal = error
        return [*events, error], []

    def _error(self, m: dict[str, Any]) -> _Out:
        error = m.get("error") if isinstance(m.get("error"), dict) else {}
        assert isinstance(error, dict)
        code = str(error.get("code") or error.get("type") or "provider_error")[:64]
        message = str(error.get("message") or code)[:300]
        param = error.get("param") if isinstance(error.get("param"), str) else None
        fatal = code in FATAL_CODES or not self.conn.started
        event = ev.Error(code, f"GPT-Live: {message}", fatal=fatal, param=param)
        if fatal:
            self.conn.fatal = event
        return [event], []

    def _delegation(self, m: dict[str, Any]) -> _Out:
        delegation = m.get("delegation")
        ident = delegation.get("id") if isinstance(delegation, dict) else None
        if not isinstance(ident, str) or not ident:
            return [], []
        self.delegations += 1
        answer = self._event(
            "session.commentary.append", content=DELEGATION_ANSWER, delegation_id=ident[:128]
        )
        return [], [answer]

    def _ack(self, m: dict[str, Any]) -> _Out:
        return [], []

    # -- bookkeeping ---------------------------------------------------------------------------

    def _item_id(self) -> str:
        return f"live_reply_{self._reply}"

    def _remember(self, role: str, text: str) -> None:
        self.history.append(_Turn(role, text))
        del self.history[: -MAX_INPUT_ITEMS * 2]


_Out = tuple[list[ev.Event], list[dict[str, Any]]]
_HANDLERS: dict[str, Any] = {
    "session.started": GptLiveProtocol._started,
    "session.output_audio.delta": GptLiveProtocol._audio,
    "session.input_transcript.delta": lambda p, m: p._transcript("user", m),
    "session.output_transcript.delta": lambda p, m: p._transcript("assistant", m),
    "session.usage.updated": GptLiveProtocol._usage_updated,
    "session.closed": GptLiveProtocol._closed,
    "session.delegation.created": GptLiveProtocol._delegation,
    "error": GptLiveProtocol._error,
    "session.updated": GptLiveProtocol._ack,
    "session.instructions.appended": GptLiveProtocol._ack,
    "session.thinking.appended": GptLiveProtocol._ack,
    "session.commentary.appended": GptLiveProtocol._ack,
    "session.input_audio.muted": GptLiveProtocol._ack,
    "session.input_audio.unmuted": GptLiveProtocol._ack,
    "info": GptLiveProtocol._ack,
    "response.event": GptLiveProtocol._ack,
}

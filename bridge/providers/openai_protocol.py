"""OpenAI Realtime, sans I/O: server JSON in -> neutral events; commands -> client JSON out.

Nothing here awaits, opens sockets or reads clocks, so every translation is tested with literal
JSON (``tests/test_openai_protocol.py``). :class:`~bridge.providers.openai.OpenAIProvider`
owns the socket and asks this class what to send and what a received message means.

One instance lives for the whole call, across reconnections and session rollovers: it keeps
the conversation text so a fresh OpenAI session can be given the context of the old one.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import events as ev
from ..audio.format import PCM16_24K, AudioFormat
from ..audio.playout import Playback
from ..pricing import openai_cost
from ..session_config import SessionConfig

log = logging.getLogger(__name__)

BETA_MODEL = re.compile(r"^gpt-4o(-mini)?-realtime-preview")
GA_FORMATS = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "pcmu": {"type": "audio/pcmu"},
    "pcma": {"type": "audio/pcma"},
}
BETA_FORMATS = {"pcm16": "pcm16", "pcmu": "g711_ulaw", "pcma": "g711_alaw"}
TRANSCRIPTION_MODEL = {"ga": "gpt-4o-mini-transcribe", "beta": "whisper-1"}
# Errors after which the session cannot go on: the key, the account or the model is wrong.
FATAL_CODES = {
    "invalid_api_key",
    "insufficient_quota",
    "model_not_found",
    "beta_api_shape_disabled",
    "account_deactivated",
    "billing_hard_limit_reached",
}
BENIGN_CODES = {"response_cancel_not_active", "conversation_already_has_active_response"}
# Server events that need no translation; anything not here and not handled is "unknown".
IGNORED = {
    "session.created",
    "conversation.created",
    "input_audio_buffer.committed",
    "input_audio_buffer.cleared",
    "input_audio_buffer.timeout_triggered",
    "conversation.item.added",
    "conversation.item.done",
    "conversation.item.created",
    "conversation.item.retrieved",
    "conversation.item.truncated",
    "conversation.item.deleted",
    "conversation.item.input_audio_transcription.segment",
    "conversation.item.input_audio_transcription.failed",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "rate_limits.updated",
    "output_audio_buffer.started",
    "output_audio_buffer.stopped",
    "output_audio_buffer.cleared",
}
MAX_HISTORY_ITEMS = 40
MAX_HISTORY_CHARS = 16_000


def is_beta_model(model: str) -> bool:
    return bool(BETA_MODEL.match(model))


@dataclass
class _Turn:
    role: str
    text: str
    item_id: str | None = None
    truncated: bool = False


@dataclass
class ConnectionState:
    """What is true of the current socket only; reset on every new connection."""

    configured: bool = False
    response_active: bool = False
    user_speaking: bool = False
    expired: bool = False
    fatal: ev.Error | None = None
    generated: OrderedDict[str, int] = field(default_factory=OrderedDict)  # item -> bytes


class OpenAIRealtimeProtocol:
    """The translator; see the module docstring."""

    def __init__(
        self,
        model: str,
        config: SessionConfig,
        *,
        input_format: AudioFormat = PCM16_24K,
        output_format: AudioFormat = PCM16_24K,
    ) -> None:
        self.model = model
        self.beta = is_beta_model(model)
        self.config = config
        self.input_format = input_format
        self.output_format = output_format
        self.conn = ConnectionState()
        self.unknown_events: Counter[str] = Counter()
        self.truncate_rejections = 0
        self.truncates_sent = 0
        self._opened = False
        self._ids = itertools.count(1)
        self._truncate_ids: set[str] = set()
        self._history: list[_Turn] = []
        self._assistant_text: dict[str, str] = {}

    # -- commands ------------------------------------------------------------------------------

    def new_connection(self) -> None:
        """Forget what belonged to the previous socket (the conversation text stays)."""
        self.conn = ConnectionState()

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": f"evt_bridge_{next(self._ids)}", **fields}

    def session_update(self, config: SessionConfig | None = None) -> dict[str, Any]:
        """``session.update`` carrying the whole configuration (GA or beta shape)."""
        if config is not None:
            self.config = config
        c = self.config
        td: dict[str, Any] | None
        td = None if c.turn_detection.type == "none" else c.turn_detection.to_json()
        audio_out = "audio" in c.output_modalities
        if self.beta:
            session: dict[str, Any] = {
                "modalities": ["text", "audio"] if audio_out else ["text"],
                "input_audio_format": BETA_FORMATS[self.input_format.encoding],
                "output_audio_format": BETA_FORMATS[self.output_format.encoding],
                "turn_detection": td,
                "input_audio_transcription": (
                    {"model": TRANSCRIPTION_MODEL["beta"]} if c.input_transcription else None
                ),
            }
            if c.voice:
                session["voice"] = c.voice
        else:
            output: dict[str, Any] = {"format": GA_FORMATS[self.output_format.encoding]}
            if c.voice:
                output["voice"] = c.voice
            session = {
                "type": "realtime",
                "output_modalities": ["audio"] if audio_out else ["text"],
                "audio": {
                    "input": {
                        "format": GA_FORMATS[self.input_format.encoding],
                        "turn_detection": td,
                        "transcription": (
                            {"model": TRANSCRIPTION_MODEL["ga"]} if c.input_transcription else None
                        ),
                    },
                    "output": output,
                },
            }
        if c.instructions is not None:
            session["instructions"] = c.instructions
        return self._event("session.update", session=session)

    def append_audio(self, data: bytes) -> dict[str, Any]:
        return {
            "type": "input_audio_buffer.append",
            "audio": base64.b64encode(data).decode("ascii"),
        }

    def user_text(self, text: str) -> list[dict[str, Any]]:
        """A typed user message and the request for a reply."""
        self._remember(_Turn("user", text))
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
        return [self._event("conversation.item.create", item=item), self._event("response.create")]

    def truncate(self, played: Playback | None) -> dict[str, Any] | None:
        """``conversation.item.truncate`` for a reply cut after ``played``, or None to skip.

        ``audio_end_ms`` is what the outbound track really sent, clamped to what this socket
        generated for the item (an item from an older socket is unknown here: skip it).
        """
        if played is None or played.played_ms <= 0:
            return None
        generated = self.conn.generated.get(played.item_id)
        if generated is None:
            return None
        end_ms = min(played.played_ms, self.output_format.bytes_to_ms(generated))
        if end_ms <= 0:
            return None
        self._cut_history(
            played.item_id, end_ms / max(self.output_format.bytes_to_ms(generated), 1)
        )
        message = self._event(
            "conversation.item.truncate",
            item_id=played.item_id,
            content_index=0,
            audio_end_ms=end_ms,
        )
        self._truncate_ids.add(message["event_id"])
        self.truncates_sent += 1
        return message

    def context_messages(self) -> list[dict[str, Any]]:
        """The conversation so far as items for a fresh session (text only)."""
        messages = []
        for turn in self._history:
            if not turn.text.strip():
                continue
            if turn.role == "user":
                content = [{"type": "input_text", "text": turn.text}]
            else:
                kind = "text" if self.beta else "output_text"
                content = [{"type": kind, "text": turn.text}]
            item = {"type": "message", "role": turn.role, "content": content}
            messages.append(self._event("conversation.item.create", item=item))
        return messages

    @property
    def at_turn_boundary(self) -> bool:
        """Nobody is speaking or generating: a safe moment to switch sessions."""
        return not self.conn.response_active and not self.conn.user_speaking

    # -- server events -------------------------------------------------------------------------

    def receive(self, raw: str | bytes) -> list[ev.Event]:
        """Translate one server message; unknown or malformed ones are counted, never fatal."""
        try:
            message = json.loads(raw)
        except ValueError:
            self.unknown_events["<invalid json>"] += 1
            return []
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.unknown_events["<no type>"] += 1
            return []
        kind = message["type"]
        handler = _HANDLERS.get(kind)
        if handler is not None:
            return handler(self, message)
        if kind not in IGNORED:
            self.unknown_events[kind] += 1
        return []

    def _session_updated(self, m: dict[str, Any]) -> list[ev.Event]:
        self.conn.configured = True
        if self._opened:
            return []
        self._opened = True
        return [ev.Open()]

    def _speech_started(self, m: dict[str, Any]) -> list[ev.Event]:
        self.conn.user_speaking = True
        return [ev.SpeechStarted()]

    def _speech_stopped(self, m: dict[str, Any]) -> list[ev.Event]:
        self.conn.user_speaking = False
        return [ev.SpeechStopped()]

    def _response_created(self, m: dict[str, Any]) -> list[ev.Event]:
        self.conn.response_active = True
        return []

    def _audio_delta(self, m: dict[str, Any]) -> list[ev.Event]:
        item_id = str(m.get("item_id") or "")
        try:
            data = base64.b64decode(m.get("delta") or "", validate=True)
        except (binascii.Error, ValueError):
            self.unknown_events["<bad audio delta>"] += 1
            return []
        generated = self.conn.generated
        generated[item_id] = generated.get(item_id, 0) + len(data)
        while len(generated) > 64:
            generated.popitem(last=False)
        fmt = self.output_format
        return [ev.AudioOut(data, fmt.rate, item_id, fmt.encoding)]

    def _audio_done(self, m: dict[str, Any]) -> list[ev.Event]:
        return [ev.AudioDone(str(m.get("item_id") or ""))]

    def _assistant_delta(self, m: dict[str, Any]) -> list[ev.Event]:
        delta = str(m.get("delta") or "")
        item_id = str(m.get("item_id") or "")
        self._assistant_text[item_id] = self._assistant_text.get(item_id, "") + delta
        return [ev.Transcript("assistant", delta, final=False)] if delta else []

    def _assistant_done(self, m: dict[str, Any]) -> list[ev.Event]:
        item_id = str(m.get("item_id") or "")
        text = str(m.get("transcript") or self._assistant_text.pop(item_id, ""))
        self._assistant_text.pop(item_id, None)
        self._remember(_Turn("assistant", text, item_id))
        return [ev.Transcript("assistant", text, final=True)]

    def _text_delta(self, m: dict[str, Any]) -> list[ev.Event]:
        delta = str(m.get("delta") or "")
        item_id = str(m.get("item_id") or "")
        self._assistant_text[item_id] = self._assistant_text.get(item_id, "") + delta
        return [ev.TextDelta(delta)] if delta else []

    def _text_done(self, m: dict[str, Any]) -> list[ev.Event]:
        item_id = str(m.get("item_id") or "")
        self._assistant_text.pop(item_id, None)
        self._remember(_Turn("assistant", str(m.get("text") or ""), item_id))
        return []

    def _user_delta(self, m: dict[str, Any]) -> list[ev.Event]:
        delta = str(m.get("delta") or "")
        return [ev.Transcript("user", delta, final=False)] if delta else []

    def _user_done(self, m: dict[str, Any]) -> list[ev.Event]:
        text = str(m.get("transcript") or "")
        self._remember(_Turn("user", text))
        return [ev.Transcript("user", text, final=True)]

    def _response_done(self, m: dict[str, Any]) -> list[ev.Event]:
        self.conn.response_active = False
        response = m.get("response") if isinstance(m.get("response"), dict) else {}
        assert isinstance(response, dict)
        out: list[ev.Event] = [ev.TurnComplete()]
        usage = response.get("usage")
        if isinstance(usage, dict):
            out.append(ev.Usage(usage, openai_cost(self.model, usage)))
        return out

    def _error(self, m: dict[str, Any]) -> list[ev.Event]:
        error = m.get("error") if isinstance(m.get("error"), dict) else {}
        assert isinstance(error, dict)
        code = str(error.get("code") or error.get("type") or "provider_error")
        message = str(error.get("message") or "the provider reported an error")
        if code == "session_expired":
            self.conn.expired = True
            return []
        if code in BENIGN_CODES:
            log.info("openai: benign error %s: %s", code, message)
            return []
        if error.get("event_id") in self._truncate_ids or error.get("param") == "audio_end_ms":
            self.truncate_rejections += 1
            log.warning("openai rejected a truncate (%s): %s", code, message)
            return []
        if code == "beta_api_shape_disabled":
            message = (
                f"OpenAI no longer serves the beta Realtime interface that {self.model} needs; "
                "choose a GA model such as gpt-realtime"
            )
        fatal = code in FATAL_CODES
        event = ev.Error(code, message, fatal=fatal)
        if fatal:
            self.conn.fatal = event
        return [event]

    # -- conversation text ---------------------------------------------------------------------

    def _remember(self, turn: _Turn) -> None:
        if not turn.text.strip():
            return
        self._history.append(turn)
        while len(self._history) > MAX_HISTORY_ITEMS or (
            sum(len(t.text) for t in self._history) > MAX_HISTORY_CHARS and len(self._history) > 1
        ):
            self._history.pop(0)

    def _cut_history(self, item_id: str, heard: float) -> None:
        """Keep only the share of a cut reply's words that the user heard."""
        for turn in reversed(self._history):
            if turn.item_id == item_id and not turn.truncated:
                words = turn.text.split()
                keep = int(len(words) * min(max(heard, 0.0), 1.0))
                turn.text = " ".join(words[:keep]) + ("…" if keep < len(words) else "")
                turn.truncated = True
                return

    @property
    def history(self) -> list[tuple[str, str]]:
        return [(t.role, t.text) for t in self._history]


_Handler = Callable[[OpenAIRealtimeProtocol, dict[str, Any]], list[ev.Event]]
_HANDLERS: dict[str, _Handler] = {
    "session.updated": OpenAIRealtimeProtocol._session_updated,
    "input_audio_buffer.speech_started": OpenAIRealtimeProtocol._speech_started,
    "input_audio_buffer.speech_stopped": OpenAIRealtimeProtocol._speech_stopped,
    "response.created": OpenAIRealtimeProtocol._response_created,
    "response.output_audio.delta": OpenAIRealtimeProtocol._audio_delta,
    "response.audio.delta": OpenAIRealtimeProtocol._audio_delta,
    "response.output_audio.done": OpenAIRealtimeProtocol._audio_done,
    "response.audio.done": OpenAIRealtimeProtocol._audio_done,
    "response.output_audio_transcript.delta": OpenAIRealtimeProtocol._assistant_delta,
    "response.audio_transcript.delta": OpenAIRealtimeProtocol._assistant_delta,
    "response.output_audio_transcript.done": OpenAIRealtimeProtocol._assistant_done,
    "response.audio_transcript.done": OpenAIRealtimeProtocol._assistant_done,
    "response.output_text.delta": OpenAIRealtimeProtocol._text_delta,
    "response.text.delta": OpenAIRealtimeProtocol._text_delta,
    "response.output_text.done": OpenAIRealtimeProtocol._text_done,
    "response.text.done": OpenAIRealtimeProtocol._text_done,
    "conversation.item.input_audio_transcription.delta": OpenAIRealtimeProtocol._user_delta,
    "conversation.item.input_audio_transcription.completed": OpenAIRealtimeProtocol._user_done,
    "response.done": OpenAIRealtimeProtocol._response_done,
    "error": OpenAIRealtimeProtocol._error,
}

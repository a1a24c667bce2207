"""OpenAI Realtime (GA interface), sans I/O: server JSON in -> neutral events; commands -> client
JSON out.

Nothing here awaits, opens sockets or reads clocks, so every translation is tested with literal
JSON (``tests/test_openai_protocol.py``) and every message it writes is checked against the
official ``openai`` SDK's types. :class:`~bridge.providers.openai.OpenAIProvider` owns the
socket, sends what :meth:`OpenAIRealtimeProtocol.take_outbox` hands it after each received
message, and asks this class what a message means.

One instance lives for the whole call, across reconnections and session rollovers: it keeps
the conversation text so a fresh OpenAI session can be given the context of the old one.

Rules of the API this class enforces so the server never has to refuse us:

* only one response at a time: a typed message that arrives while a reply is being generated
  waits and is answered after ``response.done`` (OpenAI would refuse a second
  ``response.create`` and the message would never be answered);
* the voice is fixed once the session has produced audio: a later voice change is left out of
  the ``session.update`` (the rest applies) and reported as a ``voice_locked`` error event;
* a ``session.update`` OpenAI refuses is reported, and fatal if it was the first one (the
  session would run with formats the peer does not speak).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.audio.format import PCM16_24K, AudioFormat
from bridge.audio.playout import Playback
from bridge.core import events as ev
from bridge.core.redact import redact
from bridge.core.session_config import SessionConfig
from bridge.protocols.openai_server import deep_merged, format_of

log = logging.getLogger(__name__)

FORMATS = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "pcmu": {"type": "audio/pcmu"},
    "pcma": {"type": "audio/pcma"},
}
DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
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
    "input_audio_buffer.dtmf_event_received",
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
MAX_PENDING_TEXTS = 16
MAX_RELAYED_IDS = 256  # client event ids remembered to route their errors back


# Queued for an old socket, never sent on a new one (see carried_over).
_NOT_CARRIED = frozenset({"session.update", "conversation.item.truncate", "response.cancel"})


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
    response_active: bool = False  # between response.created and response.done
    response_requested: bool = False  # our response.create is on its way
    user_speaking: bool = False
    audio_produced: bool = False  # the voice can no longer change in this session
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
        transcription_model: str = DEFAULT_TRANSCRIPTION_MODEL,
    ) -> None:
        self.model = model
        self.config = config
        self.input_format = input_format
        self.output_format = output_format
        self.transcription_model = transcription_model
        self.conn = ConnectionState()
        self.unknown_events: Counter[str] = Counter()
        self.truncate_rejections = 0
        self.truncates_sent = 0
        self.queued_texts = 0
        self._opened = False
        self._ids = itertools.count(1)
        self._truncate_ids: set[str] = set()
        self._update_ids: set[str] = set()
        self._create_ids: set[str] = set()
        self._history: list[_Turn] = []
        self._assistant_text: dict[str, str] = {}
        self._pending: list[str] = []  # typed messages waiting for the current reply to end
        self._retry_create = False
        self._outbox: list[dict[str, Any]] = []
        self.last_type: str | None = None  # of the message :meth:`receive` saw last
        # Pass-through (a gateway client speaking this protocol itself): see :meth:`relay`.
        self.relaying = False
        self.client_session: dict[str, Any] = {}
        self._relayed_ids: OrderedDict[str, None] = OrderedDict()

    # -- commands ------------------------------------------------------------------------------

    def new_connection(self) -> list[dict[str, Any]]:
        """Forget what belonged to the previous socket (the conversation text stays); returns
        the messages that configure the new session and give it the conversation so far."""
        self.conn = ConnectionState()
        self._retry_create = False
        self._outbox.clear()
        messages = [self.session_update(), *self.context_messages()]
        if self._pending:
            messages.extend(self._answer_pending())
        return messages

    def carried_over(
        self, unsent: list[dict[str, Any]], setup: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """What of the messages queued for the old socket the new session (set up by
        ``setup``) still needs: user audio, commits and the request for a reply. A
        ``session.update`` is superseded by the setup's, a typed message is in its context
        already, and truncates and cancels name the old session's items."""
        asked = any(m.get("type") == "response.create" for m in setup)
        kept = []
        for message in unsent:
            kind = message.get("type")
            if kind in _NOT_CARRIED:
                continue
            if kind == "conversation.item.create" and not self._relayed(message):
                continue  # ours: part of the context
            if kind == "response.create":
                if asked:  # one reply at a time: ask again when the current one is done
                    self._retry_create = True
                    continue
                asked = True
                self.conn.response_requested = True
            kept.append(message)
        return kept

    def _relayed(self, message: dict[str, Any]) -> bool:
        event_id = message.get("event_id")
        return isinstance(event_id, str) and event_id in self._relayed_ids

    def take_outbox(self) -> list[dict[str, Any]]:
        """Messages that received events made necessary (e.g. a queued typed message)."""
        out, self._outbox = self._outbox, []
        return out

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": f"evt_bridge_{next(self._ids)}", **fields}

    def session_update(self, config: SessionConfig | None = None) -> dict[str, Any]:
        """``session.update`` carrying the whole configuration."""
        if config is not None:
            self.config = config
        c = self.config
        td = None if c.turn_detection.type == "none" else c.turn_detection.to_json()
        output: dict[str, Any] = {"format": FORMATS[self.output_format.encoding]}
        if c.voice:
            output["voice"] = c.voice
        transcription = {"model": self.transcription_model} if c.input_transcription else None
        session: dict[str, Any] = {
            "type": "realtime",
            "output_modalities": ["audio"] if "audio" in c.output_modalities else ["text"],
            "audio": {
                "input": {
                    "format": FORMATS[self.input_format.encoding],
                    "turn_detection": td,
                    "transcription": transcription,
                },
                "output": output,
            },
        }
        if c.instructions is not None:
            session["instructions"] = c.instructions
        if self.client_session:
            session = deep_merged(session, self.client_session)
        message = self._event("session.update", session=session)
        self._update_ids.add(message["event_id"])
        return message

    def update(self, config: SessionConfig) -> tuple[list[dict[str, Any]], list[ev.Event]]:
        """A client's new configuration: what to send, and notices for the client.

        Once this session has produced audio OpenAI refuses a voice change (and with it the
        whole update), so the voice stays as it was and the rest still applies.
        """
        notices: list[ev.Event] = []
        if config.voice != self.config.voice and self.conn.audio_produced:
            notices.append(
                ev.Error(
                    "voice_locked",
                    f"the voice can't change once the assistant has spoken in this session; "
                    f"it stays {self.config.voice or 'the default'} (the rest of the update "
                    "was applied)",
                )
            )
            config = replace(config, voice=self.config.voice)
        return [self.session_update(config)], notices

    def relay(self, message: dict[str, Any]) -> dict[str, Any]:
        """A client's own event, passed through unchanged (the gateway checked it). Errors that
        answer it reach the client as they are, and a ``session.update`` is kept so that a
        renewed session is configured the same way."""
        self.relaying = True
        event_id = message.get("event_id")
        if isinstance(event_id, str):
            self._relayed_ids[event_id] = None
            while len(self._relayed_ids) > MAX_RELAYED_IDS:
                self._relayed_ids.popitem(last=False)
        kind = message.get("type")
        if kind == "session.update" and isinstance(message.get("session"), dict):
            self.client_session = deep_merged(self.client_session, message["session"])
            audio = self.client_session.get("audio")
            for side in ("input", "output"):
                fmt = format_of(audio.get(side) if isinstance(audio, dict) else None)
                if fmt is not None:
                    setattr(self, f"{side}_format", fmt)
        elif kind == "response.create":
            self.conn.response_requested = True
        return message

    def append_audio(self, data: bytes) -> dict[str, Any]:
        return {
            "type": "input_audio_buffer.append",
            "audio": base64.b64encode(data).decode("ascii"),
        }

    def user_text(self, text: str, turn_complete: bool = True) -> list[dict[str, Any]]:
        """A typed user message and the request for a reply; held while a reply is active.
        Without ``turn_complete`` the message only joins the conversation."""
        if not turn_complete:
            self._remember(_Turn("user", text))
            return [self._event("conversation.item.create", item=_user_item(text))]
        if self._busy:
            if len(self._pending) >= MAX_PENDING_TEXTS:
                self._pending.pop(0)
            self._pending.append(text)
            self.queued_texts += 1
            return []
        self._pending.append(text)
        return self._answer_pending()

    @property
    def _busy(self) -> bool:
        """A reply is being generated or asked for: another response.create would be refused."""
        return self.conn.response_active or self.conn.response_requested or self._retry_create

    def _answer_pending(self) -> list[dict[str, Any]]:
        messages = []
        for text in self._pending:
            self._remember(_Turn("user", text))
            messages.append(self._event("conversation.item.create", item=_user_item(text)))
        self._pending.clear()
        messages.append(self._response_create())
        return messages

    def commit(self) -> list[dict[str, Any]]:
        """End the user's audio turn (manual turns): commit the buffer and ask for a reply
        (after the current one, if one is being generated)."""
        messages = [self._event("input_audio_buffer.commit")]
        if self._busy:
            self._retry_create = True
        else:
            messages.append(self._response_create())
        return messages

    def cancel(self) -> dict[str, Any] | None:
        """``response.cancel`` when a reply is under way (a client-initiated interrupt)."""
        if not (self.conn.response_active or self.conn.response_requested):
            return None
        return self._event("response.cancel")

    def _response_create(self) -> dict[str, Any]:
        message = self._event("response.create")
        self._create_ids.add(message["event_id"])
        self.conn.response_requested = True
        return message

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
            kind = "input_text" if turn.role == "user" else "output_text"
            item = {
                "type": "message",
                "role": turn.role,
                "content": [{"type": kind, "text": turn.text}],
            }
            messages.append(self._event("conversation.item.create", item=item))
        return messages

    @property
    def at_turn_boundary(self) -> bool:
        """Nobody is speaking or generating: a safe moment to switch sessions."""
        conn = self.conn
        return not (conn.response_active or conn.response_requested or conn.user_speaking)

    # -- server events -------------------------------------------------------------------------

    def receive(self, raw: str | bytes) -> list[ev.Event]:
        """Translate one server message; unknown or malformed ones are counted, never fatal."""
        self.last_type = None
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError):
            self.unknown_events["<invalid json>"] += 1
            return []
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.unknown_events["<no type>"] += 1
            return []
        kind = self.last_type = message["type"][:64]
        handler = _HANDLERS.get(kind)
        if handler is None:
            if kind not in IGNORED:
                self.unknown_events[kind] += 1
            return []
        try:
            return handler(self, message)
        except Exception:  # a field of an unexpected type: counted, never fatal
            self.unknown_events[f"<malformed {kind}>"] += 1
            log.debug("openai: malformed %s", kind, exc_info=True)
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
        self.conn.response_requested = False
        return []

    def _audio_delta(self, m: dict[str, Any]) -> list[ev.Event]:
        item_id = str(m.get("item_id") or "")
        try:
            data = base64.b64decode(str(m.get("delta") or ""), validate=True)
        except (binascii.Error, ValueError):
            self.unknown_events["<bad audio delta>"] += 1
            return []
        self.conn.audio_produced = True
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
        self.conn.response_requested = False
        response = m.get("response") if isinstance(m.get("response"), dict) else {}
        assert isinstance(response, dict)
        out: list[ev.Event] = [ev.TurnComplete()]
        usage = response.get("usage")
        if isinstance(usage, dict):
            out.append(ev.Usage(usage))
        if self._pending:
            self._outbox.extend(self._answer_pending())
        elif self._retry_create:
            self._outbox.append(self._response_create())
        self._retry_create = False
        return out

    def _error(self, m: dict[str, Any]) -> list[ev.Event]:
        error = m.get("error") if isinstance(m.get("error"), dict) else {}
        assert isinstance(error, dict)
        code = str(error.get("code") or error.get("type") or "provider_error")[:64]
        message = str(error.get("message") or "the provider reported an error")[:2000]
        event_id = error.get("event_id") if isinstance(error.get("event_id"), str) else None
        if code == "session_expired":
            self.conn.expired = True
            return []
        own = event_id in self._create_ids or event_id in self._truncate_ids
        if self.relaying and not own and event_id not in self._update_ids:
            # The client's own request failed: it hears exactly what OpenAI said.
            param = error.get("param") if isinstance(error.get("param"), str) else None
            fatal = code in FATAL_CODES
            event = ev.Error(code, message, fatal, param=param, event_id=event_id)
            if fatal:
                self.conn.fatal = event
            return [event]
        if event_id in self._create_ids and code == "conversation_already_has_active_response":
            # Our typed message's reply collided with one the server started itself (VAD):
            # ask again once that one is done.
            self.conn.response_requested = False
            self._retry_create = True
            return []
        if code in BENIGN_CODES:
            log.info("openai: benign error %s: %s", code, redact(message))
            return []
        if event_id in self._truncate_ids or error.get("param") == "audio_end_ms":
            self.truncate_rejections += 1
            log.warning("openai rejected a truncate (%s): %s", code, redact(message))
            return []
        if event_id in self._update_ids:
            if not self.conn.configured:
                event = ev.Error(
                    "invalid_session", f"OpenAI refused the session configuration: {message}", True
                )
                self.conn.fatal = event
                return [event]
            return [ev.Error("invalid_session", f"OpenAI refused the session update: {message}")]
        if code == "beta_api_shape_disabled":
            message = (
                f"OpenAI no longer serves the beta Realtime interface that {self.model} needs; "
                "choose a current model such as gpt-realtime-2.1"
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


def _user_item(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


_Handler = Callable[[OpenAIRealtimeProtocol, dict[str, Any]], list[ev.Event]]
_HANDLERS: dict[str, _Handler] = {
    "session.updated": OpenAIRealtimeProtocol._session_updated,
    "input_audio_buffer.speech_started": OpenAIRealtimeProtocol._speech_started,
    "input_audio_buffer.speech_stopped": OpenAIRealtimeProtocol._speech_stopped,
    "response.created": OpenAIRealtimeProtocol._response_created,
    "response.output_audio.delta": OpenAIRealtimeProtocol._audio_delta,
    "response.output_audio.done": OpenAIRealtimeProtocol._audio_done,
    "response.output_audio_transcript.delta": OpenAIRealtimeProtocol._assistant_delta,
    "response.output_audio_transcript.done": OpenAIRealtimeProtocol._assistant_done,
    "response.output_text.delta": OpenAIRealtimeProtocol._text_delta,
    "response.output_text.done": OpenAIRealtimeProtocol._text_done,
    "conversation.item.input_audio_transcription.delta": OpenAIRealtimeProtocol._user_delta,
    "conversation.item.input_audio_transcription.completed": OpenAIRealtimeProtocol._user_done,
    "response.done": OpenAIRealtimeProtocol._response_done,
    "error": OpenAIRealtimeProtocol._error,
}

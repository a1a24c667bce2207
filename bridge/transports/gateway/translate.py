"""The OpenAI Realtime face of a provider that speaks something else (Gemini, echo), sans I/O.

A gateway client speaks OpenAI Realtime; when the conversation behind it runs on another
provider, :class:`Translator` plays OpenAI's server: client events become neutral commands
and user audio in the provider's format, and neutral provider events become the server events
an OpenAI client expects, with OpenAI's ids and order (built by
:mod:`bridge.protocols.openai_server`, the module the OpenAI emulator uses too).

Audio is resampled statefully in both directions: one resampler from the client's input
format to the provider's rate, one from the provider's output rate to the client's output
format (24 kHz PCM16, or 8 kHz G.711 when the session asks for ``audio/pcmu``/``pcma``).

What cannot be mapped is said, not faked: assistant or function items, and audio items, are
refused with ``unsupported_item``; ``input_audio_buffer.clear`` can't take back audio the
provider already heard (it only resets the commit size check); a ``response.cancel`` stops
playback and drops the rest of the reply as it arrives. Usage is reported in OpenAI's shape
(Gemini's token counts by modality; echo has none, so zeros). The ``response.done`` of a reply
waits for the provider's usage report when it follows the end of the turn: the I/O side
calls :meth:`Translator.settle` once the events of one provider message are handled.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridge.audio import g711
from bridge.audio.format import AudioFormat
from bridge.audio.resample import Resampler
from bridge.core import commands as cmd
from bridge.core import events as ev
from bridge.core.errors import BadRequest
from bridge.core.session_config import SessionConfig
from bridge.protocols.openai_server import (
    ProtocolError,
    ResponseStream,
    ServerEvents,
    check_commit,
    check_item,
    check_truncate,
    committed_events,
    decode_append,
    default_session,
    merged_session,
    new_id,
    session_format,
)

MAX_REMEMBERED_ITEMS = 64
DEFAULT_PREFIX_PADDING_MS = 300


@dataclass
class Actions:
    """What one client event asks for: server events to answer with, commands for the
    conversation, and user audio in the provider's input format."""

    events: list[dict[str, Any]] = field(default_factory=list)
    commands: list[cmd.Command] = field(default_factory=list)
    audio: list[bytes] = field(default_factory=list)


class Translator:
    """See the module docstring. One per gateway connection."""

    def __init__(
        self,
        *,
        model: str,
        provider: str,
        config: SessionConfig,
        provider_input: AudioFormat,
        provider_output: AudioFormat,
    ) -> None:
        self.events = ServerEvents()
        self.config = config
        self.provider = provider
        self.session = self._session_of(default_session(model), config)
        self._provider_input = provider_input
        self._provider_output = provider_output
        self._to_provider = Resampler(provider_input.rate)
        self._to_client = Resampler(self.output_format.rate)
        self.response: ResponseStream | None = None
        self.generated_ms: OrderedDict[str, int] = OrderedDict()  # item -> ms sent as deltas
        self.last_item: str | None = None
        self._speech_item: str | None = None  # the user is speaking into this item
        self._heard_item: str | None = None  # the last committed user audio item
        self._heard_ms = 0
        self._heard_text = ""
        self.appended_ms = 0.0
        self.buffered_ms = 0.0  # appended since the last commit or clear
        self._texts: list[str] = []  # typed user messages waiting for response.create
        self._reply_due = False  # a user turn ended: the provider will answer by itself
        self._requested = False  # response.create was passed on: a reply will come
        self._discarding = False  # the rest of a cancelled reply is dropped as it arrives
        self._finishing = False  # the turn is over; response.done waits for usage
        self._interrupted = False  # the provider cut its reply; its end of turn may follow

    # -- the session object --------------------------------------------------------------------

    def _session_of(self, session: dict[str, Any], config: SessionConfig) -> dict[str, Any]:
        """The OpenAI session object that describes ``config`` on this provider."""
        session["instructions"] = config.instructions or ""
        session["output_modalities"] = (
            ["audio"] if "audio" in config.output_modalities else ["text"]
        )
        audio_in, audio_out = session["audio"]["input"], session["audio"]["output"]
        td = config.turn_detection
        audio_in["turn_detection"] = None if td.type == "none" else td.to_json()
        audio_in["transcription"] = {"model": self.provider} if config.input_transcription else None
        if config.voice:
            audio_out["voice"] = config.voice
        return session

    @property
    def input_format(self) -> AudioFormat:
        return session_format(self.session, "input")

    @property
    def output_format(self) -> AudioFormat:
        return session_format(self.session, "output")

    def start(self) -> list[dict[str, Any]]:
        """What the client hears first."""
        return [self.events.event("session.created", session=self.session)]

    # -- client events -------------------------------------------------------------------------

    def client_event(self, message: dict[str, Any]) -> Actions:
        """Apply one client event (parsed and admitted by the policy); a mistake raises
        :class:`ProtocolError` and changes nothing."""
        handler = _CLIENT_HANDLERS.get(message["type"])
        if handler is None:
            raise ProtocolError(
                "not_supported",
                f"'{message['type']}' is not supported with provider {self.provider}.",
                "type",
            )
        return handler(self, message)

    def _session_update(self, m: dict[str, Any]) -> Actions:
        update = m.get("session")
        merged = merged_session(self.session, update)
        assert isinstance(update, dict)
        neutral: dict[str, Any] = {}
        for key in ("instructions", "output_modalities"):
            if key in update:
                neutral[key] = update[key]
        audio = update.get("audio") if isinstance(update.get("audio"), dict) else {}
        assert isinstance(audio, dict)
        audio_in = audio.get("input") or {}
        audio_out = audio.get("output") or {}
        if "turn_detection" in audio_in:
            neutral["turn_detection"] = audio_in["turn_detection"]
        if "transcription" in audio_in:
            neutral["input_transcription"] = audio_in["transcription"] is not None
        if "voice" in audio_out:
            neutral["voice"] = audio_out["voice"]
        try:
            config = self.config.merged(neutral)
        except BadRequest as exc:
            raise ProtocolError("invalid_value", exc.message, "session") from None
        output_rate = self.output_format.rate
        self.config, self.session = config, self._session_of(merged, config)
        if self.output_format.rate != output_rate:
            self._to_client = Resampler(self.output_format.rate)
        actions = Actions([self.events.event("session.updated", session=self.session)])
        if neutral:
            actions.commands.append(cmd.UpdateSession(neutral))
        return actions

    def _append(self, m: dict[str, Any]) -> Actions:
        data = decode_append(m)
        fmt = self.input_format
        if fmt.is_g711:
            pcm = g711.decode(data, fmt.encoding)
        else:
            pcm = np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2").astype(np.int16)
        ms = pcm.size * 1000 / fmt.rate
        self.appended_ms += ms
        self.buffered_ms += ms
        out = self._to_provider.resample_pcm(pcm, fmt.rate)
        return Actions(audio=[out.astype("<i2").tobytes()] if out.size else [])

    def _commit(self, m: dict[str, Any]) -> Actions:
        check_commit(self.buffered_ms)
        item_id = self._speech_item or new_id("item")
        self._speech_item = None
        return Actions(self._committed(item_id), [cmd.CommitAudio()])

    def _committed(self, item_id: str) -> list[dict[str, Any]]:
        previous, self.last_item = self.last_item, item_id
        self._heard_item, self._heard_ms, self._heard_text = item_id, int(self.buffered_ms), ""
        self.buffered_ms = 0.0
        self._reply_due = True
        return committed_events(self.events, item_id, previous)

    def _clear(self, m: dict[str, Any]) -> Actions:
        self.buffered_ms = 0.0
        return Actions([self.events.event("input_audio_buffer.cleared")])

    def _item_create(self, m: dict[str, Any]) -> Actions:
        item = check_item(m)
        parts = item.get("content") if item.get("type") == "message" else None
        texts = [p.get("text") for p in parts or []]
        if item.get("role") != "user" or not texts or not all(isinstance(t, str) for t in texts):
            raise ProtocolError(
                "unsupported_item",
                f"Only user messages with input_text parts can be added with provider "
                f"{self.provider}.",
                "item",
            )
        text = "\n".join(t for t in texts if isinstance(t, str)).strip()
        if not text:
            raise ProtocolError("invalid_value", "The message has no text.", "item.content")
        item_id = item.get("id") if isinstance(item.get("id"), str) else new_id("item")
        shown = {**item, "id": item_id, "status": "completed"}
        previous, self.last_item = self.last_item, item_id
        self._texts.append(text)
        return Actions(
            [
                self.events.event("conversation.item.added", previous_item_id=previous, item=shown),
                self.events.event("conversation.item.done", previous_item_id=previous, item=shown),
            ]
        )

    def _response_create(self, m: dict[str, Any]) -> Actions:
        if self.response is not None or self._requested:
            active = self.response.id if self.response is not None else "(starting)"
            raise ProtocolError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {active}. "
                "Wait until the response is finished before creating a new one.",
            )
        if self._texts:
            text, self._texts = "\n".join(self._texts), []
            self._requested = True
            return Actions(commands=[cmd.SendText(text, turn_complete=True)])
        if self._reply_due:
            return Actions()  # the provider answers the user's turn by itself
        raise ProtocolError(
            "not_supported",
            f"Nothing to respond to: with provider {self.provider} a response follows a user "
            "message (conversation.item.create) or committed audio.",
        )

    def _response_cancel(self, m: dict[str, Any]) -> Actions:
        if self.response is None:
            raise ProtocolError(
                "response_cancel_not_active", "Cancellation failed: no active response found"
            )
        events = self._finish("cancelled", reason="client_cancelled")
        self._discarding = True
        return Actions(events, [cmd.Interrupt()])

    def _truncate(self, m: dict[str, Any]) -> Actions:
        item_id, end_ms = check_truncate(m, dict(self.generated_ms))
        content_index = m.get("content_index", 0)
        event = self.events.event(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=content_index if isinstance(content_index, int) else 0,
            audio_end_ms=end_ms,
        )
        return Actions([event])

    # -- provider events -----------------------------------------------------------------------

    def provider_event(self, event: ev.Event) -> list[dict[str, Any]]:
        """Server events for one neutral event (reply audio arrives via :meth:`audio_out`)."""
        out = self.settle() if self._finishing and not isinstance(event, ev.Usage) else []
        match event:
            case ev.SpeechStarted():
                out += self._speech_started()
            case ev.SpeechStopped():
                out += self._speech_stopped()
            case ev.TextDelta(delta=delta):
                out += self._assistant_text(delta, audio=False)
            case ev.Transcript(role="assistant", text=text, final=final):
                if not final:
                    out += self._assistant_text(text, audio=True)
                elif self.response is not None and not self.response.text:
                    out += self._assistant_text(text, audio=True)
            case ev.Transcript(role="user", text=text, final=final):
                out += self._user_transcript(text, final)
            case ev.Interrupted():
                self._discarding = False
                self._interrupted = True
                out += self._finish("cancelled", reason="turn_detected")
            case ev.TurnComplete() if self._discarding or self._interrupted:
                # The end of a cut reply, not an answer: requests made since still stand.
                self._discarding = self._interrupted = False
            case ev.TurnComplete():
                if self.response is None and self._requested:
                    out += self._start(audio=False)  # a request answered with nothing
                self._reply_due = self._requested = False
                self._finishing = self.response is not None
            case ev.Usage(usage=usage):
                if self._finishing:
                    self._finishing = False
                    out += self._finish("completed", usage=openai_usage(usage))
            case ev.Error(code=code, message=message, fatal=fatal, param=param, event_id=eid):
                kind = "server_error" if fatal else "invalid_request_error"
                out.append(self.events.error(code, message, param, eid, kind))
        return out

    def settle(self) -> list[dict[str, Any]]:
        """End a finished turn whose usage did not come with it."""
        if not self._finishing:
            return []
        self._finishing = False
        return self._finish("completed")

    def audio_out(self, pcm: bytes) -> list[dict[str, Any]]:
        """Reply audio (PCM16 at the provider's output rate) as deltas for the client."""
        if self._discarding or not pcm:
            return []
        out = self._start(audio=True) if self.response is None else []
        assert self.response is not None
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.int16)
        fmt = self.output_format
        resampled = self._to_client.resample_pcm(samples, self._provider_output.rate)
        if not resampled.size:
            return out
        data = (
            g711.encode(resampled, fmt.encoding)
            if fmt.is_g711
            else resampled.astype("<i2").tobytes()
        )
        out.append(self.response.audio_delta(data))
        item = self.response.item_id
        self.generated_ms[item] = fmt.bytes_to_ms(self.response.output_bytes)
        self.generated_ms.move_to_end(item)
        while len(self.generated_ms) > MAX_REMEMBERED_ITEMS:
            self.generated_ms.popitem(last=False)
        return out

    def _speech_started(self) -> list[dict[str, Any]]:
        td = self.session["audio"]["input"]["turn_detection"] or {}
        padding = td.get("prefix_padding_ms", DEFAULT_PREFIX_PADDING_MS)
        self._speech_item = new_id("item")
        out = [
            self.events.event(
                "input_audio_buffer.speech_started",
                audio_start_ms=max(int(self.appended_ms) - int(padding), 0),
                item_id=self._speech_item,
            )
        ]
        if self.response is not None:
            out += self._finish("cancelled", reason="turn_detected")
            self._discarding = True  # until the provider says its turn is over
        return out

    def _speech_stopped(self) -> list[dict[str, Any]]:
        item_id = self._speech_item or new_id("item")
        self._speech_item = None
        stopped = self.events.event(
            "input_audio_buffer.speech_stopped",
            audio_end_ms=int(self.appended_ms),
            item_id=item_id,
        )
        return [stopped, *self._committed(item_id)]

    def _user_transcript(self, text: str, final: bool) -> list[dict[str, Any]]:
        item_id = self._heard_item or self._speech_item
        if item_id is None or not text:
            return []  # a typed message's echo: the client sent that text itself
        if not final:
            self._heard_text += text
            return [
                self.events.event(
                    "conversation.item.input_audio_transcription.delta",
                    item_id=item_id,
                    content_index=0,
                    delta=text,
                )
            ]
        self._heard_item = None
        return [
            self.events.event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=text,
                usage={"type": "duration", "seconds": round(self._heard_ms / 1000, 3)},
            )
        ]

    def _assistant_text(self, delta: str, audio: bool) -> list[dict[str, Any]]:
        if self._discarding or not delta:
            return []
        out = self._start(audio=audio) if self.response is None else []
        assert self.response is not None
        out.append(self.response.text_delta(delta))
        return out

    def _start(self, audio: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        self._interrupted = False
        if self._speech_item is not None:  # the provider answered before saying the user
            out += self._speech_stopped()  # stopped: the user's turn ends here
        self._requested = False
        self.response = ResponseStream(
            self.events, self.session, audio=audio, previous_item_id=self.last_item
        )
        self.last_item = self.response.item_id
        return out + self.response.start()

    def _finish(
        self, status: str, usage: dict[str, Any] | None = None, reason: str | None = None
    ) -> list[dict[str, Any]]:
        if self.response is None:
            return []
        response, self.response = self.response, None
        self._finishing = False
        return response.finish(status, usage or openai_usage({}), reason)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _by_modality(details: object) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in details if isinstance(details, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("modality"), str):
            key = entry["modality"]
            counts[key] = counts.get(key, 0) + _count(entry.get("tokenCount"))
    return counts


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """A provider's usage report in the shape of OpenAI's ``response.usage``. Gemini's
    ``usageMetadata`` maps by modality; reports without token counts (echo) give zeros."""
    prompt = _count(usage.get("promptTokenCount"))
    reply = _count(usage.get("responseTokenCount") or usage.get("candidatesTokenCount"))
    reply += _count(usage.get("thoughtsTokenCount"))
    total = _count(usage.get("totalTokenCount")) or prompt + reply
    given = _by_modality(usage.get("promptTokensDetails"))
    said = _by_modality(usage.get("responseTokensDetails"))
    return {
        "total_tokens": total,
        "input_tokens": prompt,
        "output_tokens": reply,
        "input_token_details": {
            "text_tokens": given.get("TEXT", 0),
            "audio_tokens": given.get("AUDIO", 0),
            "image_tokens": given.get("IMAGE", 0) + given.get("VIDEO", 0),
            "cached_tokens": _count(usage.get("cachedContentTokenCount")),
        },
        "output_token_details": {
            "text_tokens": said.get("TEXT", 0),
            "audio_tokens": said.get("AUDIO", 0),
        },
    }


_CLIENT_HANDLERS = {
    "session.update": Translator._session_update,
    "input_audio_buffer.append": Translator._append,
    "input_audio_buffer.commit": Translator._commit,
    "input_audio_buffer.clear": Translator._clear,
    "conversation.item.create": Translator._item_create,
    "response.create": Translator._response_create,
    "response.cancel": Translator._response_cancel,
    "conversation.item.truncate": Translator._truncate,
}

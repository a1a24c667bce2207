"""The GPT-Live emulator's session logic, without I/O: :class:`GptLiveSession` turns client
frames (and the passing of wall time) into server events (``shared/protocols-2026.md``
§A.2-A.12). Its options and what it records are :mod:`.gpt_live_options`, the strict
``session.start`` rules :mod:`.gpt_live_rules`.

The appended input audio is the session's clock. It is cut into 10 ms frames; each frame runs
an energy VAD and earns the reply being spoken ``speed`` x 10 ms of output, so output can be at
most ``speed`` times ahead of the input and stops the moment appends stop (a client that goes
quiet for 200 ms, or 20 s, gets nothing until it appends again). Wall time drives only usage
updates and expiry (:meth:`GptLiveSession.tick`).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridge.audio import g711
from bridge.audio.format import PCM16_24K, AudioFormat
from bridge.audio.vad import level_dbfs
from bridge.emulators.gpt_live_options import GptLiveEmulatorOptions, GptLiveSessionRecord
from bridge.emulators.gpt_live_rules import (
    _EVENT_KEYS,
    FRAGMENT_MS,
    FRAME_MS,
    MAX_UTTERANCE_MS,
    UNSUPPORTED_EVENTS,
    Refusal,
    _check_delegation,
    _check_triggers,
    _keys,
    _object,
    _required,
    _typed,
    check_session_start,
)


@dataclass(frozen=True)
class Close:
    """An instruction to the I/O layer: close the socket with this code."""

    code: int
    reason: str


Output = dict[str, Any] | Close


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def _pieces(text: str, duration_ms: float) -> list[str]:
    """``text`` in about one piece per 200 ms, split between words, never empty."""
    words = text.split(" ")
    n = max(1, min(round(duration_ms / FRAGMENT_MS), len(words)))
    pieces = []
    for i in range(n):
        group = words[len(words) * i // n : len(words) * (i + 1) // n]
        pieces.append((" " if i else "") + " ".join(group))
    return [p for p in pieces if p]


# -- the session ---------------------------------------------------------------------------------


@dataclass
class _Utterance:
    start_ms: float
    over_reply: bool  # began while a reply was speaking: a barge-in candidate
    voiced_ms: float = 0.0
    end_ms: float = 0.0  # end of the last voiced frame
    silence_ms: float = 0.0
    confirmed: bool = False  # long enough to be a barge-in
    audio: bytearray = field(default_factory=bytearray)


@dataclass
class _Reply:
    speech: bytes  # in the session format
    trailing: int  # bytes of trailing silence
    text: str
    pos: int = 0  # bytes sent
    start_ms: float = 0.0  # input clock when it began
    held_at: float | None = None  # input clock when a possible barge-in held it
    fragments: deque[tuple[float, float, str]] = field(default_factory=deque)

    @property
    def total(self) -> int:
        return len(self.speech) + self.trailing

    @property
    def speaking(self) -> bool:
        return self.pos < len(self.speech)


class GptLiveSession:
    """The protocol state of one connection: :meth:`receive` a client frame or :meth:`tick`
    at :meth:`next_deadline`; both return what to send (event dicts) and :class:`Close`."""

    def __init__(
        self,
        options: GptLiveEmulatorOptions,
        record: GptLiveSessionRecord,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.opt, self.rec, self._wall = options, record, wall_clock
        self.fmt: AudioFormat = PCM16_24K
        self.started_at: float | None = None
        self.closed = False
        self._out: list[Output] = []
        self._next_usage: float | None = None
        self._expire_at: float | None = None
        self._pending = bytearray()  # appended bytes not yet a whole frame
        self.clock_ms = 0.0  # input processed, in whole frames
        self._utt: _Utterance | None = None
        self._reply: _Reply | None = None
        self._queue: deque[_Reply] = deque()
        self._credit_ms = 0.0  # output ms the input clock has paid for and not yet used

    # -- plumbing ---------------------------------------------------------------------------------

    def _emit(self, kind: str, cid: str | None = None, **fields: Any) -> None:
        event: dict[str, Any] = {"type": kind, "event_id": new_id("event"), **fields}
        if cid is not None:
            event["client_event_id"] = cid
        self._send(event)

    def _send(self, event: dict[str, Any]) -> None:
        self.rec.wire.append(("out", event))
        if event["type"] == "error":
            self.rec.errors.append(event["error"])
        self._out.append(event)

    def _error(self, refusal: Refusal, cid: str | None) -> None:
        body: dict[str, Any] = {
            "type": "invalid_request_error",
            "code": refusal.code,
            "message": refusal.message,
        }
        if refusal.param is not None:
            body["param"] = refusal.param
        if cid is not None:
            body["client_event_id"] = cid
        self._send({"type": "error", "event_id": new_id("event"), "error": body})

    def _take(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    # -- time -------------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (the monotonic clock of ``now``)."""
        if self.closed or self.started_at is None:
            return None
        times = [t for t in (self._next_usage, self._expire_at) if t is not None]
        return min(times) if times else None

    def tick(self, now: float) -> list[Output]:
        if self.closed or self.started_at is None:
            return self._take()
        if self._expire_at is not None and now >= self._expire_at:
            self._close("expired", None, now)
            return self._take()
        interval = self.opt.usage_interval_s
        if self._next_usage is not None and interval and now >= self._next_usage:
            seconds = self._usage(now)
            self._emit("session.usage.updated", usage={"seconds": seconds})
            while self._next_usage <= now:
                self._next_usage += interval
        return self._take()

    def _usage(self, now: float) -> float:
        assert self.started_at is not None
        seconds = round(max(0.0, now - self.started_at), 3)
        self.rec.usage_seconds = seconds
        return seconds

    def _close(self, reason: str, cid: str | None, now: float) -> None:
        self._emit(
            "session.closed",
            cid,
            reason=reason,
            session=copy.deepcopy(self.rec.session),
            usage={"seconds": self._usage(now)},
        )
        self.rec.closed_reason = reason
        self.closed = True
        self._out.append(Close(1000, reason))

    # -- client events ----------------------------------------------------------------------------

    def receive(self, raw: str | bytes, now: float) -> list[Output]:
        if self.closed:
            return []
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError):
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            self.rec.wire.append(("in", text))
            self._error(Refusal("invalid_json", "The event is not valid JSON."), None)
            return self._take()
        self.rec.wire.append(("in", message))
        if not isinstance(message, dict):
            self._error(Refusal("invalid_event", "An event must be a JSON object."), None)
            return self._take()
        kind = message.get("type")
        if kind != "session.input_audio.append":
            self.rec.received.append(message)
        event_id = message.get("event_id")
        cid = event_id if isinstance(event_id, str) else None
        try:
            self._dispatch(kind, message, cid, now)
        except Refusal as refusal:
            self._error(refusal, cid)
        return self._take()

    def _dispatch(self, kind: Any, m: dict[str, Any], cid: str | None, now: float) -> None:
        if not isinstance(kind, str):
            raise Refusal(
                "missing_required_parameter", "Missing required parameter: 'type'.", "type"
            )
        if kind not in _EVENT_KEYS and kind not in UNSUPPORTED_EVENTS:
            raise Refusal("unknown_event", f"Unknown event type: '{kind}'.", "type")
        if self.started_at is None and kind != "session.start":
            raise Refusal(
                "session_not_started",
                f"Send session.start and wait for session.started before '{kind}'.",
            )
        if kind in UNSUPPORTED_EVENTS:
            raise Refusal(
                "unsupported_event", f"The GPT-Live emulator does not implement '{kind}'.", "type"
            )
        _keys(m, _EVENT_KEYS[kind], "")
        _typed(m.get("event_id"), str, "event_id")
        if kind == "session.start":
            self._on_start(m, cid, now)
        elif kind == "session.update":
            self._on_update(m, cid)
        elif kind == "session.input_audio.append":
            self._on_append(m)
        elif kind in ("session.input_audio.mute", "session.input_audio.unmute"):
            self.rec.muted = kind.endswith(".mute")
            self._emit(kind + "d", cid)
        elif kind == "session.close":
            self._close("close_requested", cid, now)
        else:
            self._on_context(kind, m, cid)

    def _on_start(self, m: dict[str, Any], cid: str | None, now: float) -> None:
        if self.started_at is not None:
            raise Refusal(
                "session_already_started", "session.start may be sent only once per session."
            )
        session = _object(_required(m, "session", ""), "session")
        resolved, self.fmt = check_session_start(session, self.opt.models)
        expires_at = int(self._wall() + self.opt.lifetime_s)
        self.rec.session = {
            "id": new_id("live"),
            "expires_at": expires_at,
            "status": "active",
            **resolved,
        }
        self.started_at = now
        self._expire_at = now + self.opt.lifetime_s
        if self.opt.usage_interval_s:
            self._next_usage = now + self.opt.usage_interval_s
        self._emit("session.started", cid, session=copy.deepcopy(self.rec.session))

    def _on_update(self, m: dict[str, Any], cid: str | None) -> None:
        assert self.rec.session is not None
        update = _object(_required(m, "session", ""), "session")
        _keys(update, ("delegation", "triggers"), "session")
        current = self.rec.session["delegation"]
        delegation = _check_delegation(update.get("delegation"), "session.delegation", update=True)
        if delegation is not None and delegation["type"] != current["type"]:
            raise Refusal(
                "invalid_value",
                f"The delegation type cannot change (it is '{current['type']}').",
                "session.delegation.type",
            )
        triggers = _check_triggers(update.get("triggers"), "session.triggers")
        if delegation is not None:
            merged = dict(current)
            for key, value in delegation.items():
                if key in ("responses", "decisions") and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
            self.rec.session["delegation"] = merged
        if triggers is not None:
            self.rec.session["triggers"] = triggers
        self._emit("session.updated", cid, session=copy.deepcopy(self.rec.session))

    def _on_context(self, kind: str, m: dict[str, Any], cid: str | None) -> None:
        assert self.rec.session is not None
        content = _typed(_required(m, "content", ""), str, "content")
        if "delegation_id" not in m:
            raise Refusal(
                "missing_required_parameter",
                "Missing required parameter: 'delegation_id' (send null for general context).",
                "delegation_id",
            )
        delegation_id = _typed(m["delegation_id"], str, "delegation_id")
        if delegation_id is not None:
            if self.rec.session["delegation"]["type"] == "responses":
                raise Refusal(
                    "invalid_value",
                    "A delegation_id is not accepted with Responses delegation.",
                    "delegation_id",
                )
            if delegation_id not in self.rec.delegations:
                raise Refusal(
                    "invalid_value", f"Unknown delegation_id '{delegation_id}'.", "delegation_id"
                )
        what = kind.split(".")[1]  # instructions | thinking | commentary
        self.rec.appended.append((what, content, delegation_id))
        at = int(self.rec.input_ms)
        self._emit(kind + "ed", cid, start_ms=at, end_ms=at)
        if what == "commentary":
            self._queue_reply(self._tone(), content)

    # -- audio in ---------------------------------------------------------------------------------

    def _on_append(self, m: dict[str, Any]) -> None:
        audio = _typed(_required(m, "audio", ""), str, "audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise Refusal(
                "invalid_value", "Invalid value for 'audio': not base64.", "audio"
            ) from None
        self.rec.audio += data
        self.rec.appends += 1
        self.rec.input_ms += len(data) * 1000 / (self.fmt.rate * self.fmt.bytes_per_sample)
        self._pending += data
        step = self.fmt.ms_to_bytes(FRAME_MS)
        whole = len(self._pending) - len(self._pending) % step
        for i in range(0, whole, step):
            self._frame(bytes(self._pending[i : i + step]))
        del self._pending[:whole]

    def _frame(self, frame: bytes) -> None:
        """One 10 ms frame of input: the VAD, then the output it pays for."""
        pcm = g711.decode(frame, self.fmt.encoding).tobytes() if self.fmt.is_g711 else frame
        voiced = not self.rec.muted and level_dbfs(pcm) >= self.opt.vad_threshold_dbfs
        self._start_next()
        start = self.clock_ms
        self.clock_ms += FRAME_MS
        utt = self._utt
        room = len(utt.audio) < self.fmt.ms_to_bytes(MAX_UTTERANCE_MS) if utt else True
        if voiced:
            if utt is None:
                speaking = self._reply is not None and self._reply.speaking
                utt = self._utt = _Utterance(start_ms=start, over_reply=speaking)
            utt.voiced_ms += FRAME_MS
            utt.end_ms = self.clock_ms
            utt.silence_ms = 0.0
            if room:
                utt.audio += frame
        elif utt is not None:
            utt.silence_ms += FRAME_MS
            if room and utt.silence_ms < self.opt.silence_ms:
                utt.audio += frame  # trimmed to the last voiced frame at the end
        reply = self._reply
        if reply is None:
            self._credit_ms = 0.0  # no banking while idle
        elif reply.held_at is None:
            self._credit_ms += math.inf if self.opt.speed <= 0 else self.opt.speed * FRAME_MS
        self._generate()
        if utt is not None:
            self._barge_in(utt)
            if utt.silence_ms >= self.opt.silence_ms:
                self._utt = None
                self._utterance_ended(utt)
        self._start_next()
        self._generate()  # what is left of this frame's credit (trailing silence after a yield)

    def _barge_in(self, utt: _Utterance) -> None:
        """Speech over a reply: hold the output after ``yield_ms`` of it, yield once it is a
        barge-in (``backchannel_ms``), resume if it ends first (a back-channel)."""
        if utt.voiced_ms >= self.opt.backchannel_ms:
            utt.confirmed = True
        reply = self._reply
        if not utt.over_reply or reply is None or not reply.speaking:
            return
        if utt.voiced_ms >= self.opt.yield_ms and reply.held_at is None:
            reply.held_at = self.clock_ms
        if utt.confirmed and (reply.held_at is not None or utt.silence_ms > 0):
            stopped_at = reply.held_at if reply.held_at is not None else utt.end_ms
            self.rec.yields.append((stopped_at, self._ms(reply.pos)))
            reply.speech = reply.speech[: reply.pos]
            reply.fragments.clear()
            reply.held_at = None
            utt.over_reply = False
        elif utt.silence_ms >= self.opt.silence_ms:
            reply.held_at = None  # a back-channel: carry on

    def _ms(self, n_bytes: int) -> float:
        return n_bytes * 1000 / (self.fmt.rate * self.fmt.bytes_per_sample)

    def _utterance_ended(self, utt: _Utterance) -> None:
        if utt.over_reply and not utt.confirmed:
            return  # a back-channel
        duration = utt.end_ms - utt.start_ms
        if duration < self.opt.min_speech_ms:
            return
        text = f"(you spoke for {duration / 1000:.1f} s)"
        pieces = _pieces(text, duration)
        span = duration / len(pieces)
        for i, piece in enumerate(pieces):
            self.rec.input_transcript += piece
            self._emit(
                "session.input_transcript.delta",
                delta=piece,
                start_ms=round(utt.start_ms + i * span),
                end_ms=round(utt.start_ms + (i + 1) * span),
            )
        assert self.rec.session is not None
        if self.opt.delegate_on_speech and self.rec.session["delegation"]["type"] == "client":
            delegation_id = new_id("del")
            self.rec.delegations.append(delegation_id)
            self._emit(
                "session.delegation.created",
                delegation={"id": delegation_id, "type": "delegation", "target": "client"},
                offset_ms=int(self.clock_ms),
            )
        speech = bytes(utt.audio[: self.fmt.ms_to_bytes(int(duration))])
        if self.opt.reply == "echo" and speech:
            default = f"(echoing {duration / 1000:.1f} s of your speech)"
            self._queue_reply(speech, self.opt.reply_text or default)
        else:
            default = f"(a {self.opt.tone_hz:g} Hz tone for {self.opt.tone_seconds:.1f} s)"
            self._queue_reply(self._tone(), self.opt.reply_text or default)

    # -- audio out --------------------------------------------------------------------------------

    def _tone(self) -> bytes:
        rate = self.fmt.rate
        t = np.arange(int(self.opt.tone_seconds * rate)) / rate
        pcm = (np.sin(2 * np.pi * self.opt.tone_hz * t) * 0.3 * 32767).astype(np.int16)
        return self._encode(pcm)

    def _encode(self, pcm: np.ndarray[Any, np.dtype[np.int16]]) -> bytes:
        if self.fmt.is_g711:
            return g711.encode(pcm, self.fmt.encoding)
        return pcm.astype("<i2").tobytes()

    def _queue_reply(self, speech: bytes, text: str) -> None:
        trailing = self.fmt.ms_to_bytes(self.opt.trailing_silence_ms)
        self._queue.append(_Reply(speech=speech, trailing=trailing, text=text))

    def _start_next(self) -> None:
        """Retire a finished reply; start the next queued one unless the user is speaking (a
        reply's trailing silence lasts only until then)."""
        current = self._reply
        if current is not None and not current.speaking and self._queue and self._utt is None:
            current.trailing = current.pos - len(current.speech)
        if current is not None and current.pos >= current.total:
            self._reply = current = None
        if current is None and self._queue and self._utt is None:
            reply = self._reply = self._queue.popleft()
            reply.start_ms = self.clock_ms
            speech_ms = self._ms(len(reply.speech))
            pieces = _pieces(reply.text, speech_ms) if reply.text else []
            span = speech_ms / len(pieces) if pieces else 0.0
            reply.fragments.extend((i * span, (i + 1) * span, p) for i, p in enumerate(pieces))
            self.rec.replies += 1

    def _generate(self) -> None:
        """Send the output the input clock has paid for (``self._credit_ms``), reply after
        reply; a delta is all speech or all trailing silence."""
        step = self.fmt.ms_to_bytes(self.opt.delta_ms)
        while True:
            self._start_next()
            reply = self._reply
            if reply is None or reply.held_at is not None:
                return
            boundary = len(reply.speech) if reply.speaking else reply.total
            size = min(step, boundary - reply.pos)
            chunk_ms = self._ms(size)
            if self._credit_ms < chunk_ms:
                return
            self._credit_ms -= chunk_ms
            offset = self._ms(reply.pos)
            while reply.fragments and reply.fragments[0][0] < offset + chunk_ms:
                begin, end, piece = reply.fragments.popleft()
                self.rec.output_transcript += piece
                self._emit(
                    "session.output_transcript.delta",
                    delta=piece,
                    start_ms=round(reply.start_ms + begin),
                    end_ms=round(reply.start_ms + end),
                )
            self._send(
                {
                    "type": "session.output_audio.delta",
                    "delta": base64.b64encode(self._slice(reply, size)).decode(),
                }
            )
            reply.pos += size
            self.rec.output_ms_generated += chunk_ms

    def _slice(self, reply: _Reply, size: int) -> bytes:
        speech = reply.speech[reply.pos : reply.pos + size]
        if len(speech) == size:
            return speech
        fill = g711.silence_byte(self.fmt.encoding) if self.fmt.is_g711 else 0
        return speech + bytes([fill]) * (size - len(speech))

"""The GPT-Live translator from literal JSON: every server event it handles, every command it
sends (judged by the openai SDK's ``openai.types.live`` client events), and the local barge-in
watch."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.audio.format import PCM16_24K, PCMU_8K
from bridge.audio.playout import Playback
from bridge.core import events as ev
from bridge.core.pricing import price
from bridge.core.session_config import SessionConfig
from bridge.providers.gpt_live_protocol import BargeIn, GptLiveProtocol, level_dbfs
from tests.gpt_live_types import check_gpt_live_client_event
from tests.test_fuzz import mutated


def proto(**config: Any) -> GptLiveProtocol:
    return GptLiveProtocol("gpt-live-1", SessionConfig().merged(config))


def feed(p: GptLiveProtocol, *messages: dict[str, Any]) -> list[ev.Event]:
    out: list[ev.Event] = []
    for m in messages:
        events, _ = p.receive(json.dumps(m))
        out += events
    return out


def judged(*messages: dict[str, Any]) -> list[dict[str, Any]]:
    for message in messages:
        check_gpt_live_client_event(message)
    return list(messages)


STARTED = {"type": "session.started", "event_id": "e1", "session": {"id": "live_1"}}
LOUD = base64.b64encode(
    (np.sin(np.arange(2400) / 3) * 10000).astype("<i2").tobytes()
).decode()  # 100 ms at 24 kHz


def test_session_start_is_strict_and_carries_the_conversation() -> None:
    p = proto(instructions="Be brief.", voice="cedar")
    (start,) = judged(p.start())
    assert start["session"] == {
        "model": "gpt-live-1",
        "instructions": "Be brief.",
        "audio": {"format": {"type": "audio/pcm", "rate": 24000}, "output": {"voice": "cedar"}},
    }
    assert feed(p, STARTED) == [ev.Open()]
    feed(
        p,
        {"type": "session.input_transcript.delta", "event_id": "a", "delta": "Hi", "start_ms": 0,
         "end_ms": 200},
        {"type": "session.output_transcript.delta", "event_id": "b", "delta": "Hello!",
         "start_ms": 300, "end_ms": 600},
    )  # fmt: skip
    assert p.quiet() == [ev.Transcript("assistant", "Hello!", True)]
    p.fmt = PCMU_8K
    (renewed,) = judged(p.start())  # a new session after expiry: the transcript as input
    assert renewed["session"]["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}
    assert renewed["session"]["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello!"}],
        },
    ]
    assert feed(p, STARTED) == []  # open once per call, not per session


def test_audio_transcripts_and_reply_boundaries() -> None:
    p = proto()
    feed(p, STARTED)
    events = feed(
        p,
        {"type": "session.output_audio.delta", "delta": LOUD},
        {"type": "session.output_transcript.delta", "event_id": "o", "delta": "We close ",
         "start_ms": 0, "end_ms": 200},
        {"type": "session.output_transcript.delta", "event_id": "o2", "delta": "at nine.",
         "start_ms": 200, "end_ms": 400},
        {"type": "session.input_transcript.delta", "event_id": "i", "delta": "Thanks",
         "start_ms": 500, "end_ms": 700},
    )  # fmt: skip
    audio = events[0]
    assert isinstance(audio, ev.AudioOut) and audio.rate == 24000 and len(audio.pcm) == 4800
    assert events[1:] == [
        ev.Transcript("assistant", "We close ", False),
        ev.Transcript("assistant", "at nine.", False),
        ev.Transcript("assistant", "We close at nine.", True),  # the speaker changed
        ev.Transcript("user", "Thanks", False),
    ]
    done = p.quiet()
    assert done == [ev.AudioDone(audio.item_id), ev.TurnComplete()]  # the user's stays open
    (later,) = feed(p, {"type": "session.output_audio.delta", "delta": LOUD})
    assert isinstance(later, ev.AudioOut) and later.item_id != audio.item_id
    assert p.quiet()[-1] == ev.TurnComplete()
    assert p.quiet() == []  # nothing new since


def test_usage_is_cumulative_and_never_counted_twice() -> None:
    p = proto()
    feed(p, STARTED)
    usage = [
        e
        for e in feed(
            p,
            {"type": "session.usage.updated", "event_id": "u1", "usage": {"seconds": 10.0}},
            {"type": "session.usage.updated", "event_id": "u2", "usage": {"seconds": 10.0}},
            {"type": "session.usage.updated", "event_id": "u3", "usage": {"seconds": 25.5}},
            {"type": "session.usage.updated", "event_id": "u4", "usage": {"seconds": "x"}},
            {"type": "session.usage.updated", "event_id": "u5", "usage": {"seconds": 1e400}},
        )
        if isinstance(e, ev.Usage)
    ]
    assert [u.usage for u in usage] == [
        {"seconds": 10.0, "billed_seconds": 10.0},
        {"seconds": 25.5, "billed_seconds": 15.5},
    ]
    costs = [price("gpt-live", "gpt-live-1", u.usage) for u in usage]
    assert sum(c for c in costs if c is not None) == pytest.approx(25.5 * 0.05 / 60)
    # A renewed session counts from zero; the call's total goes on.
    p.start()
    feed(p, STARTED)
    (u,) = feed(p, {"type": "session.closed", "event_id": "c", "reason": "close_requested",
                    "usage": {"seconds": 4.5}, "session": {}})[:1]  # fmt: skip
    assert isinstance(u, ev.Usage) and u.usage == {"seconds": 30.0, "billed_seconds": 4.5}


def test_closes_errors_and_delegations() -> None:
    p = proto()
    feed(p, STARTED)
    expired = feed(p, {"type": "session.closed", "event_id": "c", "reason": "expired",
                       "session": {}, "usage": {"seconds": 1.0}})  # fmt: skip
    assert p.conn.expired and not any(isinstance(e, ev.Error) for e in expired)
    p.start()
    feed(p, STARTED)
    (content,) = [
        e
        for e in feed(p, {"type": "session.closed", "event_id": "c", "reason": "content"})
        if isinstance(e, ev.Error)
    ]
    assert content.fatal and content.code == "provider_content_filter"

    p = proto()
    p.start()
    refusal = {"type": "error", "event_id": "e", "error": {"type": "invalid_request_error",
               "code": "unknown_parameter", "message": "Unknown parameter: 'session.voice'.",
               "param": "session.voice"}}  # fmt: skip
    (error,) = feed(p, refusal)
    assert isinstance(error, ev.Error) and error.fatal and error.param == "session.voice"
    feed(p, STARTED)
    (later,) = feed(p, {**refusal, "error": {**refusal["error"], "code": "rate_limited"}})
    assert isinstance(later, ev.Error) and not later.fatal  # a running session goes on

    events, replies = p.receive(json.dumps({"type": "session.delegation.created",
        "event_id": "d", "offset_ms": 3600,
        "delegation": {"id": "del_1", "type": "delegation", "target": "client"}}))  # fmt: skip
    assert events == []
    (answer,) = judged(*replies)
    assert answer["type"] == "session.commentary.append" and answer["delegation_id"] == "del_1"
    for unknown in ('{"type":"future.event"}', "not json", "[]", '{"type": 5}'):
        assert p.receive(unknown) == ([], [])


def test_commands_validate_against_the_sdk() -> None:
    p = proto(instructions="Be brief.")
    feed(p, STARTED)
    judged(p.append_audio(b"\x00\x01" * 480), p.user_text("What time is it?"), p.close())
    messages, notices = p.update(p.config.merged({"instructions": "Be a pirate.", "voice": "ash"}))
    (append,) = judged(*messages)
    assert append["type"] == "session.instructions.append"
    assert append["content"] == "Be a pirate." and append["delegation_id"] is None
    (notice,) = notices
    assert notice.code == "voice_locked" and p.config.voice is None
    feed(p, {"type": "session.output_audio.delta", "delta": LOUD})
    feed(p, {"type": "session.output_transcript.delta", "event_id": "o",
             "delta": "One two three four", "start_ms": 0, "end_ms": 400})  # fmt: skip
    (heard,) = judged(p.heard(Playback("live_reply_1", 50)))  # half of the 100 ms played
    assert heard["type"] == "session.thinking.append" and '"One two"' in heard["content"]
    assert p.heard(Playback("live_reply_0", 50)) is None  # an older reply: nothing to say


def test_barge_in_waits_for_the_model_to_go_quiet_and_ignores_backchannels() -> None:
    watch = BargeIn(min_speech_ms=250, quiet_ms=200)
    for t in range(0, 3000, 20):  # the model speaks for 3 s
        watch.model_audio(-20.0, t)
    # A 200 ms back-channel at 1 s, while the model goes on: no flush.
    for t in range(1000, 1200, 20):
        watch.user_audio(-20.0, t)
        assert not watch.due(t)
    for t in range(1200, 1600, 20):
        watch.user_audio(-80.0, t)
        assert not watch.due(t)
    # The user talks from 2.5 s; the model yields at 3 s: flush 200 ms later, once.
    fired = [t for t in range(2500, 4000, 20) if (watch.user_audio(-20.0, t), watch.due(t))[1]]
    assert fired == [2980 + 200]  # the last loud output arrived at 2 980 ms


def test_levels() -> None:
    assert level_dbfs(b"\0" * 960, PCM16_24K) == -120.0
    assert level_dbfs(base64.b64decode(LOUD), PCM16_24K) > -20
    assert level_dbfs(bytes([0xFF]) * 160, PCMU_8K) < -60


SERVER_CORPUS: list[dict[str, Any]] = [
    STARTED,
    {"type": "session.output_audio.delta", "delta": LOUD},
    {"type": "session.input_transcript.delta", "event_id": "i", "delta": "hi", "start_ms": 0,
     "end_ms": 200},
    {"type": "session.output_transcript.delta", "event_id": "o", "delta": "yo", "start_ms": 0,
     "end_ms": 200},
    {"type": "session.usage.updated", "event_id": "u", "usage": {"seconds": 3.5}},
    {"type": "session.closed", "event_id": "c", "reason": "expired", "usage": {"seconds": 4}},
    {"type": "session.delegation.created", "event_id": "d", "offset_ms": 1,
     "delegation": {"id": "del_1", "type": "delegation", "target": "client"}},
    {"type": "error", "event_id": "e", "error": {"type": "invalid_request_error",
     "code": "unknown_parameter", "message": "m", "param": "session.x"}},
]  # fmt: skip


@given(frames=st.lists(mutated(SERVER_CORPUS), min_size=1, max_size=6))
def test_any_server_frames_translate_to_events_and_valid_replies(frames: list[Any]) -> None:
    """GPT-Live's frames are outside input: whatever arrives, the translator returns neutral
    events the call can send on, and only replies the SDK's client types accept."""
    p = proto()
    p.start()
    for frame in frames:
        events, replies = p.receive(frame)
        judged(*replies)
        for event in events:
            wire = ev.to_wire(event)
            if wire is not None:
                json.dumps(wire, allow_nan=False)
    for usage in (e for e in events if isinstance(e, ev.Usage)):
        assert usage.usage["billed_seconds"] >= 0
    p.quiet()
    judged(p.start())

"""The OpenAI translator from literal JSON: every server event it handles, every command."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from bridge.audio.format import PCM16_24K, PCMU_8K
from bridge.audio.playout import Playback
from bridge.core import events as ev
from bridge.core.pricing import price
from bridge.core.session_config import SessionConfig
from bridge.providers.openai_protocol import OpenAIRealtimeProtocol
from tests.sdk_types import check_openai_client_event

B64_100MS = base64.b64encode(b"\x01\x00" * 2400).decode()  # 100 ms of PCM16 at 24 kHz


def proto(model: str = "gpt-realtime-2.1", **config: Any) -> OpenAIRealtimeProtocol:
    return OpenAIRealtimeProtocol(model, SessionConfig().merged(config))


def feed(p: OpenAIRealtimeProtocol, *messages: str) -> list[ev.Event]:
    out: list[ev.Event] = []
    for m in messages:
        out.extend(p.receive(m))
    return out


def judged(*messages: dict[str, Any]) -> list[dict[str, Any]]:
    for message in messages:
        check_openai_client_event(message)
    return list(messages)


def test_session_updated_opens_once_across_connections() -> None:
    p = proto()
    assert feed(p, '{"type":"session.created","event_id":"e1","session":{}}') == []
    assert feed(p, '{"type":"session.updated","event_id":"e2","session":{}}') == [ev.Open()]
    p.new_connection()
    assert feed(p, '{"type":"session.updated","event_id":"e3","session":{}}') == []
    assert p.conn.configured


def test_vad_events() -> None:
    p = proto()
    started = (
        '{"type":"input_audio_buffer.speech_started","audio_start_ms":1236,"item_id":"item_U"}'
    )
    stopped = '{"type":"input_audio_buffer.speech_stopped","audio_end_ms":3808,"item_id":"item_U"}'
    assert feed(p, started) == [ev.SpeechStarted()]
    assert not p.at_turn_boundary
    assert feed(p, stopped) == [ev.SpeechStopped()]
    assert p.at_turn_boundary


def test_a_voice_turn_in_ga_order() -> None:
    p = proto()
    where = '"response_id":"resp_1","item_id":"item_A","output_index":0,"content_index":0'
    events = feed(
        p,
        '{"type":"input_audio_buffer.committed","previous_item_id":null,"item_id":"item_U"}',
        '{"type":"conversation.item.added","item":{"id":"item_U","type":"message"}}',
        '{"type":"conversation.item.done","item":{"id":"item_U","type":"message"}}',
        '{"type":"conversation.item.input_audio_transcription.delta","item_id":"item_U",'
        '"content_index":0,"delta":"Hey","obfuscation":"x"}',
        '{"type":"conversation.item.input_audio_transcription.completed","item_id":"item_U",'
        '"content_index":0,"transcript":"Hey there"}',
        '{"type":"response.created","response":{"id":"resp_1","status":"in_progress"}}',
        '{"type":"response.output_item.added","response_id":"resp_1","output_index":0,"item":{}}',
        '{"type":"response.content_part.added",' + where + ',"part":{"type":"audio"}}',
        '{"type":"response.output_audio_transcript.delta",' + where + ',"delta":"Hi"}',
        '{"type":"response.output_audio.delta",' + where + ',"delta":"' + B64_100MS + '"}',
        '{"type":"response.output_audio.done",' + where + "}",
        '{"type":"response.output_audio_transcript.done",' + where + ',"transcript":"Hi!"}',
        '{"type":"response.content_part.done",' + where + ',"part":{"type":"audio"}}',
        '{"type":"response.output_item.done","response_id":"resp_1","output_index":0,"item":{}}',
        '{"type":"rate_limits.updated","rate_limits":[]}',
    )
    assert events[0] == ev.Transcript("user", "Hey", final=False)
    assert events[1] == ev.Transcript("user", "Hey there", final=True)
    assert events[2] == ev.Transcript("assistant", "Hi", final=False)
    audio = events[3]
    assert isinstance(audio, ev.AudioOut)
    assert (audio.item_id, audio.rate, len(audio.pcm)) == ("item_A", 24000, 4800)
    assert events[4] == ev.AudioDone("item_A")
    assert events[5] == ev.Transcript("assistant", "Hi!", final=True)
    assert len(events) == 6
    assert not p.at_turn_boundary  # the response is still open
    usage = {
        "total_tokens": 320,
        "input_tokens": 132,
        "output_tokens": 188,
        "input_token_details": {
            "text_tokens": 59,
            "audio_tokens": 73,
            "image_tokens": 0,
            "cached_tokens": 64,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 64, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": 41, "audio_tokens": 147},
    }
    done = json.dumps(
        {"type": "response.done", "response": {"status": "completed", "usage": usage}}
    )
    turn, cost = feed(p, done)
    assert turn == ev.TurnComplete()
    assert isinstance(cost, ev.Usage) and cost.usage == usage
    # 59 text * 4 + 9 audio * 32 + 64 cached audio * 0.4 + 41 * 24 + 147 * 64 (per 1M)
    assert cost.cost_usd is None  # the conversation prices it (bridge.core.pricing)
    expected = (59 * 4 + 9 * 32 + 64 * 0.4 + 41 * 24 + 147 * 64) / 1e6
    assert price("openai", "gpt-realtime-2.1", usage) == pytest.approx(expected)
    assert p.at_turn_boundary
    assert p.unknown_events == {}
    assert p.history == [("user", "Hey there"), ("assistant", "Hi!")]


def test_text_output() -> None:
    p = proto(output_modalities=["text"])
    where = '"response_id":"r","item_id":"item_T","output_index":0,"content_index":0'
    events = feed(
        p,
        '{"type":"response.output_text.delta",' + where + ',"delta":"Sure, "}',
        '{"type":"response.output_text.delta",' + where + ',"delta":"yes."}',
        '{"type":"response.output_text.done",' + where + ',"text":"Sure, yes."}',
    )
    assert events == [ev.TextDelta("Sure, "), ev.TextDelta("yes.")]
    assert p.history == [("assistant", "Sure, yes.")]


def test_unknown_and_malformed_messages_are_counted_not_fatal() -> None:
    p = proto()
    assert feed(p, '{"type":"brand.new.event"}', "not json", "[1]", '{"no":"type"}') == []
    assert p.unknown_events == {"brand.new.event": 1, "<invalid json>": 1, "<no type>": 2}
    bad = '{"type":"response.output_audio.delta","item_id":"i","delta":"***"}'
    assert feed(p, bad) == []


@pytest.mark.parametrize(
    "code, fatal",
    [
        ("invalid_api_key", True),
        ("insufficient_quota", True),
        ("server_error", False),
        ("unknown_parameter", False),
    ],
)
def test_errors_keep_code_and_message(code: str, fatal: bool) -> None:
    p = proto()
    message = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": "Something.",
            "param": None,
            "event_id": "evt_1",
        },
    }
    assert feed(p, json.dumps(message)) == [ev.Error(code, "Something.", fatal=fatal)]
    assert (p.conn.fatal is not None) == fatal


def test_benign_and_expiry_errors() -> None:
    p = proto()
    for code in ("response_cancel_not_active", "conversation_already_has_active_response"):
        assert feed(p, json.dumps({"type": "error", "error": {"code": code, "message": "m"}})) == []
    expired = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": "session_expired",
            "message": "Your session hit the maximum duration of 60 minutes.",
        },
    }
    assert feed(p, json.dumps(expired)) == []
    assert p.conn.expired


def test_ga_session_update_carries_the_configuration() -> None:
    p = proto(
        instructions="Be brief.",
        voice="marin",
        turn_detection={"type": "semantic_vad", "eagerness": "low"},
    )
    (message,) = judged(p.session_update())
    assert message["type"] == "session.update" and message["event_id"]
    s = message["session"]
    assert s == {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": "Be brief.",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "turn_detection": {"type": "semantic_vad", "eagerness": "low"},
                "transcription": {"model": "gpt-4o-mini-transcribe"},
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
        },
    }
    p.input_format = p.output_format = PCMU_8K
    s = p.session_update(
        SessionConfig(
            turn_detection=SessionConfig().turn_detection.from_json(None),
            input_transcription=False,
            output_modalities=("text",),
        )
    )
    s = judged(s)[0]["session"]
    assert s["audio"]["input"] == {
        "format": {"type": "audio/pcmu"},
        "turn_detection": None,
        "transcription": None,
    }
    assert s["output_modalities"] == ["text"]
    assert "instructions" not in s


def test_append_and_user_text() -> None:
    p = proto()
    assert p.append_audio(b"\x01\x02") == {"type": "input_audio_buffer.append", "audio": "AQI="}
    create, respond = judged(*p.user_text("hello"))
    assert create["type"] == "conversation.item.create"
    assert create["item"] == {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "hello"}],
    }
    assert respond["type"] == "response.create"
    assert p.history == [("user", "hello")]


def test_truncate_uses_played_ms_clamped_to_generated() -> None:
    p = proto()
    where = '"response_id":"r","item_id":"item_A","output_index":0,"content_index":0'
    for _ in range(3):  # 300 ms generated
        feed(p, '{"type":"response.output_audio.delta",' + where + ',"delta":"' + B64_100MS + '"}')
    feed(
        p,
        '{"type":"response.output_audio_transcript.done",'
        + where
        + ',"transcript":"one two three four"}',
    )
    assert p.truncate(None) is None
    assert p.truncate(Playback("item_A", 0)) is None
    assert p.truncate(Playback("item_other", 100)) is None  # not generated on this socket
    message = p.truncate(Playback("item_A", 150))
    assert message is not None
    judged(message)
    assert {k: message[k] for k in ("type", "item_id", "content_index", "audio_end_ms")} == {
        "type": "conversation.item.truncate",
        "item_id": "item_A",
        "content_index": 0,
        "audio_end_ms": 150,
    }
    assert p.history == [("assistant", "one two…")]  # only what was heard is carried over
    clamped = p.truncate(Playback("item_A", 900))
    assert clamped is not None and clamped["audio_end_ms"] == 300
    # A rejected truncate is counted, never fatal, never shown to the client.
    reject = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": "invalid_value",
            "message": "Audio content of 300ms is already shorter than 900ms",
            "param": "audio_end_ms",
            "event_id": clamped["event_id"],
        },
    }
    assert feed(p, json.dumps(reject)) == []
    assert p.truncate_rejections == 1 and p.conn.fatal is None


def test_context_messages_replay_the_conversation_as_text() -> None:
    p = proto()
    p.user_text("What colour is the sky?")
    feed(p, '{"type":"response.output_text.done","item_id":"i","text":"Blue."}')
    messages = p.context_messages()
    assert [m["item"]["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["item"]["content"] == [{"type": "output_text", "text": "Blue."}]
    for message in messages:
        check_openai_client_event(message)


def test_a_typed_message_during_a_reply_is_answered_after_it() -> None:
    p = proto()
    feed(p, '{"type":"response.created","response":{"id":"r1"}}')
    assert p.user_text("and also?") == []  # a second response.create would be refused
    assert p.user_text("and this") == []
    assert p.queued_texts == 2
    events = feed(p, '{"type":"response.done","response":{"status":"completed"}}')
    assert events == [ev.TurnComplete()]
    *items, create = judged(*p.take_outbox())
    assert [i["item"]["content"][0]["text"] for i in items] == ["and also?", "and this"]
    assert create["type"] == "response.create"
    assert not p.at_turn_boundary  # our response is on its way
    assert p.user_text("third") == []  # still busy until that response is done
    assert p.take_outbox() == []


def test_a_reply_that_collides_with_a_vad_reply_is_asked_again() -> None:
    p = proto()
    _create, respond = p.user_text("hi")
    collision = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": "conversation_already_has_active_response",
            "message": "Conversation already has an active response in progress: resp_1.",
            "param": None,
            "event_id": respond["event_id"],
        },
    }
    assert feed(p, json.dumps(collision)) == []
    feed(p, '{"type":"response.done","response":{"status":"completed"}}')
    (again,) = judged(*p.take_outbox())
    assert again["type"] == "response.create"


def test_the_voice_is_kept_once_audio_was_produced() -> None:
    p = proto(voice="marin", instructions="Be brief.")
    messages, notices = p.update(p.config.merged({"voice": "cedar"}))
    assert judged(*messages)[0]["session"]["audio"]["output"]["voice"] == "cedar"
    assert notices == []
    where = '"response_id":"r","item_id":"item_A","output_index":0,"content_index":0'
    feed(p, '{"type":"response.output_audio.delta",' + where + ',"delta":"' + B64_100MS + '"}')
    messages, notices = p.update(p.config.merged({"voice": "ash", "instructions": "Be kind."}))
    (update,) = judged(*messages)
    assert update["session"]["audio"]["output"]["voice"] == "cedar"
    assert update["session"]["instructions"] == "Be kind."  # the rest still applies
    (notice,) = notices
    assert isinstance(notice, ev.Error) and notice.code == "voice_locked" and not notice.fatal
    assert p.config.voice == "cedar" and p.config.instructions == "Be kind."
    p.new_connection()  # a new session may take a new voice again
    messages, notices = p.update(p.config.merged({"voice": "ash"}))
    assert notices == [] and messages[0]["session"]["audio"]["output"]["voice"] == "ash"


def test_a_refused_session_update_is_reported() -> None:
    p = proto()
    first = p.new_connection()[0]
    refusal = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": "unknown_parameter",
            "message": "Unknown parameter: 'session.audio.input.transcription.model'.",
            "param": "session.audio.input.transcription.model",
            "event_id": first["event_id"],
        },
    }
    (error,) = feed(p, json.dumps(refusal))
    assert isinstance(error, ev.Error) and error.fatal and error.code == "invalid_session"
    assert "Unknown parameter" in error.message and p.conn.fatal is error
    p = proto()
    p.new_connection()
    feed(p, '{"type":"session.updated","session":{}}')
    later, _ = p.update(p.config.merged({"instructions": "x"}))
    refusal["error"]["event_id"] = later[0]["event_id"]
    (error,) = feed(p, json.dumps(refusal))
    assert isinstance(error, ev.Error) and not error.fatal and p.conn.fatal is None


def test_the_transcription_model_is_a_setting() -> None:
    p = OpenAIRealtimeProtocol(
        "gpt-realtime-2.1", SessionConfig(), transcription_model="gpt-live-transcribe"
    )
    (update,) = judged(p.session_update())
    assert update["session"]["audio"]["input"]["transcription"] == {"model": "gpt-live-transcribe"}


def test_what_was_queued_for_a_dropped_socket_reaches_the_new_session() -> None:
    p = proto()
    p.new_connection()
    feed(p, '{"type":"session.updated","session":{}}')
    # Queued while the socket was already gone: audio, a commit, a typed message, an update.
    append = p.append_audio(b"\x01\x00" * 2400)
    commit = p.commit()
    text = p.user_text("hello")
    update, _ = p.update(p.config.merged({"instructions": "x"}))
    relayed = p.relay({"type": "conversation.item.create", "event_id": "client_1", "item": {}})
    unsent = [append, *commit, *text, *update, relayed]
    setup = judged(*p.new_connection())
    carried = p.carried_over(unsent, setup)
    # The setup answers the typed message (it was waiting for the commit's reply); the
    # audio, the commit and the client's own item still go, and the commit's reply is asked
    # for once that one is done; the old update is in the setup's session.update.
    assert [m["type"] for m in setup[-2:]] == ["conversation.item.create", "response.create"]
    assert "hello" in json.dumps(setup[-2])
    assert setup[0]["session"]["instructions"] == "x"
    assert carried == [append, commit[0], relayed]
    assert p.conn.response_requested
    assert p.user_text("again") == []  # waits for the reply
    done = {"type": "response.done", "response": {"id": "r1", "status": "completed"}}
    feed(p, json.dumps({"type": "response.created", "response": {"id": "r1"}}), json.dumps(done))
    assert [m["type"] for m in p.take_outbox()][-1] == "response.create"
    # Carrying is idempotent: a second failed attempt carries the same.
    assert p.carried_over(carried, p.new_connection()) == carried


def test_a_reply_asked_for_on_a_dropped_socket_is_asked_for_again() -> None:
    p = proto()
    p.new_connection()
    feed(p, '{"type":"session.updated","session":{}}')
    unsent = [p.append_audio(b"\x01\x00" * 2400), *p.commit()]
    setup = p.new_connection()
    assert p.carried_over(unsent, setup) == unsent
    assert p.conn.response_requested


def test_audio_held_for_a_new_socket_is_bounded_by_duration_not_chunks() -> None:
    """5 ms chunks (a burst) and one 4 s chunk (the SDK) are held alike: up to
    ``audio_queue_ms`` of audio, the oldest dropped first."""
    from bridge.providers.openai import OpenAIOptions, OpenAIProvider

    provider = OpenAIProvider("gpt-realtime-2.1", SessionConfig(), OpenAIOptions(api_key="k"))
    chunk = bytes(PCM16_24K.ms_to_bytes(5))
    for _ in range(800):  # 4 s in 800 chunks
        provider.send_audio(chunk)
    assert provider.dropped_audio_chunks == 0
    provider.send_audio(bytes(PCM16_24K.ms_to_bytes(4000)))  # 8 s: the oldest 3 s go
    assert provider.dropped_audio_chunks == 600
    provider.configure_audio("pcmu")  # 8 bytes a millisecond: the bound follows the format
    assert provider._input_bytes_per_ms() == 8

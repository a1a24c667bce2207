"""The Gemini Live translator from literal JSON; every message it writes is judged by
google-genai's types and Developer-API converters."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from bridge.core import events as ev
from bridge.core.pricing import price
from bridge.core.session_config import SessionConfig
from bridge.providers.gemini_protocol import GeminiLiveProtocol
from tests.sdk_types import SchemaError, check_gemini_client_message, check_gemini_server_message

AUDIO = base64.b64encode(b"\x01\x00" * 960).decode()  # 40 ms at 24 kHz
NATIVE_2_5 = "gemini-2.5-flash-native-audio-preview-12-2025"


def proto(model: str = "gemini-3.8-live", overlap_ms: int = 100, **config: Any) -> Any:
    return GeminiLiveProtocol(model, SessionConfig().merged(config), overlap_ms=overlap_ms)


def judged(message: dict[str, Any]) -> dict[str, Any]:
    check_gemini_client_message(message)
    return message


def feed(p: GeminiLiveProtocol, *messages: Any) -> list[ev.Event]:
    out: list[ev.Event] = []
    for m in messages:
        check_gemini_server_message(m)
        out.extend(p.receive(json.dumps(m).encode()))
    return out


def audio_part(data: str = AUDIO) -> dict[str, Any]:
    return {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": data}}


def test_setup_for_3_8_live() -> None:
    p = proto(
        instructions="Hi.",
        voice="Kore",
        turn_detection={"type": "server_vad", "silence_duration_ms": 400},
        input_transcription=False,
    )
    setup = judged(p.setup())["setup"]
    assert setup["model"] == "models/gemini-3.8-live"
    assert setup["generationConfig"] == {
        "responseModalities": ["AUDIO"],
        "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}},
    }
    assert setup["realtimeInputConfig"] == {
        "automaticActivityDetection": {"disabled": False, "silenceDurationMs": 400}
    }
    assert "inputAudioTranscription" not in setup and setup["outputAudioTranscription"] == {}
    assert setup["systemInstruction"] == {"parts": [{"text": "Hi."}]}
    # Developer API: never `transparent`, and an empty object (not a null handle) when fresh.
    assert setup["sessionResumption"] == {}
    p.receive('{"sessionResumptionUpdate":{"newHandle":"h1","resumable":true}}')
    assert judged(p.setup())["setup"]["sessionResumption"] == {"handle": "h1"}


def test_a_transparent_setup_is_refused_by_the_judge() -> None:
    """The judge itself can fail: google-genai refuses Vertex-only fields."""
    setup = proto().setup()
    setup["setup"]["sessionResumption"] = {"transparent": True}
    with pytest.raises(SchemaError, match="transparent"):
        check_gemini_client_message(setup)
    with pytest.raises(SchemaError, match=r"not declared|Extra inputs"):
        check_gemini_client_message({"realtimeInput": {"audio": {"data": "", "rate": 1}}})


@pytest.mark.parametrize("model", ["gemini-3.8-live", "gemini-3.1-flash-live-preview", NATIVE_2_5])
def test_text_is_never_asked_of_audio_only_models(model: str) -> None:
    p = proto(model, output_modalities=["text"])
    assert judged(p.setup())["setup"]["generationConfig"] == {"responseModalities": ["AUDIO"]}
    feed(p, {"setupComplete": {}})
    events = feed(
        p,
        {"serverContent": {"modelTurn": {"parts": [audio_part()]}}},
        {"serverContent": {"outputTranscription": {"text": " Hello"}}},
        {"serverContent": {"generationComplete": True, "turnComplete": True}},
    )
    # The audio is not played; the client gets the words as text.
    assert events == [ev.TextDelta(" Hello"), ev.AudioDone("turn_1"), ev.TurnComplete()]


def test_half_cascade_models_may_answer_in_text() -> None:
    p = proto("gemini-live-2.5-flash-preview", output_modalities=["text"], voice="Puck")
    assert judged(p.setup())["setup"]["generationConfig"] == {"responseModalities": ["TEXT"]}
    assert feed(p, {"serverContent": {"modelTurn": {"parts": [{"text": "Hi"}]}}}) == [
        ev.TextDelta("Hi")
    ]


def test_a_bundled_voice_turn_of_3_8() -> None:
    p = proto()
    assert feed(p, {"setupComplete": {}}) == [ev.Open()]
    assert feed(p, {"voiceActivity": {"type": "ACTIVITY_START", "audioOffset": "1.2s"}}) == [
        ev.SpeechStarted()
    ]
    assert not p.at_turn_boundary  # the user is speaking
    assert feed(p, {"voiceActivity": {"type": "ACTIVITY_END", "audioOffset": "2.5s"}}) == [
        ev.SpeechStopped()
    ]
    events = feed(p, {"serverContent": {"inputTranscription": {"text": "Hey"}}})
    assert events == [ev.Transcript("user", "Hey", final=False)]
    usage = {
        "promptTokenCount": 1200,
        "responseTokenCount": 60,
        "totalTokenCount": 1260,
        "promptTokensDetails": [
            {"modality": "AUDIO", "tokenCount": 1000},
            {"modality": "TEXT", "tokenCount": 200},
        ],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 60}],
    }
    # One message: two parts (audio and a thought), the transcript, the end of the turn,
    # and usage listed first: each is handled, in the protocol's order.
    bundled = {
        "usageMetadata": usage,
        "serverContent": {
            "modelTurn": {"parts": [audio_part(), {"text": "thinking...", "thought": True}]},
            "outputTranscription": {"text": " Hello"},
            "generationComplete": True,
            "turnComplete": True,
        },
    }
    events = feed(p, bundled)
    assert isinstance(events[0], ev.AudioOut)
    assert (events[0].rate, len(events[0].pcm), events[0].item_id) == (24000, 1920, "turn_1")
    assert events[1:5] == [
        ev.Transcript("assistant", " Hello", final=False),
        ev.AudioDone("turn_1"),
        ev.Transcript("user", "Hey", final=True),
        ev.Transcript("assistant", "Hello", final=True),
    ]
    assert events[5] == ev.TurnComplete()
    assert isinstance(events[6], ev.Usage) and events[6].cost_usd is None  # priced later
    expected = (200 * 0.75 + 1000 * 3 + 60 * 12) / 1e6
    assert price("gemini", p.model, events[6].usage) == pytest.approx(expected)
    assert p.at_turn_boundary and p.handle_due
    assert p.unknown_events == {}


def test_extended_thinking_is_done_only_when_idle() -> None:
    p = proto("gemini-3.8-live-extended-thinking")
    first = feed(
        p,
        {"serverContent": {"modelTurn": {"parts": [audio_part()]}}},
        {"serverContent": {"turnComplete": True, "interactionStatus": "IN_PROGRESS"}},
    )
    assert first[1:] == [ev.AudioDone("turn_1")]
    assert not p.at_turn_boundary and not p.handle_due
    second = feed(
        p,
        {"serverContent": {"modelTurn": {"parts": [audio_part()]}}},
        {"serverContent": {"turnComplete": True, "interactionStatus": "IDLE"}},
    )
    assert isinstance(second[0], ev.AudioOut) and second[0].item_id == "turn_2"
    assert second[-1] == ev.TurnComplete() and p.at_turn_boundary


def test_interrupted_go_away_tool_calls_and_unknown() -> None:
    p = proto()
    feed(p, {"serverContent": {"modelTurn": {"parts": [audio_part()]}}})
    assert feed(p, {"serverContent": {"interrupted": True}})[0] == ev.Interrupted()
    assert p.at_turn_boundary
    assert feed(p, {"goAway": {"timeLeft": "50s"}}) == []
    assert p.conn.go_away_in == 50.0
    # No tools are declared; a call is answered at once so the model never waits for us.
    feed(p, {"toolCall": {"functionCalls": [{"id": "fc_1", "name": "get_bill", "args": {}}]}})
    (answer,) = p.take_outbox()
    assert judged(answer)["toolResponse"]["functionResponses"][0]["id"] == "fc_1"
    assert p.receive('{"brandNew":{}}') == [] and p.unknown_events["brandNew"] == 1
    assert p.receive(b"\xff not json") == [] and p.unknown_events["<invalid json>"] == 1


def sent_audio(p: GeminiLiveProtocol, n: int, ms: int = 20) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        message = judged(p.audio(bytes(32 * ms)))
        p.sent(message)
        out.append(message)
    return out


def handle(p: GeminiLiveProtocol, name: str) -> None:
    feed(p, {"sessionResumptionUpdate": {"newHandle": name, "resumable": True}})


def test_a_handle_keeps_only_the_overlap_and_unfinished_text() -> None:
    p = proto(overlap_ms=100)
    p.new_connection()
    p.sent(p.setup())  # never replayed
    sent_audio(p, 10)  # 200 ms
    text = judged(p.user_text("hello"))
    p.sent(text)
    tail = sent_audio(p, 5)  # 100 ms
    feed(p, {"sessionResumptionUpdate": {"resumable": False}})
    assert p.handle is None
    handle(p, "h1")
    # Audio older than the 100 ms overlap goes; the text has no finished turn after it, so
    # the handle cannot hold it (it would have been generating): it stays.
    assert p.replay_size == 6
    later = sent_audio(p, 3)
    assert p.new_connection() == [text, *tail, *later]
    # An attempt that fails before setupComplete leaves the log for the next one.
    assert p.replay_size == 9
    assert p.new_connection() == [text, *tail, *later]
    p.set_up()
    assert p.replay_size == 0


def test_a_finished_turn_makes_a_newer_handle_due() -> None:
    p = proto(overlap_ms=40)
    handle(p, "h0")
    p.sent(judged(p.user_text("hello")))
    feed(p, {"serverContent": {"modelTurn": {"parts": [audio_part()]}}})
    sent_audio(p, 3)
    feed(p, {"serverContent": {"turnComplete": True}})
    assert p.handle_due
    after = sent_audio(p, 4)
    handle(p, "h1")
    assert not p.handle_due and p.handle == "h1"
    # The finished turn (text and all) is covered by h1: only the overlap is replayed.
    assert p.new_connection() == after[-2:]
    assert p.dropped_turns == 0


def test_resuming_before_the_due_handle_never_replays_a_finished_turn() -> None:
    p = proto(overlap_ms=40)
    handle(p, "h0")
    p.sent(judged(p.user_text("hello")))
    feed(p, {"serverContent": {"turnComplete": True}})
    after = sent_audio(p, 2)
    assert p.new_connection() == after  # not the text: it was answered
    assert p.new_connection() == after  # a second attempt: counted once, when set up
    p.set_up()
    assert p.dropped_turns == 1


def test_without_a_handle_nothing_is_replayed() -> None:
    p = proto()
    sent_audio(p, 3)
    assert p.new_connection() == []


def test_configuration_changes() -> None:
    p = proto(instructions="Be brief.")
    messages, resume = p.update(p.config.merged({"instructions": "Be a pirate."}))
    assert not resume
    assert judged(messages[0]) == {
        "contextUpdate": {"systemInstruction": {"parts": [{"text": "Be a pirate."}]}}
    }
    assert p.update(p.config.merged({"output_modalities": ["text"]})) == ([], False)
    assert p.update(p.config.merged({"voice": "Puck"})) == ([], True)
    old = proto(NATIVE_2_5, instructions="Be brief.")
    assert old.update(old.config.merged({"instructions": "Other."})) == ([], True)


def test_base64url_audio_from_the_server_is_read() -> None:
    p = proto()
    data = base64.urlsafe_b64encode(b"\xfb\xff" * 480).decode()
    (audio,) = feed(p, {"serverContent": {"modelTurn": {"parts": [audio_part(data)]}}})
    assert isinstance(audio, ev.AudioOut) and audio.pcm == b"\xfb\xff" * 480

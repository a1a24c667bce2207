"""The Gemini Live translator from literal JSON, and the emulator's protocol checks."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import websockets

from bridge import events as ev
from bridge.pricing import gemini_cost
from bridge.providers.gemini_protocol import GeminiLiveProtocol
from bridge.session_config import SessionConfig

AUDIO = base64.b64encode(b"\x01\x00" * 960).decode()  # 40 ms at 24 kHz


def proto(**config: Any) -> GeminiLiveProtocol:
    return GeminiLiveProtocol(
        "gemini-2.5-flash-native-audio-preview-12-2025", SessionConfig().merged(config)
    )


def test_setup_message() -> None:
    p = proto(
        instructions="Hi.",
        voice="Puck",
        output_modalities=["text"],
        turn_detection={"type": "none"},
        input_transcription=False,
    )
    setup = p.setup()["setup"]
    assert setup["model"] == "models/gemini-2.5-flash-native-audio-preview-12-2025"
    assert setup["generationConfig"]["responseModalities"] == ["TEXT"]
    assert setup["realtimeInputConfig"] == {"automaticActivityDetection": {"disabled": True}}
    assert "inputAudioTranscription" not in setup
    assert setup["systemInstruction"] == {"parts": [{"text": "Hi."}]}
    assert setup["sessionResumption"] == {"transparent": True}


def test_a_voice_turn() -> None:
    p = proto()
    assert p.receive(b'{"setupComplete":{}}') == [ev.Open()]
    events = p.receive(json.dumps({"serverContent": {"inputTranscription": {"text": "Hey"}}}))
    assert events == [ev.Transcript("user", "Hey", final=False)]
    audio = {
        "serverContent": {
            "modelTurn": {
                "parts": [
                    {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": AUDIO}},
                    {"text": "thinking...", "thought": True},
                ]
            }
        }
    }
    (out,) = p.receive(json.dumps(audio).encode())
    assert isinstance(out, ev.AudioOut) and (out.rate, len(out.pcm), out.item_id) == (
        24000,
        1920,
        "turn_1",
    )
    assert not p.at_turn_boundary
    said = p.receive('{"serverContent":{"outputTranscription":{"text":" Hello"}}}')
    assert said == [ev.Transcript("assistant", " Hello", final=False)]
    assert p.receive('{"serverContent":{"generationComplete":true}}') == [ev.AudioDone("turn_1")]
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
    events = p.receive(
        json.dumps({"serverContent": {"turnComplete": True}, "usageMetadata": usage})
    )
    assert events[:3] == [
        ev.Transcript("user", "Hey", final=True),
        ev.Transcript("assistant", "Hello", final=True),
        ev.TurnComplete(),
    ]
    assert isinstance(events[3], ev.Usage)
    assert events[3].cost_usd == pytest.approx((200 * 0.5 + 1000 * 3 + 60 * 12) / 1e6)
    assert p.at_turn_boundary
    assert (
        p.receive(
            '{"serverContent":{"modelTurn":{"parts":[{"inlineData":'
            '{"mimeType":"audio/pcm;rate=24000","data":"' + AUDIO + '"}}]}}}'
        )[0].item_id
        == "turn_2"
    )
    assert p.unknown_events == {}


def test_interrupted_text_go_away_and_unknown() -> None:
    p = proto()
    p.receive('{"serverContent":{"modelTurn":{"parts":[{"text":"Hi"}]}}}')
    events = p.receive('{"serverContent":{"interrupted":true}}')
    assert events[0] == ev.Interrupted()
    assert p.at_turn_boundary
    assert p.receive('{"goAway":{"timeLeft":"50s"}}') == []
    assert p.conn.go_away_in == 50.0
    assert p.receive('{"toolCall":{"functionCalls":[]}}') == []
    assert p.receive('{"brandNew":{}}') == [] and p.unknown_events["brandNew"] == 1
    assert p.receive(b"\xff not json") == [] and p.unknown_events["<invalid json>"] == 1
    assert p.receive('{"voiceActivity":{"voiceActivityType":"ACTIVITY_START"}}') == [
        ev.SpeechStarted()
    ]


def test_resumption_keeps_unconfirmed_messages_for_replay() -> None:
    p = proto()
    p.new_connection()
    p.sent(p.setup())  # index 0, never replayed
    messages = [p.audio(bytes([i]) * 4) for i in range(5)]
    for m in messages:
        p.sent(m)  # indices 1..5
    assert p.unconfirmed == 5
    p.receive('{"sessionResumptionUpdate":{"resumable":false}}')
    assert p.handle is None and p.unconfirmed == 5
    p.receive(
        '{"sessionResumptionUpdate":{"newHandle":"h1","resumable":true,'
        '"lastConsumedClientMessageIndex":"3"}}'
    )
    assert p.handle == "h1" and p.unconfirmed == 2
    assert p.setup()["setup"]["sessionResumption"] == {"transparent": True, "handle": "h1"}
    assert p.new_connection() == messages[3:]  # replay what index 3 did not include
    assert p.unconfirmed == 0


def test_without_a_handle_nothing_is_replayed() -> None:
    p = proto()
    p.sent(p.audio(b"\x00\x00"))
    assert p.new_connection() == []


def test_gemini_prices() -> None:
    assert gemini_cost("models/gemini-9-live", {"promptTokenCount": 10}) is None
    usage = {"promptTokenCount": 100, "responseTokenCount": 10, "thoughtsTokenCount": 5}
    assert gemini_cost("gemini-2.0-flash-live-001", usage) == pytest.approx(
        (100 * 0.35 + 15 * 1.5) / 1e6
    )


async def test_the_emulator_checks_setup_and_frames(start_bridge: Any) -> None:
    from bridge.emulators.gemini import GeminiEmulator, GeminiEmulatorOptions

    async with GeminiEmulator(GeminiEmulatorOptions(models=("gemini-ok",))) as emulator:
        url = emulator.url + "?key=k"

        async def closed_with(first: dict[str, Any]) -> tuple[int, str]:
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps(first))
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await ws.recv()
                assert info.value.rcvd is not None
                return info.value.rcvd.code, info.value.rcvd.reason

        assert (await closed_with({"realtimeInput": {}}))[0] == 1007
        code, reason = await closed_with(
            {"setup": {"model": "models/gemini-ok", "responseModalities": ["AUDIO"]}}
        )
        assert code == 1007 and 'Unknown name "responseModalities"' in reason
        code, reason = await closed_with({"setup": {"model": "models/nope"}})
        assert code == 1008 and "not found" in reason
        async with websockets.connect(url) as ws:
            # snake_case is accepted; the answer is JSON in a binary frame
            await ws.send(
                json.dumps(
                    {
                        "setup": {
                            "model": "models/gemini-ok",
                            "generation_config": {"response_modalities": ["AUDIO"]},
                        }
                    }
                )
            )
            frame = await ws.recv()
            assert isinstance(frame, bytes) and json.loads(frame) == {"setupComplete": {}}
        async with websockets.connect(emulator.url) as ws:  # no key: closed at once
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1007

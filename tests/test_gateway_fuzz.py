"""Property-based tests of the gateway's inputs: client events (sans I/O and over a live
socket) and any order of provider events through the translator. Whatever comes out must be
a server event the official SDK accepts, and responses must open and close in pairs."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.audio.format import PCM16_16K, PCM16_24K
from bridge.core import events as ev
from bridge.core.session_config import SessionConfig
from bridge.protocols.openai_server import ProtocolError, parse_client_event
from bridge.server.config import GATEWAY_EVENTS
from bridge.transports.gateway.policy import GatewayPolicy
from bridge.transports.gateway.translate import Translator
from tests.sdk_types import check_openai_server_event
from tests.test_fuzz import JSON, mutated

AUDIO = base64.b64encode(bytes(4800)).decode()
CLIENT_CORPUS: list[dict[str, Any]] = [
    {"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}},
    {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "output_modalities": ["text"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                    "transcription": {"model": "whisper-1"},
                },
                "output": {"format": {"type": "audio/pcma"}, "voice": "marin"},
            },
        },
    },
    {"type": "input_audio_buffer.append", "audio": AUDIO, "event_id": "e1"},
    {"type": "input_audio_buffer.commit"},
    {"type": "input_audio_buffer.clear"},
    {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hello"}],
        },
    },
    {"type": "response.create", "response": {"output_modalities": ["audio"]}},
    {"type": "response.cancel"},
    {
        "type": "conversation.item.truncate",
        "item_id": "item_1",
        "content_index": 0,
        "audio_end_ms": 5,
    },
]


def translator() -> Translator:
    return Translator(
        model="gemini-3.8-live",
        provider="gemini",
        config=SessionConfig(voice="Puck"),
        provider_input=PCM16_16K,
        provider_output=PCM16_24K,
    )


def judged(events: list[dict[str, Any]], open_responses: set[str]) -> None:
    for event in events:
        check_openai_server_event(json.loads(json.dumps(event)))
        if event["type"] == "response.created":
            assert not open_responses, "two responses at once"
            open_responses.add(event["response"]["id"])
        elif event["type"] == "response.done":
            open_responses.remove(event["response"]["id"])
        elif event["type"].startswith("response.") and "response_id" in event:
            assert event["response_id"] in open_responses, event["type"]


@given(frames=st.lists(mutated(CLIENT_CORPUS), min_size=1, max_size=4))
def test_client_events_through_policy_and_translator(frames: list[Any]) -> None:
    """Any client input: a ProtocolError or SDK-valid events, never anything else."""
    t = translator()
    policy = GatewayPolicy.of(GATEWAY_EVENTS, lock_instructions=True)
    open_responses: set[str] = set()
    judged(t.start(), open_responses)
    for frame in frames:
        try:
            actions = t.client_event(policy.admit(parse_client_event(frame)))
        except ProtocolError as exc:
            assert exc.code and exc.message
            continue
        judged(actions.events, open_responses)
        assert all(isinstance(a, bytes) and len(a) % 2 == 0 for a in actions.audio)


PROVIDER_EVENTS = st.sampled_from(
    [
        ev.Open(),
        ev.SpeechStarted(),
        ev.SpeechStopped(),
        ev.AudioOut(bytes(960), 24000, "turn_1"),
        ev.AudioDone("turn_1"),
        ev.TextDelta("Hi"),
        ev.Transcript("assistant", " there", final=False),
        ev.Transcript("assistant", "Hi there", final=True),
        ev.Transcript("user", "hello", final=False),
        ev.Transcript("user", "hello", final=True),
        ev.Interrupted(),
        ev.TurnComplete(),
        ev.Usage({"promptTokenCount": 7, "responseTokenCount": 3, "totalTokenCount": 10}),
        ev.Usage({"input_audio_seconds": 1.0}),
        ev.Error("provider_error", "oops"),
        "settle",
        "cancel",
        "ask",
    ]
)


@given(steps=st.lists(PROVIDER_EVENTS, max_size=40))
def test_any_order_of_provider_events_gives_a_valid_openai_stream(steps: list[Any]) -> None:
    t = translator()
    open_responses: set[str] = set()
    judged(t.start(), open_responses)
    for step in steps:
        if step == "settle":
            judged(t.settle(), open_responses)
        elif step in ("cancel", "ask"):
            message = (
                {"type": "response.cancel"}
                if step == "cancel"
                else CLIENT_CORPUS[5]  # a user message
            )
            try:
                judged(t.client_event(message).events, open_responses)
            except ProtocolError:
                pass
        elif isinstance(step, ev.AudioOut):  # reply audio reaches the translator via the sink
            judged(t.audio_out(step.pcm), open_responses)
        else:
            judged(t.provider_event(step), open_responses)
    judged(t.settle(), open_responses)


@pytest.fixture
async def gateway_socket(bridge: Any) -> Any:
    async with bridge.http.ws_connect(f"{bridge.url}/v1/realtime?model=echo") as ws:
        assert (await ws.receive_json())["type"] == "session.created"
        yield ws


@given(message=st.one_of(JSON.map(json.dumps), mutated(CLIENT_CORPUS)))
async def test_client_events_through_a_live_gateway(
    gateway_socket: aiohttp.ClientWebSocketResponse, message: str | bytes
) -> None:
    """Each answer is an SDK-valid event and the socket still serves afterwards."""
    if isinstance(message, bytes):
        await gateway_socket.send_bytes(message)
    else:
        await gateway_socket.send_str(message)
    await gateway_socket.send_json({"type": "input_audio_buffer.clear"})
    async with asyncio.timeout(5):
        while True:
            answer = await gateway_socket.receive_json()
            check_openai_server_event(answer)
            if answer["type"] == "input_audio_buffer.cleared":
                break

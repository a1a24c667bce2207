"""The OpenAI emulator speaks the protocol a real client expects, errors included."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.peer import tone

KEY = {"Authorization": "Bearer sk-anything"}


async def recv_until(ws: Any, kind: str) -> list[dict[str, Any]]:
    seen = []
    while True:
        message = json.loads(await ws.recv())
        seen.append(message)
        if message["type"] == kind:
            return seen


async def test_connect_configure_and_validation_errors(start_openai_emulator: Any) -> None:
    emulator = await start_openai_emulator()
    async with websockets.connect(
        f"{emulator.url}?model=gpt-realtime", additional_headers=KEY
    ) as ws:
        created = json.loads(await ws.recv())
        assert created["type"] == "session.created" and created["event_id"]
        assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"

        await ws.send(
            json.dumps(
                {"type": "session.update", "session": {"type": "realtime", "instructions": "x"}}
            )
        )
        updated = json.loads(await ws.recv())
        assert updated["type"] == "session.updated"
        assert updated["session"]["instructions"] == "x"
        assert updated["session"]["audio"]["output"]["voice"] == "alloy"  # merged, full object

        cases = [
            ("not json", "invalid_event", None),
            (json.dumps({"event_id": "c1"}), "invalid_event", None),
            (json.dumps({"type": "dance", "event_id": "c2"}), "invalid_value", "type"),
            (
                json.dumps({"type": "session.update", "event_id": "c3", "session": {}}),
                "missing_required_parameter",
                "session.type",
            ),
            (
                json.dumps(
                    {
                        "type": "session.update",
                        "event_id": "c4",
                        "session": {"type": "realtime", "temperature": 0.7},
                    }
                ),
                "unknown_parameter",
                "session.temperature",
            ),
            (
                json.dumps({"type": "input_audio_buffer.append", "event_id": "c5", "audio": "%%%"}),
                "invalid_value",
                "audio",
            ),
            (
                json.dumps({"type": "input_audio_buffer.commit", "event_id": "c6"}),
                "input_audio_buffer_commit_empty",
                None,
            ),
            (
                json.dumps({"type": "response.cancel", "event_id": "c7"}),
                "response_cancel_not_active",
                None,
            ),
            (
                json.dumps(
                    {
                        "type": "conversation.item.truncate",
                        "event_id": "c8",
                        "item_id": "item_nope",
                        "content_index": 0,
                        "audio_end_ms": 10,
                    }
                ),
                "item_truncate_invalid_item_id",
                "item_id",
            ),
        ]
        for raw, code, param in cases:
            await ws.send(raw)
            error = json.loads(await ws.recv())
            assert error["type"] == "error", raw
            body = error["error"]
            assert set(body) == {"type", "code", "message", "param", "event_id"}
            assert body["type"] == "invalid_request_error"
            assert (body["code"], body["param"]) == (code, param), raw
            assert body["message"]
            sent_id = json.loads(raw).get("event_id") if raw.startswith("{") else None
            assert body["event_id"] == sent_id


async def test_voice_turn_sequence_and_truncate_validation(start_openai_emulator: Any) -> None:
    emulator = await start_openai_emulator(reply="tone", tone_seconds=0.5, speed=0)
    async with websockets.connect(emulator.url, additional_headers=KEY) as ws:
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "audio": {
                            "input": {
                                "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}
                            }
                        },
                    },
                }
            )
        )
        await ws.recv()
        speech = np.concatenate([tone(440, 0.6, 24000), np.zeros(24000, np.int16)])
        for i in range(0, speech.size, 2400):
            chunk = speech[i : i + 2400].astype("<i2").tobytes()
            await ws.send(
                json.dumps(
                    {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}
                )
            )
        seen = await recv_until(ws, "response.done")
        kinds = [m["type"] for m in seen]
        expected = [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
            "response.created",
            "response.output_item.added",
            "conversation.item.added",
            "response.content_part.added",
        ]
        assert kinds[: len(expected)] == expected
        tail = [k for k in kinds if not k.endswith(".delta")][len(expected) :]
        assert tail == [
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
        done = seen[-1]["response"]
        assert done["status"] == "completed"
        assert done["usage"]["output_token_details"]["audio_tokens"] == 10  # 500 ms at 20 tok/s
        item_id = done["output"][0]["id"]
        audio = b"".join(
            base64.b64decode(m["delta"]) for m in seen if m["type"] == "response.output_audio.delta"
        )
        assert len(audio) == 24000  # 500 ms of PCM16 at 24 kHz

        await ws.send(
            json.dumps(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": 900,
                }
            )
        )
        error = (await recv_until(ws, "error"))[-1]
        assert error["error"]["param"] == "audio_end_ms"
        assert "500ms" in error["error"]["message"]
        await ws.send(
            json.dumps(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": 250,
                }
            )
        )
        truncated = json.loads(await ws.recv())
        assert truncated["type"] == "conversation.item.truncated"
        assert truncated["audio_end_ms"] == 250


async def test_beta_interface_is_refused_like_production(start_openai_emulator: Any) -> None:
    emulator = await start_openai_emulator()
    headers = {**KEY, "OpenAI-Beta": "realtime=v1"}
    async with websockets.connect(emulator.url, additional_headers=headers) as ws:
        error = json.loads(await ws.recv())
        assert error["error"]["code"] == "beta_api_shape_disabled"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000


async def test_keys_are_checked_at_the_upgrade(start_openai_emulator: Any) -> None:
    emulator = await start_openai_emulator(api_keys=("sk-good",))
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(emulator.url, additional_headers={"Authorization": "Bearer bad"})
    assert refused.value.response.status_code == 401
    async with websockets.connect(
        emulator.url, subprotocols=["realtime", "openai-insecure-api-key.sk-good"]
    ) as ws:
        assert ws.subprotocol == "realtime"
        assert json.loads(await ws.recv())["type"] == "session.created"


async def test_text_turn_and_one_response_at_a_time(start_openai_emulator: Any) -> None:
    emulator = await start_openai_emulator(reply="text", reply_text="Hi there friend", speed=0)
    async with websockets.connect(emulator.url, additional_headers=KEY) as ws:
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "hi"}],
                    },
                }
            )
        )
        await recv_until(ws, "conversation.item.done")
        await ws.send(json.dumps({"type": "response.create"}))
        await ws.send(json.dumps({"type": "response.create", "event_id": "second"}))
        seen = await recv_until(ws, "response.done")
        errors = [m for m in seen if m["type"] == "error"]
        assert [e["error"]["code"] for e in errors] == ["conversation_already_has_active_response"]
        text = "".join(m["delta"] for m in seen if m["type"] == "response.output_text.delta")
        assert text == "Hi there friend"


async def test_items_can_be_retrieved_and_deleted(start_openai_emulator: Any) -> None:
    emulator = await start_openai_emulator(reply="text", speed=0)
    async with websockets.connect(emulator.url, additional_headers=KEY) as ws:
        await ws.recv()
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hi"}],
        }
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        added = (await recv_until(ws, "conversation.item.added"))[-1]
        item_id = added["item"]["id"]
        await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": item_id}))
        retrieved = (await recv_until(ws, "conversation.item.retrieved"))[-1]
        assert retrieved["item"]["content"] == item["content"]
        await ws.send(json.dumps({"type": "conversation.item.delete", "item_id": item_id}))
        deleted = (await recv_until(ws, "conversation.item.deleted"))[-1]
        assert deleted["item_id"] == item_id
        await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": item_id}))
        error = (await recv_until(ws, "error"))[-1]["error"]
        assert error["code"] == "item_retrieve_invalid_item_id" and error["param"] == "item_id"
        wrong = {"type": "message", "role": "assistant", "content": [{"type": "input_text"}]}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": wrong}))
        error = (await recv_until(ws, "error"))[-1]["error"]
        assert error["code"] == "invalid_value" and error["param"] == "item.content[0].type"

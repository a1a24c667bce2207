"""Client -> bridge messages on the ``events`` data channel."""

from __future__ import annotations

import json

from tests.peer import connected
from tests.support import Bridge


async def test_typed_text_gets_a_text_reply(bridge: Bridge) -> None:
    client = await connected(bridge)
    try:
        client.channel.send(json.dumps({"type": "text", "text": "hello"}))
        _, delta = await client.wait_event("text")
        assert delta["delta"] == "You said: hello"
        await client.wait_event("turnComplete")
    finally:
        await client.close()


async def test_bad_client_messages_get_error_events_and_the_call_goes_on(bridge: Bridge) -> None:
    client = await connected(bridge)
    try:
        cases = [
            ("{nope", "invalid_json"),
            (json.dumps([1]), "invalid_event"),
            (json.dumps({"type": "dance"}), "unknown_event"),
            (json.dumps({"type": "text", "text": ""}), "invalid_event"),
            (json.dumps({"type": "text", "text": "x" * 5000}), "invalid_event"),
            (json.dumps({"type": "session.update", "session": {"voice": 3}}), "invalid_session"),
            (
                json.dumps({"type": "session.update", "session": {"colour": "red"}}),
                "invalid_session",
            ),
        ]
        for message, code in cases:
            before = len(client.events)
            client.channel.send(message)
            _, error = await client.wait_event("error", after=before)
            assert error["error"]["code"] == code, (message, error)
            assert error["error"]["message"]
        assert [s["state"] for s in await bridge.sessions()] == ["active"]
    finally:
        await client.close()


async def test_session_update_is_merged_and_applied(bridge: Bridge) -> None:
    client = await connected(bridge, session={"instructions": "be brief"})
    try:
        (session,) = list(bridge.registry)
        assert session.config.instructions == "be brief"
        client.channel.send(
            json.dumps({"type": "session.update", "session": {"output_modalities": ["text"]}})
        )
        client.mic.say(440, 0.6)
        _, delta = await client.wait_event("text", timeout=10)
        assert "you spoke for" in delta["delta"]
        assert session.config.instructions == "be brief"  # merged, not replaced
        assert session.config.output_modalities == ("text",)
    finally:
        await client.close()

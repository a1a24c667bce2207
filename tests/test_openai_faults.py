"""OpenAI sessions survive drops, expiry and the session cap; fatal errors end them cleanly."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.peer import ClientPeer, connected
from tests.support import assert_ended_by_provider, wait_until


async def talk(client: ClientPeer, seconds: float = 0.8) -> None:
    """One spoken turn, waited until its usage event."""
    before = len(client.events)
    client.mic.say(440, seconds)
    client.mic.pause(0.6)
    await client.wait_event("usage", after=before, timeout=15)


def provider_of(bridge: Any) -> Any:
    (session,) = list(bridge.registry)
    return session.provider


async def sessions_opened(emulator: Any, n: int) -> bool:
    return len(emulator.sessions) >= n and bool(emulator.sessions[n - 1].received)


async def test_a_1011_close_reconnects_and_the_call_goes_on(openai_bridge: Any) -> None:
    bridge, emulator = await openai_bridge(reply="tone", tone_seconds=0.3, close_1011_after_s=0.5)
    client = await connected(bridge)
    try:
        await wait_until(lambda: sessions_opened(emulator, 2), timeout=10)
        assert emulator.sessions[0].close_code == 1011
        assert emulator.sessions[1].received[0]["type"] == "session.update"
        await talk(client)
        assert provider_of(bridge).reconnects == 1
        (described,) = await bridge.sessions()
        assert described["provider_stats"]["reconnects"] == 1
        assert "close" not in client.event_types()
        assert "error" not in client.event_types()
        assert emulator.sessions[1].audio, "audio flows to the new socket"
    finally:
        await client.close()


async def test_session_expired_rolls_over_with_the_conversation(openai_bridge: Any) -> None:
    bridge, emulator = await openai_bridge(
        reply="tone", tone_seconds=0.3, session_expired_after_s=2.5, reply_text="The sky is blue."
    )
    client = await connected(bridge)
    try:
        await talk(client)
        await wait_until(lambda: sessions_opened(emulator, 2), timeout=10)
        first, second = emulator.sessions
        assert any(e["code"] == "session_expired" for e in first.errors)
        kinds = [m["type"] for m in second.received]
        assert kinds[0] == "session.update"
        texts = [
            m["item"]["content"][0]["text"]
            for m in second.received
            if m["type"] == "conversation.item.create"
        ]
        assert "The sky is blue." in texts  # the assistant's words carried over
        assert any(t.startswith("(user audio") for t in texts)  # and the user's transcript
        await talk(client)
        assert provider_of(bridge).rollovers == 1
        assert "close" not in client.event_types()
        assert [s["state"] for s in await bridge.sessions()] == ["active"]
    finally:
        await client.close()


async def test_the_session_cap_renews_at_a_turn_boundary(openai_bridge: Any) -> None:
    bridge, emulator = await openai_bridge(
        {"openai_session_cap": 1.5}, reply="tone", tone_seconds=0.3, reply_text="Noted."
    )
    client = await connected(bridge)
    try:
        await talk(client)
        await wait_until(lambda: sessions_opened(emulator, 2), timeout=10)
        first, second = emulator.sessions
        assert first.close_code is not None  # the old socket was closed by the bridge
        assert any(
            m["item"]["content"][0]["text"] == "Noted."
            for m in second.of_type("conversation.item.create")
        )
        await talk(client)
        assert "close" not in client.event_types()
    finally:
        await client.close()


async def test_a_stalled_provider_is_detected_and_replaced(openai_bridge: Any) -> None:
    bridge, emulator = await openai_bridge(
        {"provider_ping_interval": 0.3}, reply="tone", tone_seconds=0.3, stall_after_s=0.3
    )
    client = await connected(bridge)
    try:
        await wait_until(lambda: sessions_opened(emulator, 2), timeout=10)
        assert emulator.stalled == [emulator.sessions[0]]
        await talk(client)
        assert "close" not in client.event_types()
    finally:
        await client.close()


async def test_an_invalid_key_ends_the_session_with_a_clear_error(openai_bridge: Any) -> None:
    bridge, _ = await openai_bridge(invalid_key=True)
    client = ClientPeer()
    await client.connect(bridge.http, bridge.url)
    try:
        error = await assert_ended_by_provider(bridge, client, "invalid_api_key")
        assert "OPENAI_API_KEY" in error["message"]
    finally:
        await client.close()


async def test_reconnect_gives_up_after_the_configured_tries(openai_bridge: Any) -> None:
    bridge, emulator = await openai_bridge(
        {"provider_reconnects": 2}, reply="tone", close_1011_after_s=0.3
    )
    client = await connected(bridge)
    await emulator.stop()  # nothing to reconnect to
    try:
        _, error = await client.wait_event("error", timeout=15)
        assert error["error"]["code"] in ("provider_unavailable", "provider_closed")
        _, close = await client.wait_event("close", timeout=5)
        assert close["reason"] == "provider_error"
    finally:
        await client.close()


async def test_a_provider_that_never_answers_ends_the_call_in_time(start_bridge: Any) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept the TCP connection, never answer the WebSocket upgrade
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bridge = await start_bridge(
        provider="openai",
        openai_url=f"ws://127.0.0.1:{port}/v1/realtime",
        openai_api_key="sk-test",
        provider_connect_timeout=1.0,
    )
    client = ClientPeer()
    await client.connect(bridge.http, bridge.url)
    try:
        error = await assert_ended_by_provider(bridge, client, "provider_unavailable")
        assert "did not answer" in error["message"]
    finally:
        await client.close()
        server.close()
        await server.wait_closed()

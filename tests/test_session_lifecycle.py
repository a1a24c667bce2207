"""Sessions end for every reason, exactly once, and leave nothing behind."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from aiortc import RTCPeerConnection

from bridge.core.conversation import Conversation
from bridge.core.engine import Engine
from bridge.core.session_config import SessionConfig
from bridge.server.registry import SessionRegistry
from tests.peer import ClientPeer
from tests.support import Bridge, other_tasks, our_tasks, wait_until


async def no_sessions(bridge: Bridge) -> bool:
    return await bridge.sessions() == []


async def test_connect_timeout_ends_a_session_that_never_connects(start_bridge: Any) -> None:
    bridge = await start_bridge(connect_timeout=0.5)
    client = ClientPeer()
    sdp = await client.offer()
    async with bridge.http.post(f"{bridge.url}/offer", json={"sdp": sdp, "type": "offer"}) as r:
        assert r.status == 200
    (session,) = list(bridge.registry)
    # The client never applies the answer, so ICE never starts.
    await wait_until(lambda: no_sessions(bridge), timeout=5)
    assert session.close_reason == "connect_timeout"
    await client.close()


async def test_inactivity_timeout_ends_a_silent_peer(start_bridge: Any) -> None:
    bridge = await start_bridge(inactivity_timeout=0.5)
    client = ClientPeer()
    await client.connect(bridge.http, bridge.url)
    await client.wait_connected()
    (session,) = list(bridge.registry)
    client.transceiver.sender.replaceTrack(None)  # the peer stays connected but sends nothing
    await wait_until(lambda: no_sessions(bridge), timeout=5)
    assert session.close_reason == "inactive"
    _, close = await client.wait_event("close")
    assert close["reason"] == "inactive"
    await client.close()


async def test_peer_close_ends_the_session(bridge: Bridge) -> None:
    client = ClientPeer()
    await client.connect(bridge.http, bridge.url)
    await client.wait_connected()
    (session,) = list(bridge.registry)
    await client.close()
    await wait_until(lambda: no_sessions(bridge), timeout=5)
    assert session.close_reason in ("peer_closed", "peer_failed")


async def test_delete_sends_close_event_and_is_idempotent(bridge: Bridge) -> None:
    client = ClientPeer()
    await client.connect(bridge.http, bridge.url)
    await client.wait_connected()
    await client.wait_event("open")
    (session,) = list(bridge.registry)
    async with bridge.http.delete(f"{bridge.url}/sessions/{client.session_id}") as r:
        assert r.status == 200
    _, close = await client.wait_event("close")
    assert close["reason"] == "deleted"
    await session.close("again")  # a second close is a no-op
    assert session.close_reason == "deleted"
    assert await bridge.sessions() == []
    await client.close()


async def test_thirty_connect_disconnect_cycles_leave_nothing(bridge: Bridge) -> None:
    await asyncio.sleep(0.1)
    baseline_tasks = len(other_tasks())
    for cycle in range(30):
        client = ClientPeer()
        await client.connect(bridge.http, bridge.url)
        await client.wait_connected()
        if cycle % 2:
            async with bridge.http.delete(f"{bridge.url}/sessions/{client.session_id}") as r:
                assert r.status == 200
            await client.close()
        else:
            await client.close()
        await wait_until(lambda: no_sessions(bridge), timeout=5)
    assert our_tasks() == []
    try:
        await wait_until(lambda: asyncio.sleep(0, len(other_tasks()) <= baseline_tasks))
    except AssertionError:
        raise AssertionError(f"tasks left: {other_tasks()}") from None
    del client  # the test's own last client
    gc.collect()
    peers = [o for o in gc.get_objects() if isinstance(o, RTCPeerConnection)]
    assert peers == [], f"{len(peers)} peer connections still alive"


async def test_finished_calls_are_collected_soon() -> None:
    """Calls leave reference cycles: the registry runs a full collection after they end."""
    registry = SessionRegistry(10, gc_delay=0.05)
    engine = Engine()
    session = Conversation(
        session_id="s1",
        provider=engine.create_provider("echo", None, SessionConfig()),
        config=SessionConfig(),
        engine=engine,
    )
    registry.add(session)
    await session.close("test")
    assert len(registry) == 0 and registry.collections == 0
    await wait_until(lambda: asyncio.sleep(0, registry.collections == 1), timeout=2)


async def test_a_session_ended_while_its_offer_is_answered_starts_nothing() -> None:
    """DELETE or shutdown lands at any point of answering the offer: the answer is either
    complete (and the session then ends) or refused with 410, never a crash, and no task is
    left behind (the reviewer's race: CLOSING -> CONNECTING and a stray watchdog)."""
    from bridge.core.errors import BadRequest
    from bridge.transports.webrtc.peer import WebRTCCall, WebRTCOptions

    outcomes: set[str] = set()
    for ticks in range(0, 40, 2):  # where in start() the close lands
        client = ClientPeer()
        offer = await client.offer()
        engine = Engine()
        provider = engine.create_provider("echo", None, SessionConfig())
        conversation = Conversation(
            session_id=f"race{ticks}", provider=provider, config=SessionConfig(), engine=engine
        )
        call = WebRTCCall(conversation, WebRTCOptions(connect_timeout=2, inactivity_timeout=2))
        start = asyncio.create_task(call.start(offer))
        for _ in range(ticks):
            await asyncio.sleep(0)
        await conversation.close("deleted")
        try:
            await start
            outcomes.add("answered")
        except BadRequest as exc:
            assert exc.status in (400, 410), exc
            outcomes.add(exc.code)
        assert conversation.state.name == "CLOSED"
        await wait_until(lambda: asyncio.sleep(0, our_tasks() == []), timeout=5)
        await client.close()
    print(f"\nanswer/close race outcomes: {sorted(outcomes)}")
    assert "answered" in outcomes and len(outcomes) > 1

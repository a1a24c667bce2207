"""Sessions end for every reason, exactly once, and leave nothing behind."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from aiortc import RTCPeerConnection

from bridge.core.session_config import SessionConfig
from bridge.providers.echo import EchoProvider
from bridge.server.registry import SessionRegistry
from bridge.transports.webrtc.peer import CallSession
from tests.conftest import Bridge, make_settings
from tests.peer import ClientPeer


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def our_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("session-")]


def other_tasks() -> list[Any]:
    """Every task but aiohttp's per-connection HTTP handlers (keep-alive is not a leak)."""
    return [
        t.get_coro()
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") != "RequestHandler.start"
    ]


async def assert_ended_by_provider(bridge: Any, client: ClientPeer, code: str) -> dict[str, Any]:
    """The client got an ``error`` with ``code`` and a close; nothing of the call is left."""
    _, error = await client.wait_event("error", timeout=10)
    assert error["error"]["code"] == code, error
    _, close = await client.wait_event("close", timeout=5)
    assert close["reason"] == "provider_error"
    await wait_until(lambda: asyncio.sleep(0, not list(bridge.registry)), timeout=5)
    assert await bridge.sessions() == []
    assert our_tasks() == []
    return dict(error["error"])


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
    settings = make_settings()
    session = CallSession(
        session_id="s1",
        settings=settings,
        provider=EchoProvider(settings, "", SessionConfig()),
        config=SessionConfig(),
        on_closed=registry.remove,
    )
    registry.add(session)
    await session.close("test")
    assert len(registry) == 0 and registry.collections == 0
    await wait_until(lambda: asyncio.sleep(0, registry.collections == 1), timeout=2)

"""Access tokens, ownership, origins, per-address and per-token limits, budgets and the
secrets they must never leak: one test per rule, over real sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from typing import Any

import aiohttp
import pytest

from bridge.core.errors import ConfigError
from bridge.server.auth import mint, verify
from bridge.server.config import Settings
from tests.peer import ClientPeer
from tests.support import OPENAI_TEST_KEY, Bridge, wait_until

SECRET = "test-secret-0123456789abcdef0123456789"
OTHER_SECRET = "another-secret-0123456789abcdef012345"


def token(**grants: Any) -> str:
    return mint(SECRET, grants.pop("ttl", 60), **grants)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def offer(bridge: Bridge, headers: dict[str, str] | None = None, **body: Any) -> Any:
    client = ClientPeer()
    sdp = await client.offer()
    try:
        async with bridge.http.post(
            f"{bridge.url}/offer",
            json={"sdp": sdp, "type": "offer", **body},
            headers=headers or {},
        ) as r:
            return r.status, await r.json(), dict(r.headers)
    finally:
        await client.close()


async def call(bridge: Bridge, headers: dict[str, str], **body: Any) -> tuple[ClientPeer, str]:
    """A connected call started with ``headers``; returns the client and the session id."""
    client = ClientPeer()
    sdp = await client.offer()
    async with bridge.http.post(
        f"{bridge.url}/offer", json={"sdp": sdp, "type": "offer", **body}, headers=headers
    ) as r:
        answer = await r.json()
        assert r.status == 200, answer
    from aiortc import RTCSessionDescription

    await client.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    client.session_id = answer["session_id"]
    return client, answer["session_id"]


@pytest.fixture
async def secured(start_bridge: Any) -> Bridge:
    return await start_bridge(auth_secret=SECRET)  # type: ignore[no-any-return]


async def test_no_forged_or_expired_token_gets_in(secured: Bridge) -> None:
    cases = {
        "unauthorized": {},
        "invalid_token": bearer(mint(OTHER_SECRET, 60)),
        "token_expired": bearer(token(ttl=-60)),
    }
    for code, headers in cases.items():
        status, body, response_headers = await offer(secured, headers)
        assert (status, body["error"]["code"]) == (401, code), (code, body)
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
        for method, path in (
            ("GET", "/sessions"),
            ("GET", "/sessions/x"),
            ("DELETE", "/sessions/x"),
            ("DELETE", "/whip/x"),
        ):
            async with secured.http.request(method, secured.url + path, headers=headers) as r:
                assert (r.status, (await r.json())["error"]["code"]) == (401, code), path
        async with secured.http.get(f"{secured.url}/v1/realtime", headers={
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", **headers}) as r:  # fmt: skip
            assert r.status == 401
    # A token that lives longer than the bridge accepts is refused too.
    long_lived = mint(SECRET, 10 * 86_400)
    assert (await offer(secured, bearer(long_lived)))[0] == 401
    with pytest.raises(Exception, match="longer"):
        verify(SECRET, long_lived, max_ttl=86_400)
    # Open endpoints stay open.
    for path in ("/healthz", "/providers"):
        async with secured.http.get(secured.url + path) as r:
            assert r.status == 200


async def test_a_valid_token_starts_calls_and_owns_them(secured: Bridge) -> None:
    alice, bob, admin = token(subject="alice"), token(subject="bob"), token(admin=True)
    client, session_id = await call(secured, bearer(alice))
    try:
        async with secured.http.get(f"{secured.url}/sessions", headers=bearer(alice)) as r:
            assert [s["id"] for s in (await r.json())["sessions"]] == [session_id]
        async with secured.http.get(f"{secured.url}/sessions", headers=bearer(bob)) as r:
            assert (await r.json())["sessions"] == []
        for method in ("GET", "DELETE"):
            async with secured.http.request(
                method, f"{secured.url}/sessions/{session_id}", headers=bearer(bob)
            ) as r:
                assert (r.status, (await r.json())["error"]["code"]) == (403, "not_owner")
        async with secured.http.get(
            f"{secured.url}/sessions/{session_id}?token={alice}"  # ?token= works too
        ) as r:
            described = await r.json()
            assert r.status == 200 and described["owner"] == "alice"
        async with secured.http.get(f"{secured.url}/sessions", headers=bearer(admin)) as r:
            assert [s["id"] for s in (await r.json())["sessions"]] == [session_id]
        async with secured.http.delete(
            f"{secured.url}/sessions/{session_id}", headers=bearer(admin)
        ) as r:
            assert r.status == 200
    finally:
        await client.close()


async def test_grants_are_enforced(secured: Bridge) -> None:
    echo_only = bearer(token(providers=("echo",)))
    status, body, _ = await offer(secured, echo_only, provider="openai")
    assert (status, body["error"]["code"]) == (403, "not_granted")
    status, body, _ = await offer(secured, bearer(token(models=("x",))), provider="echo")
    assert (status, body["error"]["code"]) == (403, "not_granted")

    one = bearer(token(subject="carol", max_sessions=1))
    client, _ = await call(secured, one)
    try:
        status, body, headers = await offer(secured, one)
        assert (status, body["error"]["code"]) == (429, "too_many_sessions")
        assert headers["Retry-After"]
    finally:
        await client.close()

    short = bearer(token(max_duration=0.5))
    client, session_id = await call(secured, short)
    try:
        conversation = secured.registry.get(session_id)
        assert conversation is not None and conversation.max_duration == 0.5
        await wait_until(lambda: asyncio.sleep(0, conversation.closed), timeout=5)
        assert conversation.close_reason == "max_duration"
    finally:
        await client.close()


async def test_origins(start_bridge: Any) -> None:
    bridge = await start_bridge()  # open bridge: the same origin only
    host = bridge.url.split("//", 1)[1]
    status, body, _ = await offer(bridge, {"Origin": "https://evil.example"})
    assert (status, body["error"]["code"]) == (403, "origin_not_allowed")
    status, _, _ = await offer(bridge, {"Origin": f"http://{host}"})
    assert status == 200
    allowed = await start_bridge(allowed_origins=("https://app.example",))
    assert (await offer(allowed, {"Origin": "https://app.example"}))[0] == 200
    assert (await offer(allowed, {"Origin": f"http://{host}"}))[0] == 403
    anyone = await start_bridge(allowed_origins=("*",))
    assert (await offer(anyone, {"Origin": "https://evil.example"}))[0] == 200


async def test_per_address_limit(start_bridge: Any) -> None:
    bridge = await start_bridge(max_sessions_per_ip=1)
    client, _ = await call(bridge, {})
    try:
        status, body, headers = await offer(bridge)
        assert (status, body["error"]["code"]) == (429, "too_many_sessions")
        assert headers["Retry-After"]
    finally:
        await client.close()


async def test_twilio_needs_its_own_token_when_the_bridge_wants_tokens(secured: Bridge) -> None:
    async with secured.http.post(f"{secured.url}/telephony/twilio/voice", data={}) as r:
        assert (r.status, (await r.json())["error"]["code"]) == (403, "twilio_not_configured")


def test_an_exposed_bridge_needs_a_secret_or_an_explicit_choice() -> None:
    with pytest.raises(ConfigError, match="BRIDGE_AUTH_SECRET"):
        Settings(host="0.0.0.0")
    Settings(host="0.0.0.0", allow_unauthenticated=True)
    Settings(host="0.0.0.0", auth_secret=SECRET)
    Settings(host="::1")
    with pytest.raises(ConfigError, match="32"):
        Settings(auth_secret="short")


def test_bridge_token_mints_what_the_bridge_accepts() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "token", "--ttl", "120", "--provider", "echo",
         "--budget-usd", "0.5", "--max-sessions", "2", "--subject", "dave"],
        env={"BRIDGE_AUTH_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    grant = verify(SECRET, out.stdout.strip(), max_ttl=300)
    assert (grant.subject, grant.providers, grant.budget_usd, grant.max_sessions) == (
        "dave",
        ("echo",),
        0.5,
        2,
    )
    assert SECRET not in out.stdout + out.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "bridge", "token"],
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "BRIDGE_AUTH_SECRET" in refused.stderr


# -- budgets ---------------------------------------------------------------------------------


async def text_turn(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """One typed turn through the gateway's envelope; the messages until its usage (or the
    close)."""
    await ws.send_json({
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": "Hello"}]},
    })  # fmt: skip
    await ws.send_json({"type": "response.create"})
    seen = []
    async with asyncio.timeout(10):
        while True:
            message = await ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                return seen
            seen.append(json.loads(message.data))
            if seen[-1]["event"] in ("usage", "close"):
                return seen


async def test_a_call_is_warned_at_80_percent_and_ended_at_its_budget(
    openai_bridge: Any, start_bridge: Any
) -> None:
    bridge, emulator = await openai_bridge(reply="text")
    costs = []  # each reply re-bills the conversation so far: they grow
    async with bridge.http.ws_connect(f"{bridge.url}/realtime") as ws:
        for _ in range(3):
            (usage,) = [m for m in await text_turn(ws) if m["event"] == "usage"]
            costs.append(usage["data"]["cost_usd"])
    assert all(c > 0 for c in costs)
    budget = (costs[0] + costs[1]) / 0.8 * 0.999  # warned after 2 replies, spent after 3
    assert sum(costs) >= budget
    budgeted = await start_bridge(
        provider="openai",
        openai_url=emulator.url,
        openai_api_key=OPENAI_TEST_KEY,
        session_budget_usd=budget,
    )
    async with budgeted.http.ws_connect(f"{budgeted.url}/realtime") as ws:
        first, second, third = [await text_turn(ws) for _ in range(3)]
        errors = [
            m["data"]["error"]["code"]
            for m in [*first, *second, *third]
            if m["event"] == "realtime" and m["data"]["type"] == "error"
        ]
        assert errors == ["budget_warning", "budget_exceeded"], errors
        assert any(m["data"].get("type") == "error" for m in second if m["event"] == "realtime")
        while not any(m["event"] == "close" for m in third):  # the close follows its usage
            third.append(await ws.receive_json(timeout=5))
        closing = [m for m in third if m["event"] == "close"]
        assert closing and closing[0]["data"]["reason"] == "budget_exceeded"
        assert closing[0]["data"]["session"]["budgets"][0]["spent_usd"] >= budget


async def test_a_token_budget_spans_its_calls(openai_bridge: Any) -> None:
    bridge, _ = await openai_bridge(reply="text", bridge_settings={"auth_secret": SECRET})
    tok = token(subject="erin", budget_usd=1e-9)  # spent by the first reply
    async with bridge.http.ws_connect(f"{bridge.url}/realtime?token={tok}") as ws:
        seen = await text_turn(ws)
        while not any(m["event"] == "close" for m in seen):
            seen += await text_turn(ws)
    closing = [m for m in seen if m["event"] == "close"]
    assert closing[0]["data"]["reason"] == "budget_exceeded"
    # The next call of the same token is over budget at its first report.
    async with bridge.http.ws_connect(f"{bridge.url}/realtime?token={tok}") as ws:
        seen = await text_turn(ws)
        while not any(m["event"] == "close" for m in seen):
            seen += await text_turn(ws)
    assert next(m for m in seen if m["event"] == "close")["data"]["reason"] == "budget_exceeded"


# -- no secret leaks ---------------------------------------------------------------------------


async def test_no_token_or_key_reaches_a_response_an_event_or_a_log_line(
    openai_bridge: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bridge, _ = await openai_bridge(
        reply="text",
        bridge_settings={
            "auth_secret": SECRET,
            "turn_secret": "turn-secret-xyz-123456",
            "turn_urls": ("turn:127.0.0.1:3478?transport=udp",),  # credentials get minted
        },
    )
    tok = token(subject="frank")
    seen_text = []
    async with bridge.http.ws_connect(f"{bridge.url}/realtime?token={tok}") as ws:
        seen_text.append(json.dumps(await text_turn(ws)))
    for path in ("/sessions", "/providers", "/healthz", "/stats", "/metrics", "/ice-servers"):
        async with bridge.http.get(f"{bridge.url}{path}?token={tok}") as r:
            seen_text.append(await r.text())
    async with bridge.http.get(f"{bridge.url}/sessions/nope", headers=bearer(tok)) as r:
        seen_text.append(await r.text())
    everything = "\n".join([*seen_text, caplog.text])
    for secret in (tok, SECRET, OPENAI_TEST_KEY, "turn-secret-xyz-123456"):
        assert secret not in everything
    assert "token=[redacted]" in caplog.text  # the access log saw the query, redacted

"""HTTP signaling: bad input gets a clear 4xx JSON error and leaves nothing behind; WHIP."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiortc import RTCSessionDescription

from tests.peer import ClientPeer
from tests.support import Bridge


def without_lines(sdp: str, *prefixes: str) -> str:
    return "\r\n".join(x for x in sdp.split("\r\n") if not x.startswith(prefixes))


def replace_audio_codecs(sdp: str, rtpmap: str) -> str:
    out = []
    for line in sdp.split("\r\n"):
        if line.startswith("m=audio"):
            line = " ".join([*line.split()[:3], "100"])
        elif line.startswith("a=rtpmap:"):
            line = f"a=rtpmap:100 {rtpmap}"
        out.append(line)
    return "\r\n".join(out)


@pytest.fixture
async def offer_sdp() -> Any:
    client = ClientPeer()
    sdp = await client.offer()
    yield sdp
    await client.close()


def bad_offers(sdp: str) -> list[tuple[str, dict[str, Any] | bytes, int, str]]:
    return [
        ("invalid json", b"{not json", 400, "invalid_json"),
        ("json array", b"[1, 2]", 400, "invalid_json"),
        ("missing sdp", {"type": "offer"}, 400, "invalid_sdp"),
        ("sdp not a string", {"type": "offer", "sdp": 42}, 400, "invalid_sdp"),
        ("empty sdp", {"type": "offer", "sdp": "  "}, 400, "invalid_sdp"),
        ("type answer", {"type": "answer", "sdp": sdp}, 400, "invalid_type"),
        ("missing type", {"sdp": sdp}, 400, "invalid_type"),
        ("not sdp", {"type": "offer", "sdp": "hello world"}, 400, "invalid_sdp"),
        (
            "garbage lines",
            {"type": "offer", "sdp": "v=0\r\nthis is not sdp\r\n"},
            400,
            "invalid_sdp",
        ),
        (
            "no fingerprint",
            {"type": "offer", "sdp": without_lines(sdp, "a=fingerprint")},
            400,
            "invalid_sdp",
        ),
        (
            "no audio m-line",
            {"type": "offer", "sdp": sdp.replace("m=audio", "m=video")},
            422,
            "no_audio",
        ),
        (
            "recvonly audio",
            {"type": "offer", "sdp": sdp.replace("a=sendrecv", "a=recvonly")},
            422,
            "no_audio",
        ),
        (
            "no common codec",
            {"type": "offer", "sdp": replace_audio_codecs(sdp, "speex/16000")},
            422,
            "no_common_codec",
        ),
        (
            "unknown provider",
            {"type": "offer", "sdp": sdp, "provider": "nope"},
            400,
            "unknown_provider",
        ),
        (
            "provider not a string",
            {"type": "offer", "sdp": sdp, "provider": 7},
            400,
            "invalid_provider",
        ),
        (
            "provider without key",
            {"type": "offer", "sdp": sdp, "provider": "openai"},
            400,
            "provider_unavailable",
        ),
        (
            "bad session",
            {"type": "offer", "sdp": sdp, "session": {"voice": 5}},
            400,
            "invalid_session",
        ),
        (
            "session not object",
            {"type": "offer", "sdp": sdp, "session": "x"},
            400,
            "invalid_session",
        ),
        (
            "unknown session field",
            {"type": "offer", "sdp": sdp, "session": {"temprature": 1}},
            400,
            "invalid_session",
        ),
        ("too large", {"type": "offer", "sdp": sdp + "a=x:" + "y" * 70000}, 413, "body_too_large"),
    ]


async def test_bad_offers_get_json_errors_and_leave_nothing(bridge: Bridge, offer_sdp: str) -> None:
    for name, body, status, code in bad_offers(offer_sdp):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with bridge.http.post(
            f"{bridge.url}/offer", data=data, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == status, (name, r.status, await r.text())
            payload = await r.json()
            assert payload["error"]["code"] == code, (name, payload)
            assert payload["error"]["message"], name
        assert await bridge.sessions() == [], name
    await asyncio.sleep(0.05)
    ours = [t for t in asyncio.all_tasks() if t.get_name().startswith("session-")]
    assert ours == []
    async with bridge.http.get(f"{bridge.url}/healthz") as r:
        assert (await r.json()) == {"status": "ok", "sessions": 0}


async def test_wrong_content_types(bridge: Bridge, offer_sdp: str) -> None:
    async with bridge.http.post(
        f"{bridge.url}/offer", data=offer_sdp, headers={"Content-Type": "application/sdp"}
    ) as r:
        assert r.status == 415
        assert (await r.json())["error"]["code"] == "unsupported_media_type"
    async with bridge.http.post(f"{bridge.url}/whip", json={"sdp": offer_sdp}) as r:
        assert r.status == 415
    async with bridge.http.post(
        f"{bridge.url}/whip", data="nonsense", headers={"Content-Type": "application/sdp"}
    ) as r:
        assert r.status == 400
        assert (await r.json())["error"]["code"] == "invalid_sdp"
    assert await bridge.sessions() == []


async def test_unknown_routes_and_sessions_are_json_404(bridge: Bridge) -> None:
    for method, path in [("GET", "/nope"), ("DELETE", "/sessions/x"), ("DELETE", "/whip/x")]:
        async with bridge.http.request(method, f"{bridge.url}{path}") as r:
            assert r.status == 404
            assert "error" in await r.json()


async def test_capacity_limit_answers_503(start_bridge: Any, offer_sdp: str) -> None:
    bridge = await start_bridge(max_sessions=1)
    first = ClientPeer()
    try:
        await first.connect(bridge.http, bridge.url)
        async with bridge.http.post(
            f"{bridge.url}/offer", json={"type": "offer", "sdp": offer_sdp}
        ) as r:
            assert r.status == 503
            assert r.headers["Retry-After"]
            assert (await r.json())["error"]["code"] == "at_capacity"
        assert len(await bridge.sessions()) == 1
    finally:
        await first.close()


async def test_whip_create_and_delete(bridge: Bridge) -> None:
    client = ClientPeer()
    try:
        sdp = await client.offer()
        async with bridge.http.post(
            f"{bridge.url}/whip", data=sdp, headers={"Content-Type": "application/sdp"}
        ) as r:
            assert r.status == 201, await r.text()
            assert r.content_type == "application/sdp"
            location = r.headers["Location"]
            answer = await r.text()
        assert location.startswith("/whip/")
        await client.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await client.wait_connected()
        (listed,) = await bridge.sessions()
        assert listed["transport"] == "whip" and location.endswith(listed["id"])
        async with bridge.http.get(f"{bridge.url}{location}") as r:
            assert r.status == 200
        async with bridge.http.patch(f"{bridge.url}{location}", data="a=end-of-candidates") as r:
            assert r.status == 405
        async with bridge.http.delete(f"{bridge.url}{location}") as r:
            assert r.status == 200
        assert await bridge.sessions() == []
        async with bridge.http.delete(f"{bridge.url}{location}") as r:
            assert r.status == 404
    finally:
        await client.close()


async def test_whip_options_advertises_sdp(bridge: Bridge) -> None:
    async with bridge.http.options(f"{bridge.url}/whip") as r:
        assert r.status == 204
        assert r.headers["Accept-Post"] == "application/sdp"
        assert "POST" in r.headers["Access-Control-Allow-Methods"]


async def test_providers_and_demo_page(bridge: Bridge) -> None:
    async with bridge.http.get(f"{bridge.url}/providers") as r:
        providers = {p["name"]: p for p in (await r.json())["providers"]}
    assert providers["echo"]["available"] and providers["echo"]["default"]
    assert not providers["openai"]["available"] and providers["openai"]["reason"]
    live = providers["gpt-live"]  # the demo page's picker lists whatever is here
    assert not live["available"] and "OPENAI_API_KEY" in live["reason"]
    assert [m["id"] for m in live["models"]] == ["gpt-live-1", "gpt-live-1.1"]
    assert live["default_model"] == "gpt-live-1.1" and "marin" in live["voices"]
    async with bridge.http.get(f"{bridge.url}/") as r:
        assert r.status == 200
        assert "<html" in (await r.text()).lower()
    async with bridge.http.get(f"{bridge.url}/static/app.js") as r:
        assert r.status == 200

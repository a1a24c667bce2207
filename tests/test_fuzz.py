"""Property-based fuzzing of every path outside input takes into the bridge (hypothesis).

Each property says: no unhandled exception, a clear error (an HTTP 4xx with a JSON body, an
``error`` event, or a counted drop), and the call or the service still works afterwards.
``./test`` runs a few hundred examples per path; ``./test --hypothesis-profile=long -k fuzz``
runs thousands (profiles in ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import secrets
from typing import Any

import pytest
import websockets
from hypothesis import event, given
from hypothesis import strategies as st

from bridge.core import events as ev
from bridge.core.session_config import SessionConfig
from bridge.providers.gemini_protocol import GeminiLiveProtocol
from bridge.providers.openai_protocol import OpenAIRealtimeProtocol
from bridge.transports.webrtc.datachannel import encode
from tests.peer import ClientPeer, connected

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
HTTP_OK = {200, 201}
HTTP_REFUSALS = {400, 408, 413, 415, 422, 503}


class BridgeLog(logging.Handler):
    """Errors the bridge logs: an unhandled exception anywhere shows up here."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def bridge_errors() -> Any:
    handler = BridgeLog()
    for name in ("bridge", "aiohttp.server", "asyncio"):
        logging.getLogger(name).addHandler(handler)
    yield handler
    for name in ("bridge", "aiohttp.server", "asyncio"):
        logging.getLogger(name).removeHandler(handler)
    assert not handler.records, [r.getMessage() for r in handler.records]


async def refused_or_ended(bridge: Any, response: Any) -> None:
    """An offer endpoint's answer: a 4xx with a JSON error, or a session we end at once."""
    event(f"HTTP {response.status}")
    if response.status in HTTP_OK:
        session_id = (await response.json())["session_id"] if response.status == 200 else None
        location = response.headers.get("Location", "")
        session_id = session_id or location.rsplit("/", 1)[-1]
        async with bridge.http.delete(f"{bridge.url}/sessions/{session_id}") as r:
            assert r.status == 200
        return
    assert response.status in HTTP_REFUSALS, response.status
    body = await response.json()
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    event(body["error"]["code"])


async def still_serving(bridge: Any) -> None:
    client = await connected(bridge)
    await client.close()
    async with bridge.http.get(f"{bridge.url}/sessions") as r:
        sessions = (await r.json())["sessions"]
    assert all(s["state"] in ("closing", "closed") for s in sessions)


# -- HTTP bodies -------------------------------------------------------------------------------

OFFER_BODIES = st.one_of(
    st.binary(max_size=2000),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"sdp": JSON | st.text(max_size=300), "type": st.sampled_from(["offer", "answer", 5])},
        optional={"provider": JSON, "model": JSON, "session": JSON},
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
)


@given(body=OFFER_BODIES, content_type=st.sampled_from(["application/json", "text/plain", "x/y"]))
async def test_offer_bodies(
    bridge: Any, bridge_errors: Any, body: bytes, content_type: str
) -> None:
    headers = {"Content-Type": content_type}
    async with bridge.http.post(f"{bridge.url}/offer", data=body, headers=headers) as r:
        await refused_or_ended(bridge, r)


@given(
    body=st.binary(max_size=2000) | st.text(max_size=500).map(str.encode),
    query=st.dictionaries(st.sampled_from(["provider", "model"]), st.text(max_size=20)),
)
async def test_whip_bodies(
    bridge: Any, bridge_errors: Any, body: bytes, query: dict[str, str]
) -> None:
    headers = {"Content-Type": "application/sdp"}
    async with bridge.http.post(
        f"{bridge.url}/whip", data=body, headers=headers, params=query
    ) as r:
        await refused_or_ended(bridge, r)


# -- SDP mutations of a real offer -------------------------------------------------------------

_OFFER: list[str] = []


async def real_offer_lines() -> list[str]:
    if not _OFFER:
        client = ClientPeer()
        _OFFER.append(await client.offer())
        await client.close()
    return _OFFER[0].strip().split("\r\n")


ATTRIBUTES = st.sampled_from(
    [
        "a=setup:",
        "a=max-message-size:",
        "a=fingerprint:sha-256 ",
        "a=rtpmap:96 ",
        "a=ice-ufrag:",
        "a=mid:",
        "a=group:BUNDLE ",
        "a=sendrecv",
        "m=audio 9 UDP/TLS/RTP/SAVPF ",
        "m=application 9 UDP/DTLS/SCTP ",
        "c=IN IP4 ",
        "a=candidate:",
    ]
)


@st.composite
def mutations(draw: Any) -> list[tuple[str, int, str]]:
    count = draw(st.integers(1, 4))
    steps = []
    for _ in range(count):
        kind = draw(st.sampled_from(["delete", "duplicate", "replace", "insert", "char", "cut"]))
        text = (
            draw(ATTRIBUTES) + draw(st.text(max_size=40)) if kind in ("replace", "insert") else ""
        )
        steps.append((kind, draw(st.integers(0, 10_000)), text))
    return steps


def mutate(lines: list[str], steps: list[tuple[str, int, str]]) -> str:
    lines = list(lines)
    for kind, where, text in steps:
        i = where % len(lines) if lines else 0
        if not lines:
            break
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "replace":
            lines[i] = text
        elif kind == "insert":
            lines.insert(i, text)
        elif kind == "char" and lines[i]:
            j = where % len(lines[i])
            lines[i] = lines[i][:j] + chr(32 + where % 95) + lines[i][j + 1 :]
        elif kind == "cut":
            lines = lines[: i + 1]
    return "\r\n".join(lines) + "\r\n"


@given(steps=mutations())
async def test_sdp_mutations(bridge: Any, bridge_errors: Any, steps: Any) -> None:
    sdp = mutate(await real_offer_lines(), steps)
    async with bridge.http.post(f"{bridge.url}/offer", json={"sdp": sdp, "type": "offer"}) as r:
        await refused_or_ended(bridge, r)


async def test_the_service_works_after_the_http_fuzz(bridge: Any) -> None:
    await still_serving(bridge)


# -- events-channel messages -------------------------------------------------------------------

MESSAGES = st.one_of(
    st.text(max_size=200),
    JSON.map(lambda v: json.dumps(v, ensure_ascii=False)),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["session.update", "text", "nope", "", "x" * 300])},
        optional={"session": JSON, "text": JSON},
    ).map(json.dumps),
    st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 5000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(30_000, 120_000).map(
        lambda n: json.dumps({"type": "text", "text": "é" * n}, ensure_ascii=False)
    ),
    st.binary(max_size=200),
    st.binary(min_size=1, max_size=50).map(lambda b: ("raw", b"\xff" + b)),  # not UTF-8
)


class LiveCall:
    """One echo call shared by the examples: each must leave it working."""

    def __init__(self, client: ClientPeer) -> None:
        self.client = client

    async def ping(self) -> None:
        nonce = secrets.token_hex(4)
        seen = len(self.client.events)
        self.client.channel.send(json.dumps({"type": "text", "text": nonce}))
        async with asyncio.timeout(5):
            while not any(
                e["type"] == "text" and nonce in e["delta"] for _, e in self.client.events[seen:]
            ):
                await self.client.wait_for_more(len(self.client.events))
        assert "close" not in self.client.event_types()


@pytest.fixture
async def live_call(bridge: Any) -> Any:
    client = await connected(bridge)
    yield LiveCall(client)
    assert client.pc.connectionState == "connected"
    await client.close()


@given(message=MESSAGES)
async def test_events_channel_messages(
    live_call: LiveCall, bridge_errors: Any, message: Any
) -> None:
    client = live_call.client
    size = len(message[1] if isinstance(message, tuple) else message)
    event(f"{type(message).__name__} of {'>64K' if size > 65536 else '<=64K'}")
    if isinstance(message, tuple):  # a string message that is not UTF-8, sent raw
        sctp = client.pc.sctp
        sctp._data_channel_queue.append((client.channel, 51, message[1]))
        await sctp._data_channel_flush()
    else:
        client.channel.send(message)
    await live_call.ping()


# -- provider frames through the translators ---------------------------------------------------

OPENAI_CORPUS: list[dict[str, Any]] = [
    {"type": "session.updated", "session": {"type": "realtime"}},
    {"type": "input_audio_buffer.speech_started", "audio_start_ms": 10, "item_id": "u"},
    {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 10, "item_id": "u"},
    {"type": "response.created", "response": {"id": "r"}},
    {"type": "response.output_audio.delta", "item_id": "a", "delta": "AAAA"},
    {"type": "response.output_audio.done", "item_id": "a"},
    {"type": "response.output_audio_transcript.delta", "item_id": "a", "delta": "hi"},
    {"type": "response.output_audio_transcript.done", "item_id": "a", "transcript": "hi"},
    {"type": "response.output_text.delta", "item_id": "a", "delta": "hi"},
    {"type": "response.output_text.done", "item_id": "a", "text": "hi"},
    {"type": "conversation.item.input_audio_transcription.delta", "item_id": "u", "delta": "x"},
    {"type": "conversation.item.input_audio_transcription.completed", "transcript": "x"},
    {
        "type": "response.done",
        "response": {
            "status": "completed",
            "usage": {
                "input_token_details": {
                    "text_tokens": 1,
                    "cached_tokens_details": {"text_tokens": 1},
                },
                "output_token_details": {"audio_tokens": 2},
            },
        },
    },
    {"type": "error", "error": {"code": "server_error", "message": "m", "event_id": "e"}},
]
GEMINI_CORPUS: list[dict[str, Any]] = [
    {"setupComplete": {}},
    {"voiceActivity": {"type": "ACTIVITY_START", "audioOffset": "1.2s"}},
    {
        "serverContent": {
            "modelTurn": {
                "parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "AAAA"}}]
            }
        }
    },
    {"serverContent": {"outputTranscription": {"text": " hi"}, "turnComplete": True}},
    {"serverContent": {"inputTranscription": {"text": "x"}, "interrupted": True}},
    {"serverContent": {"generationComplete": True, "interactionStatus": "IN_PROGRESS"}},
    {
        "usageMetadata": {
            "promptTokenCount": 5,
            "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 5}],
        }
    },
    {"sessionResumptionUpdate": {"newHandle": "h", "resumable": True}},
    {"goAway": {"timeLeft": "5s"}},
    {"toolCall": {"functionCalls": [{"id": "f", "name": "n", "args": {}}]}},
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


@st.composite
def mutated(draw: Any, corpus: list[dict[str, Any]]) -> Any:
    """A valid provider message with some fields replaced or removed (wrong types, odd
    values), or plain random JSON, or broken text."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return json.dumps(draw(JSON))
    if choice == 1:
        return draw(st.binary(max_size=100))
    message = copy.deepcopy(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(message)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = message
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(JSON)
        elif isinstance(parent, dict) and path[-1] != "type":
            del parent[path[-1]]
    return json.dumps(message)


def translated_safely(events: list[ev.Event]) -> None:
    """Whatever came out is an event the session can send on."""
    for item in events:
        wire = ev.to_wire(item)
        if wire is not None:
            assert encode(wire, 65536)


@given(frame=mutated(OPENAI_CORPUS))
def test_openai_frames_through_the_translator(frame: Any) -> None:
    p = OpenAIRealtimeProtocol("gpt-realtime-2.1", SessionConfig())
    for raw in (frame, frame):  # twice: state left by the first must not break the second
        translated_safely(p.receive(raw))
    p.take_outbox()


@given(frame=mutated(GEMINI_CORPUS))
def test_gemini_frames_through_the_translator(frame: Any) -> None:
    p = GeminiLiveProtocol("gemini-3.8-live", SessionConfig())
    for raw in (frame, frame):
        translated_safely(p.receive(raw))
    p.take_outbox()
    p.new_connection()


# -- provider frames through a live call --------------------------------------------------------


class ProviderCall:
    """A call against an emulator that injects each example; a sentinel event then shows that
    the call still works, or the call ended with a clear error (and a new one starts)."""

    def __init__(self, bridge: Any, emulator: Any, sentinel: Any) -> None:
        self.bridge, self.emulator, self.sentinel = bridge, emulator, sentinel
        self.client: ClientPeer | None = None
        self.calls = 0

    async def ensure(self) -> ClientPeer:
        if self.client is None or "close" in self.client.event_types():
            if self.client is not None:
                self.check_ended_clearly(self.client)
                await self.client.close()
            self.client = await connected(self.bridge)
            self.calls += 1
        return self.client

    @staticmethod
    def check_ended_clearly(client: ClientPeer) -> None:
        types = client.event_types()
        close = next(e for _, e in client.events if e["type"] == "close")
        assert close["reason"] == "provider_error", close
        assert "error" in types[: types.index("close")]

    async def check(self, frame: Any) -> None:
        client = await self.ensure()
        await self.emulator.inject(frame.encode() if isinstance(frame, str) else frame)
        nonce = secrets.token_hex(4)
        start = len(client.events)
        # A frame can make the bridge replace its socket (goAway, expiry): a sentinel sent on
        # the old one is never read, so it is sent again until the new one carries it.
        for _ in range(10):
            await self.emulator.inject(self.sentinel(nonce))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    while True:
                        events = [e for _, e in client.events[start:]]
                        if any(nonce in json.dumps(e) for e in events):
                            return
                        if any(e["type"] == "close" for e in events):
                            self.check_ended_clearly(client)
                            return
                        await client.wait_for_more(len(client.events))
        raise AssertionError(f"the call stopped working: {client.event_types()[-10:]}")


@pytest.fixture
async def openai_call(openai_bridge: Any) -> Any:
    bridge, emulator = await openai_bridge(reply="tone", tone_seconds=0.2)

    def sentinel(nonce: str) -> str:
        event = {"type": "response.output_audio_transcript.delta", "item_id": "s", "delta": nonce}
        return json.dumps({**event, "response_id": "s", "output_index": 0, "content_index": 0})

    call = ProviderCall(bridge, emulator, sentinel)
    yield call
    if call.client is not None:
        await call.client.close()


@pytest.fixture
async def gemini_call(gemini_bridge: Any) -> Any:
    bridge, emulator = await gemini_bridge(reply="tone", tone_seconds=0.2, resumption_interval_s=5)

    def sentinel(nonce: str) -> bytes:
        return json.dumps({"serverContent": {"outputTranscription": {"text": nonce}}}).encode()

    call = ProviderCall(bridge, emulator, sentinel)
    yield call
    if call.client is not None:
        await call.client.close()


@given(frame=mutated(OPENAI_CORPUS))
async def test_openai_frames_through_a_live_call(
    openai_call: ProviderCall, bridge_errors: Any, frame: Any
) -> None:
    await openai_call.check(frame)


@given(frame=mutated(GEMINI_CORPUS))
async def test_gemini_frames_through_a_live_call(
    gemini_call: ProviderCall, bridge_errors: Any, frame: Any
) -> None:
    await gemini_call.check(frame)


# -- the emulators' own inputs -----------------------------------------------------------------


@pytest.fixture
async def openai_emulator(start_openai_emulator: Any) -> Any:
    return await start_openai_emulator()


@pytest.fixture
async def gemini_emulator() -> Any:
    from bridge.emulators.gemini import GeminiEmulator

    async with GeminiEmulator() as emulator:
        yield emulator


@given(message=st.one_of(JSON.map(json.dumps), st.binary(max_size=100), mutated(OPENAI_CORPUS)))
async def test_openai_emulator_inputs(openai_emulator: Any, message: Any) -> None:
    async with websockets.connect(
        openai_emulator.url, additional_headers={"Authorization": "Bearer sk-fuzz"}
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send(message)
        await ws.send(json.dumps({"type": "input_audio_buffer.clear", "event_id": "probe"}))
        async with asyncio.timeout(5):  # answered, errors included, and still serving
            while (answer := json.loads(await ws.recv()))["type"] != "input_audio_buffer.cleared":
                if answer["type"] == "error":
                    assert answer["error"]["message"]


@given(message=st.one_of(JSON.map(json.dumps), st.binary(max_size=100), mutated(GEMINI_CORPUS)))
async def test_gemini_emulator_inputs(gemini_emulator: Any, message: Any) -> None:
    setup = {"setup": {"model": "models/gemini-3.8-live"}}
    async with websockets.connect(gemini_emulator.url + "?key=k") as ws:
        await ws.send(json.dumps(setup))
        await ws.recv()
        await ws.send(message)
        try:
            async with asyncio.timeout(1):
                while True:
                    await ws.recv()
        except websockets.ConnectionClosed as closed:  # refused the way the server does
            assert closed.rcvd is not None and closed.rcvd.code in (1000, 1007)
        except TimeoutError:
            pass  # accepted, still open
    async with websockets.connect(gemini_emulator.url + "?key=k") as ws:  # still serving
        await ws.send(json.dumps(setup))
        assert json.loads(await ws.recv()) == {"setupComplete": {}}

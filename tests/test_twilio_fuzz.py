"""Property-based tests of the Twilio transport's outside input: Media Streams messages (sans
I/O and over a live stream), the webhook's signature check, and the mark ledger under any
order of sends, echoes and clears."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from bridge.transports.twilio import messages as msg
from bridge.transports.twilio import signature
from bridge.transports.twilio.playback import MarkLedger
from tests.test_fuzz import JSON, mutated
from tests.twilio_caller import TwilioCaller

SID = "MZ" + "0" * 32
CORPUS: list[dict[str, Any]] = [
    {"event": "connected", "protocol": "Call", "version": "1.0.0"},
    {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": SID,
        "start": {
            "streamSid": SID,
            "accountSid": "AC" + "1" * 32,
            "callSid": "CA" + "2" * 32,
            "tracks": ["inbound"],
            "customParameters": {"provider": "echo", "voice": "alloy"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    },
    {
        "event": "media",
        "sequenceNumber": "3",
        "streamSid": SID,
        "media": {
            "track": "inbound",
            "chunk": "1",
            "timestamp": "5",
            "payload": base64.b64encode(bytes(160)).decode(),
        },
    },
    {"event": "mark", "sequenceNumber": "4", "streamSid": SID, "mark": {"name": "7"}},
    {"event": "dtmf", "streamSid": SID, "sequenceNumber": "5", "dtmf": {"digit": "1"}},
    {"event": "stop", "sequenceNumber": "6", "streamSid": SID, "stop": {"callSid": "CA1"}},
]
TYPED = (msg.Connected, msg.Start, msg.Media, msg.Dtmf, msg.Mark, msg.Stop, msg.Unknown)


@given(text=st.one_of(mutated(CORPUS), st.text(max_size=200), JSON.map(json.dumps)))
def test_any_message_parses_or_is_malformed(text: str | bytes) -> None:
    """Nothing but a typed message or :class:`Malformed` comes out, whatever goes in."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        message = msg.parse(text)
    except msg.Malformed as exc:
        assert exc.reason and len(exc.reason) < 200
        return
    assert isinstance(message, TYPED)
    if isinstance(message, msg.Start):
        assert 0 < len(message.stream_sid) <= msg.MAX_SID_CHARS
        assert set(message.parameters) <= set(msg.STREAM_PARAMETERS)
        message.format_problem()  # total too: any types of encoding, rate, channels
    if isinstance(message, msg.Media):
        assert message.audio


@given(audio=st.binary(min_size=1, max_size=400))
def test_media_we_build_is_media_we_parse(audio: bytes) -> None:
    parsed = msg.parse(msg.media(SID, audio))
    assert parsed == msg.Media(audio, "inbound")


PARAMS = st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=5)


@given(
    path=st.text(alphabet="abc/?=&%é ", max_size=20),
    params=PARAMS,
    port=st.sampled_from(["", ":443", ":8443"]),
)
def test_our_signatures_are_twilios(path: str, params: list[tuple[str, str]], port: str) -> None:
    """Our HMAC agrees with Twilio's own validator for any URL and form, and a changed form
    or a wrong token never passes."""
    token = "0123456789abcdef0123456789abcdef"
    url = f"https://bridge.example.com{port}/{path}"
    form = dict(params)
    twilios = RequestValidator(token).compute_signature(url, form)
    assert signature.compute(token, url, form.items()) == twilios
    assert signature.is_valid(token, twilios, url, form.items())
    assert not signature.is_valid("f" * 32, twilios, url, form.items())
    assert not signature.is_valid(token, twilios, url, [*form.items(), ("extra", "x")])


@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("send"), st.sampled_from(["a", "b", "c"]), st.integers(0, 5000)),
            st.tuples(st.just("echo"), st.integers(0, 40)),
            st.tuples(st.just("cut")),
        ),
        max_size=60,
    )
)
def test_the_ledger_never_confirms_more_than_was_sent(steps: list[tuple[Any, ...]]) -> None:
    """Echoes in any order (stale, repeated, after a clear) confirm only marks that were sent
    and not cleared, and the heard position of an item never exceeds what was sent of it."""
    ledger = MarkLedger()
    names: list[str] = []
    sent_ms: dict[str, int] = {}
    for step in steps:
        if step[0] == "send":
            _, item, ms = step
            names.append(ledger.send(item, ms))
            sent_ms[item] = max(sent_ms.get(item, 0), ms)
        elif step[0] == "echo":
            if names:
                ledger.echoed(names[step[1] % len(names)])
            else:
                ledger.echoed(str(step[1]))
        else:
            ledger.cut()
        assert ledger.confirmed + ledger.pending <= ledger.sent
        for item, ms in sent_ms.items():
            assert ledger.heard_ms(item) <= ms


class LiveStream:
    """A call that is redialled when an example ended it (a valid ``stop``)."""

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self.url = "ws" + bridge.url.removeprefix("http") + "/telephony/twilio"
        self.caller: TwilioCaller | None = None
        self.dtmf_sent = 0

    async def call(self) -> TwilioCaller:
        if self.caller is None or self.caller.closed.is_set():
            if self.caller is not None:
                await self.caller.close()
            self.caller, self.dtmf_sent = TwilioCaller(self.url), 0
            await self.caller.dial(self.bridge.http)
        return self.caller


@pytest.fixture
async def live_stream(start_bridge: Any) -> Any:
    stream = LiveStream(await start_bridge())
    yield stream
    if stream.caller is not None:
        await stream.caller.close()


@given(message=st.one_of(mutated(CORPUS), JSON.map(json.dumps)))
async def test_any_message_on_a_live_stream_leaves_the_call_up(
    live_stream: LiveStream, message: str | bytes
) -> None:
    """The call survives every message but a ``stop`` (which ends it with 1000)."""
    caller = await live_stream.call()
    await caller.send_raw(message)
    if _is_stop(message):
        await caller.wait_closed()
        assert (caller.close_code, caller.close_reason) == (1000, "peer_closed")
        return
    await caller.dtmf("1")  # handled after the message: a round trip says it was
    live_stream.dtmf_sent += 1
    async with asyncio.timeout(5):
        while True:
            assert not caller.closed.is_set(), (caller.close_code, caller.close_reason)
            sessions = await live_stream.bridge.sessions()
            if sessions and sessions[0]["twilio"]["dtmf"] >= live_stream.dtmf_sent:
                return
            await asyncio.sleep(0.01)


def _is_stop(message: str | bytes) -> bool:
    try:
        return isinstance(message, str) and isinstance(msg.parse(message), msg.Stop)
    except msg.Malformed:
        return False

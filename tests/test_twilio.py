"""Twilio Media Streams: a scripted Twilio (``tests/twilio_caller.py``) calls the bridge over
real sockets, through the echo provider and the OpenAI and Gemini emulators."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlencode

import aiohttp
import numpy as np
import pytest
from twilio.request_validator import RequestValidator

from bridge.audio import g711
from tests.peer import dominant_frequency
from tests.support import OPENAI_TEST_KEY, Bridge, our_tasks, wait_until
from tests.twilio_caller import TwilioCaller

STREAM_PATH = "/telephony/twilio"
FAST_ECHO = {"echo_silence_ms": 200}


def stream_url(bridge: Bridge) -> str:
    return "ws" + bridge.url.removeprefix("http") + STREAM_PATH


async def listed(bridge: Bridge) -> None:
    """A stream's ``start`` has made its session."""
    await wait_until(lambda: asyncio.sleep(0, bool(list(bridge.registry))), timeout=5)


async def gone(bridge: Bridge) -> None:
    """The session has left the registry and ``GET /sessions``, and left no task."""
    await wait_until(lambda: asyncio.sleep(0, not list(bridge.registry)), timeout=5)
    assert await bridge.sessions() == []
    assert our_tasks() == []


async def test_echo_call_is_listed_while_it_lasts(start_bridge: Any) -> None:
    bridge = await start_bridge(**FAST_ECHO)
    caller = TwilioCaller(stream_url(bridge))
    await caller.dial(bridge.http)
    try:
        caller.say(440, 0.6)
        await caller.wait_played(400)
        reply = caller.heard()
        assert abs(dominant_frequency(reply, 8000) - 440) < 10
        (session,) = await bridge.sessions()
        assert session["transport"] == "twilio"
        assert session["provider"] == "echo"
        twilio = session["twilio"]
        assert (twilio["stream_sid"], twilio["call_sid"]) == (caller.stream_sid, caller.call_sid)
        assert twilio["media_in"] > 0 and twilio["media_out"] > 0
        assert twilio["marks_confirmed"] > 0
        assert session["provider_audio"] == {
            "input": "pcm16",
            "input_rate": 24000,
            "output_passthrough": False,
        }
        assert caller.stats.frame_sizes == {160}
        assert not caller.violations
    finally:
        await caller.stop()
    await gone(bridge)
    print(f"\ntwilio echo: {caller.stats}")


async def test_openai_gets_the_callers_mulaw_untouched_and_its_reply_goes_back_untouched(
    openai_bridge: Any,
) -> None:
    # Deltas of 30 ms are not whole frames: the reply must still arrive without a gap.
    bridge, emulator = await openai_bridge(reply="tone", tone_hz=660, tone_seconds=1.0, delta_ms=30)
    caller = TwilioCaller(stream_url(bridge))
    await caller.dial(bridge.http)
    try:
        caller.say(440, 1.0)
        caller.pause(0.8)
        await caller.wait_played(1000)
        assert abs(dominant_frequency(caller.heard(), 8000) - 660) < 10

        (rec,) = emulator.sessions
        audio = rec.received[0]["session"]["audio"]
        assert audio["input"]["format"] == {"type": "audio/pcmu"}
        assert audio["output"]["format"]["type"] == "audio/pcmu"
        # Uplink: the emulator got exactly the caller's payload bytes, in order.
        assert len(rec.audio) >= 8000
        assert bytes(rec.audio) == bytes(caller.sent_audio[: len(rec.audio)])
        # Downlink: the caller got exactly the emulator's mu-law, in whole frames (the last
        # one padded with silence), nothing inserted.
        expected = g711.encode(
            (np.sin(2 * np.pi * 660 * np.arange(8000) / 8000) * 0.3 * 32767).astype(np.int16),
            "pcmu",
        )
        received = b"".join(frame for _, frame in caller.received)
        assert received[: len(expected)] == expected
        assert set(received[len(expected) :]) <= {g711.ULAW_SILENCE}
        (session,) = await bridge.sessions()
        assert session["provider_audio"] == {
            "input": "pcmu",
            "input_rate": 8000,
            "output_passthrough": True,
        }
        # The registry's common stats, for a phone call too.
        assert session["transport"] == "twilio" and session["state"] == "active"
        assert session["audio_in_s"] >= 1.0 and session["audio_out_s"] >= 0.9
        assert session["tokens"] > 0 and session["cost_usd"] > 0
        assert session["last_turn_latency_ms"] is not None
        assert (session["errors"], session["reconnects"]) == (0, 0)
        assert not caller.violations
    finally:
        await caller.stop()
    await gone(bridge)


async def test_gemini_gets_16_khz_and_its_24_khz_reply_reaches_the_caller(
    gemini_bridge: Any,
) -> None:
    bridge, emulator = await gemini_bridge(reply="tone", tone_hz=660, tone_seconds=1.0)
    caller = TwilioCaller(stream_url(bridge), parameters={"provider": "gemini"})
    await caller.dial(bridge.http)
    try:
        caller.say(440, 1.0)
        caller.pause(0.8)
        await caller.wait_played(900)
        assert abs(dominant_frequency(caller.heard(), 8000) - 660) < 10

        (rec,) = emulator.sessions
        assert {rate for _, _, rate in rec.audio} == {16000}
        pcm = np.frombuffer(b"".join(chunk for _, chunk, _ in rec.audio), dtype="<i2")
        loud = np.flatnonzero(np.abs(pcm) > 2000)
        # A 1 s tone spans 16 000 samples: the uplink's rate is right, not just its pitch.
        assert 0.97 <= (loud[-1] - loud[0]) / 16000 <= 1.03, (loud[-1] - loud[0]) / 16000
        assert abs(dominant_frequency(pcm[loud[0] : loud[0] + 8000], 16000) - 440) < 5
        (session,) = await bridge.sessions()
        assert session["provider"] == "gemini"
        assert session["provider_audio"]["input_rate"] == 16000
        assert caller.stats.frame_sizes == {160}
        assert not caller.violations
    finally:
        await caller.stop()
    await gone(bridge)


async def test_barge_in_clears_twilio_and_truncates_at_what_the_caller_heard(
    openai_bridge: Any,
) -> None:
    bridge, emulator = await openai_bridge(reply="tone", tone_hz=660, tone_seconds=3.0)
    caller = TwilioCaller(stream_url(bridge))
    await caller.dial(bridge.http)
    try:
        caller.say(440, 0.8)
        await caller.wait_played(1000)  # a second into the 3 s reply, talk over it
        loop = asyncio.get_running_loop()
        spoke_at = loop.time()
        caller.say(880, 0.6)
        clear = await caller.wait_clear()
        (rec,) = emulator.sessions

        async def truncated() -> bool:
            return bool(rec.of_type("conversation.item.truncate"))

        await wait_until(truncated)
        (truncate,) = rec.of_type("conversation.item.truncate")
        end_ms = truncate["audio_end_ms"]
        print(
            f"\ntwilio barge-in: clear {(clear.at - spoke_at) * 1000:.0f} ms after the caller "
            f"spoke; played {clear.full_frames_ms:.0f} ms "
            f"(+{clear.played_ms - clear.full_frames_ms:.1f} ms of a frame) when it arrived; "
            f"truncate audio_end_ms={end_ms}; "
            f"{clear.marks_echoed} marks echoed by the clear"
        )
        assert 900 <= clear.full_frames_ms <= 1400
        assert abs(end_ms - clear.full_frames_ms) <= 20
        assert end_ms <= clear.played_ms
        assert truncate["item_id"] in rec.generated_ms
        assert not rec.errors, rec.errors  # the emulator accepted the truncate
        assert clear.marks_echoed > 0

        # Nothing of the cut reply arrives after the clear (no new reply can start before the
        # caller has finished talking).
        await caller.wait_said()
        assert [t for t, _ in caller.received if t > clear.at] == []
        (session,) = await bridge.sessions()
        twilio = session["twilio"]
        assert twilio["clears_sent"] == 1
        assert twilio["marks_cleared"] == clear.marks_echoed
        assert session["provider_stats"]["truncates_sent"] == 1
        assert not caller.violations
    finally:
        await caller.stop()
    await gone(bridge)


async def test_gemini_interruption_clears_twilio(gemini_bridge: Any) -> None:
    # Replies stream in real time and without voiceActivity: only `interrupted` can cut them.
    bridge, _emulator = await gemini_bridge(
        reply="tone", tone_hz=660, tone_seconds=3.0, speed=1.0, voice_activity=False
    )
    caller = TwilioCaller(stream_url(bridge), parameters={"provider": "gemini"})
    await caller.dial(bridge.http)
    try:
        caller.say(440, 0.8)
        await caller.wait_played(600)
        spoke_at = asyncio.get_running_loop().time()
        caller.say(880, 0.6)
        clear = await caller.wait_clear()
        print(
            f"\ntwilio gemini interruption: clear {(clear.at - spoke_at) * 1000:.0f} ms after "
            f"the caller spoke, {clear.full_frames_ms:.0f} ms played"
        )
        assert clear.full_frames_ms < 2000
        await caller.wait_said()
        assert [t for t, _ in caller.received if t > clear.at] == []
        (session,) = await bridge.sessions()
        assert session["twilio"]["clears_sent"] == 1
        assert not caller.violations
    finally:
        await caller.stop()
    await gone(bridge)


# -- the webhook -------------------------------------------------------------------------------

VOICE_PATH = "/telephony/twilio/voice"
TOKEN = "0123456789abcdef0123456789abcdef"  # a Twilio auth token is 32 hex digits
CALL_FORM = {
    "AccountSid": "AC" + "1" * 32,
    "CallSid": "CA" + "2" * 32,
    "From": "+15550001111",
    "To": "+15550002222",
    "CallStatus": "ringing",
}


async def post_voice(
    bridge: Bridge,
    query: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    async with bridge.http.post(
        bridge.url + VOICE_PATH, params=query or {}, data=form or CALL_FORM, headers=headers or {}
    ) as r:
        return r.status, r.content_type, await r.text()


def parse_twiml(text: str) -> tuple[str, dict[str, str]]:
    """The stream URL and parameters of ``<Response><Connect><Stream>``, checked strictly."""
    response = ET.fromstring(text)
    assert response.tag == "Response"
    (connect,) = response
    assert connect.tag == "Connect" and not connect.attrib
    (stream,) = connect
    assert stream.tag == "Stream" and set(stream.attrib) == {"url"}
    assert all(p.tag == "Parameter" and set(p.attrib) == {"name", "value"} for p in stream)
    return stream.attrib["url"], {p.attrib["name"]: p.attrib["value"] for p in stream}


async def test_the_webhook_answers_twiml_whose_stream_the_caller_can_follow(
    start_bridge: Any,
) -> None:
    bridge = await start_bridge(**FAST_ECHO)
    query = {
        "provider": "echo",
        "instructions": 'Say "hi" & <smile>\'s — ünïcode,\nthen stop.',
        "voice": "echo",  # echo's only voice (voices are checked per provider)
        "unrelated": "not passed on",
    }
    status, content_type, text = await post_voice(bridge, query)
    assert (status, content_type) == (200, "text/xml")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    url, parameters = parse_twiml(text)
    assert url == stream_url(bridge)
    assert parameters == {k: query[k] for k in ("provider", "instructions", "voice")}

    # Behind a TLS proxy the URL is wss:// on the public host; public_url wins over both.
    proxied = {"Host": "abc.ngrok.app", "X-Forwarded-Proto": "https"}
    _, _, text = await post_voice(bridge, headers=proxied)
    assert parse_twiml(text) == ("wss://abc.ngrok.app/telephony/twilio", {})
    public = await start_bridge(public_url="https://bridge.example.com/")
    _, _, text = await post_voice(public, {"model": "echo"}, headers=proxied)
    assert parse_twiml(text) == ("wss://bridge.example.com/telephony/twilio", {"model": "echo"})

    # Twilio dials the stream with the parameters as customParameters: the echo answers.
    caller = TwilioCaller(url, parameters=parameters)
    await caller.dial(bridge.http)
    try:
        caller.say(440, 0.5)
        await caller.wait_played(300)
        assert abs(dominant_frequency(caller.heard(), 8000) - 440) < 10
        (session,) = await bridge.sessions()
        assert (session["provider"], session["transport"]) == ("echo", "twilio")
    finally:
        await caller.stop()
    await gone(bridge)


async def test_the_webhook_refuses_what_the_stream_could_not_use(start_bridge: Any) -> None:
    bridge = await start_bridge(
        lock_instructions=True,
        session_defaults='{"instructions": "x"}',
        openai_api_key=OPENAI_TEST_KEY,
    )
    for query, code in (
        ({"provider": "nope"}, "unknown_provider"),
        ({"provider": "gemini"}, "provider_unavailable"),  # no key
        ({"provider": "openai", "model": "gpt-4o-realtime-preview"}, "model_retired"),
        ({"instructions": "bell \x07"}, "invalid_parameter"),
        ({"instructions": "mine"}, "locked_field"),
        ({"provider": "echo", "voice": "nobody"}, "invalid_session"),
    ):
        status, content_type, text = await post_voice(bridge, query)
        assert (status, content_type) == (400, "application/json"), text
        assert json.loads(text)["error"]["code"] == code


async def test_signed_webhooks_are_checked_against_twilios_own_validator(
    start_bridge: Any,
) -> None:
    validator = RequestValidator(TOKEN)
    bridge = await start_bridge(twilio_auth_token=TOKEN, public_url="https://bridge.example.com")
    query = {"provider": "echo", "instructions": "Be brief & kind"}
    url = "https://bridge.example.com" + VOICE_PATH + "?" + urlencode(query)
    good = validator.compute_signature(url, CALL_FORM)
    assert validator.validate(url, CALL_FORM, good)

    status, _, text = await post_voice(bridge, query, headers={"X-Twilio-Signature": good})
    assert status == 200, text
    assert parse_twiml(text)[1] == query
    refused = {
        "missing": ({}, CALL_FORM, query),
        "wrong": ({"X-Twilio-Signature": good[:-2] + "A="}, CALL_FORM, query),
        "form changed": ({"X-Twilio-Signature": good}, {**CALL_FORM, "From": "+1"}, query),
        "query changed": ({"X-Twilio-Signature": good}, CALL_FORM, {"provider": "gemini"}),
    }
    for case, (headers, form, q) in refused.items():
        status, _, text = await post_voice(bridge, q, form, headers)
        assert status == 403, case
        error = json.loads(text)["error"]
        assert error["code"] == "bad_signature" and error["message"], case
        assert TOKEN not in text

    # Without public_url the URL is the one the request names (Host, X-Forwarded-Proto).
    local = await start_bridge(twilio_auth_token=TOKEN)
    url = local.url + VOICE_PATH
    form = {**CALL_FORM, "Digits": "1", "SpeechResult": "héllo wörld"}
    signed = {"X-Twilio-Signature": validator.compute_signature(url, form)}
    assert (await post_voice(local, form=form, headers=signed))[0] == 200
    proxied = {"Host": "abc.ngrok.app", "X-Forwarded-Proto": "https"}
    signed = {
        "X-Twilio-Signature": validator.compute_signature(
            "https://abc.ngrok.app" + VOICE_PATH, form
        ),
        **proxied,
    }
    assert (await post_voice(local, form=form, headers=signed))[0] == 200
    assert (await post_voice(local, form=form, headers=proxied))[0] == 403


async def test_a_signed_bridge_refuses_unsigned_stream_upgrades(start_bridge: Any) -> None:
    bridge = await start_bridge(twilio_auth_token=TOKEN, **FAST_ECHO)
    for headers in ({}, {"X-Twilio-Signature": "bm90IGl0"}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await TwilioCaller(stream_url(bridge), headers=headers).dial(bridge.http)
        assert refused.value.status == 403
    assert await bridge.sessions() == []

    # Twilio signs the upgrade over the stream URL it dials, with no parameters.
    signed = {
        "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(stream_url(bridge), {})
    }
    caller = TwilioCaller(stream_url(bridge), headers=signed)
    await caller.dial(bridge.http)
    try:
        caller.say(440, 0.5)
        await caller.wait_played(300)
    finally:
        await caller.stop()
    await gone(bridge)


# -- hostile and odd input ---------------------------------------------------------------------

BAD_MESSAGES: list[str | bytes] = [
    "not json",
    "[1, 2]",
    '{"event": 5}',
    '{"no": "event"}',
    '{"event": "media"}',
    '{"event": "media", "media": []}',
    '{"event": "media", "media": {"payload": 160}}',
    '{"event": "media", "media": {"payload": "!!not base64!!"}}',
    '{"event": "media", "media": {"payload": "AAE"}}',  # bad padding
    '{"event": "media", "media": {"payload": ""}}',
    '{"event": "media", "media": {"track": "outbound", "payload": "/////w=="}}',
    '{"event": "mark", "mark": {"name": ""}}',
    '{"event": "mark", "mark": "x"}',
    '{"event": "dtmf", "dtmf": {"digit": 1}}',
    '{"event": "bogus"}',
    '{"event": "start", "start": {"streamSid": "MZ2", "mediaFormat": {}}}',  # a second start
    "[" * 50_000,  # deep nesting
    '{"event": "media", "media": {"payload": "' + "A" * 100_000 + '"}}',  # oversized
    b"\x00\x01binary",
]


async def test_malformed_messages_are_counted_and_the_call_goes_on(start_bridge: Any) -> None:
    bridge = await start_bridge(**FAST_ECHO)
    caller = TwilioCaller(stream_url(bridge))
    await caller.dial(bridge.http)
    try:
        for message in BAD_MESSAGES:
            await caller.send_raw(message)
        await caller.send({"event": "mark", "mark": {"name": "never-sent"}})
        await caller.dtmf("5")
        caller.say(440, 0.5)
        await caller.wait_played(300)
        assert abs(dominant_frequency(caller.heard(), 8000) - 440) < 10
        (session,) = await bridge.sessions()
        twilio = session["twilio"]
        assert twilio["dropped_total"] == len(BAD_MESSAGES), twilio["dropped"]
        assert twilio["dropped"]["oversized"] == 1
        assert twilio["dropped"]["unknown event"] == 1
        assert twilio["dropped"]["media payload is not base64"] == 2
        assert (twilio["marks_unknown"], twilio["dtmf"]) == (1, 1)
        assert not caller.violations

        # Only a message beyond any reason closes the socket, clearly (1009).
        await caller.send_raw("x" * (1024 * 1024 + 1))
        await caller.wait_closed()
        assert caller.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    finally:
        await caller.close()
    await gone(bridge)


@pytest.mark.parametrize(
    "parameters, media_format, code, reason",
    [
        ({"provider": "nope"}, None, 1008, "unknown_provider"),
        ({"provider": "echo", "instructions": 5}, None, 1008, "invalid_start"),
        ({}, {"encoding": "audio/x-alaw", "sampleRate": 8000, "channels": 1}, 1003, None),
        ({}, {"encoding": "audio/x-mulaw", "sampleRate": 16000, "channels": 1}, 1003, None),
    ],
)
async def test_a_start_the_bridge_cannot_serve_closes_the_stream(
    start_bridge: Any,
    parameters: dict[str, Any],
    media_format: dict[str, Any] | None,
    code: int,
    reason: str | None,
) -> None:
    bridge = await start_bridge()
    caller = TwilioCaller(stream_url(bridge), parameters=parameters, media_format=media_format)
    await caller.dial(bridge.http)
    try:
        await caller.wait_closed()
        assert caller.close_code == code
        if reason is not None:
            assert caller.close_reason == reason
    finally:
        await caller.close()
    await gone(bridge)


# -- how calls end -----------------------------------------------------------------------------


async def test_deleting_the_session_hangs_up_the_stream(start_bridge: Any) -> None:
    bridge = await start_bridge()
    caller = TwilioCaller(stream_url(bridge))
    await caller.dial(bridge.http)
    try:
        await listed(bridge)
        (session,) = await bridge.sessions()
        async with bridge.http.delete(f"{bridge.url}/sessions/{session['id']}") as r:
            assert r.status == 200
        await caller.wait_closed()
        assert (caller.close_code, caller.close_reason) == (1000, "deleted")
    finally:
        await caller.close()
    await gone(bridge)


async def test_a_provider_error_hangs_up_the_stream(openai_bridge: Any) -> None:
    bridge, _emulator = await openai_bridge(invalid_key=True)
    caller = TwilioCaller(stream_url(bridge))
    await caller.dial(bridge.http)
    try:
        await caller.wait_closed()
        assert (caller.close_code, caller.close_reason) == (1011, "provider_error")
    finally:
        await caller.close()
    await gone(bridge)


async def test_silent_sockets_are_closed(start_bridge: Any) -> None:
    bridge = await start_bridge(connect_timeout=0.3, inactivity_timeout=0.3)
    never_starts = TwilioCaller(stream_url(bridge))
    await never_starts.dial(bridge.http, start=False)
    goes_quiet = TwilioCaller(stream_url(bridge))
    await goes_quiet.dial(bridge.http)
    try:
        await never_starts.wait_closed()
        assert never_starts.close_reason == "connect_timeout"
        goes_quiet.mute()
        await goes_quiet.wait_closed()
        assert (goes_quiet.close_code, goes_quiet.close_reason) == (1000, "inactive")
    finally:
        await never_starts.close()
        await goes_quiet.close()
    await gone(bridge)


async def test_a_full_bridge_refuses_the_stream_and_shutdown_hangs_up(start_bridge: Any) -> None:
    bridge = await start_bridge(max_sessions=1)
    first, second = TwilioCaller(stream_url(bridge)), TwilioCaller(stream_url(bridge))
    await first.dial(bridge.http)
    try:
        await listed(bridge)
        await second.dial(bridge.http)
        await second.wait_closed()
        assert (second.close_code, second.close_reason) == (1013, "at_capacity")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await bridge.server.close()
        await first.wait_closed()
        assert (first.close_code, first.close_reason) == (1001, "server_shutdown")
        print(f"\ntwilio: shutdown with a live stream took {(loop.time() - started) * 1000:.0f} ms")
        assert loop.time() - started < 2
    finally:
        await first.close()
        await second.close()
    assert not list(bridge.registry)
    assert our_tasks() == []

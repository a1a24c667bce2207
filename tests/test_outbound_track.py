"""The outbound track: paced 20 ms packets, silence when idle, flush, played-ms accounting."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from bridge.transports.webrtc.outbound import OPUS, PCMU, OutboundAudioTrack
from tests.peer import dominant_frequency, rms, tone


def decode(packets: list[av.Packet], codec: str, rate: int) -> np.ndarray:
    ctx = av.CodecContext.create(codec, "r")
    ctx.sample_rate = rate
    ctx.layout = "mono"
    ctx.format = "s16"
    out = []
    for p in packets:
        for frame in ctx.decode(p):
            out.append(frame.to_ndarray().reshape(-1))
    return np.concatenate(out)


async def take(track: OutboundAudioTrack, n: int) -> list[av.Packet]:
    return [await track.recv() for _ in range(n)]


async def test_packets_are_paced_contiguous_20ms_opus() -> None:
    track = OutboundAudioTrack()
    track.push(tone(440, 0.5, 24000).tobytes(), "r1")
    loop = asyncio.get_running_loop()
    started = loop.time()
    packets = await take(track, 20)
    elapsed = loop.time() - started
    assert elapsed >= 19 * 0.020 - 0.005, "the track must pace, not burst"
    assert elapsed < 1.5
    assert [p.pts for p in packets] == [i * 960 for i in range(20)]
    assert all(p.time_base == Fraction(1, 48000) for p in packets)
    audio = decode(packets, "libopus", 48000)
    assert abs(dominant_frequency(audio[4800:], 48000) - 440) < 10
    assert track.played_ms("r1") == 400
    assert track.buffered_ms == 100


async def test_silence_when_idle_and_after_the_reply() -> None:
    track = OutboundAudioTrack()
    silent = decode(await take(track, 5), "libopus", 48000)
    assert rms(silent) < 5
    track.push(tone(440, 0.1, 24000).tobytes(), "r1")
    audio = decode(await take(track, 12), "libopus", 48000)
    assert rms(audio[: 48000 // 10]) > 1000
    assert rms(audio[-48000 // 20 :]) < 50
    assert track.played_ms("r1") == 100
    assert not track.playing
    # Idle frames are the cached silence packet, not encoded again; the frame right after
    # the reply was encoded (the encoder's look-ahead holds the end of the reply).
    assert track.silent_frames == 5 + 12 - 6


async def test_flush_cuts_at_once_and_reports_what_played() -> None:
    track = OutboundAudioTrack()
    track.push(tone(440, 1.0, 24000).tobytes(), "r1")
    before = await take(track, 10)
    cut = track.flush()
    assert cut is not None and cut.item_id == "r1" and cut.played_ms == 200
    assert track.buffered_ms == 0
    audio = decode(before + await take(track, 5), "libopus", 48000)
    blocks = [rms(audio[i : i + 240]) for i in range(0, audio.size, 240)]  # 5 ms blocks
    assert min(blocks[10:38]) > 1000  # the reply played until the cut (after Opus warm-up)
    # The codec's look-ahead and decay (a few ms) is all that follows the cut.
    assert max(blocks[40 + 4 :]) < 50, [round(b) for b in blocks[36:]]
    assert track.flush() is None  # nothing left to cut


async def test_played_ms_is_counted_per_reply_item() -> None:
    track = OutboundAudioTrack()
    track.push(tone(440, 0.1, 24000).tobytes(), "a")
    track.push(tone(660, 0.2, 24000).tobytes(), "b")
    await take(track, 8)  # 160 ms: all of a, 60 ms of b
    assert track.played_ms("a") == 100
    assert track.played_ms("b") == 60
    assert track.played_ms("unknown") == 0


async def test_buffer_is_bounded() -> None:
    track = OutboundAudioTrack(max_buffer_ms=1000)
    track.push(tone(440, 1.5, 24000).tobytes(), "r1")
    assert track.buffered_ms == 1000
    assert track.dropped_ms == 500


async def test_pcmu_packets_for_telephony_peers() -> None:
    track = OutboundAudioTrack(codec=PCMU)
    track.push(tone(440, 0.3, 24000).tobytes(), "r1")
    packets = await take(track, 10)
    assert [p.pts for p in packets] == [i * 160 for i in range(10)]
    assert all(p.size == 160 and p.time_base == Fraction(1, 8000) for p in packets)
    audio = decode(packets, "pcm_mulaw", 8000)
    assert abs(dominant_frequency(audio, 8000) - 440) < 10


async def test_codec_is_fixed_once_started_and_stop_ends_recv() -> None:
    track = OutboundAudioTrack()
    assert track.codec is OPUS
    await track.recv()
    with pytest.raises(RuntimeError):
        track.set_codec(PCMU)
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()
    track.push(b"\x00\x00" * 480, "late")  # ignored after stop
    assert track.buffered_ms == 0


async def test_g711_from_the_provider_passes_through_to_a_g711_peer() -> None:
    from bridge.audio import g711
    from bridge.audio.format import PCMU_8K

    track = OutboundAudioTrack(codec=PCMU)
    track.set_source(PCMU_8K)
    assert track.passthrough
    ulaw = g711.encode(tone(440, 0.1, 8000), "pcmu")
    track.push(ulaw, "r1")
    packets = await take(track, 7)
    assert b"".join(bytes(p) for p in packets[:5]) == ulaw  # the provider's bytes, untouched
    assert bytes(packets[5]) == b"\xff" * 160  # mu-law silence after the reply
    assert track.played_ms("r1") == 100


async def test_g711_from_the_provider_is_decoded_for_an_opus_peer() -> None:
    from bridge.audio import g711
    from bridge.audio.format import PCMU_8K

    track = OutboundAudioTrack(codec=OPUS)
    track.set_source(PCMU_8K)
    assert not track.passthrough
    track.push(g711.encode(tone(440, 0.4, 8000), "pcmu"), "r1")
    audio = decode(await take(track, 20), "libopus", 48000)
    assert abs(dominant_frequency(audio[4800:19200], 48000) - 440) < 10
    with pytest.raises(RuntimeError):
        track.set_source(PCMU_8K)


@pytest.mark.parametrize("rate", [24000, 16000])
async def test_opus_is_encoded_at_the_providers_rate_without_a_resampler(rate: int) -> None:
    from bridge.audio.format import AudioFormat

    track = OutboundAudioTrack(codec=OPUS)
    track.set_source(AudioFormat("pcm16", rate))
    assert track.encode_rate == rate
    track.push(tone(1000, 0.4, rate).tobytes(), "r1")
    packets = await take(track, 20)
    assert track._resampler is None  # libopus took the provider's rate as it is
    assert [p.pts for p in packets] == [i * 960 for i in range(20)], "RTP time stays 48 kHz"
    audio = decode(packets, "libopus", 48000)
    assert abs(dominant_frequency(audio[4800:19200], 48000) - 1000) < 10
    assert rms(audio[4800:19200]) > 3000


async def test_odd_provider_rates_are_resampled_for_opus() -> None:
    from bridge.audio.format import AudioFormat

    track = OutboundAudioTrack(codec=OPUS)
    track.set_source(AudioFormat("pcm16", 22050))
    assert track.encode_rate == 48000
    track.push(tone(440, 0.4, 22050).tobytes(), "r1")
    audio = decode(await take(track, 20), "libopus", 48000)
    assert abs(dominant_frequency(audio[4800:19200], 48000) - 440) < 10


def test_opus_complexity_is_checked() -> None:
    with pytest.raises(ValueError, match="opus_complexity"):
        OutboundAudioTrack(opus_complexity=11)


async def test_tracks_on_one_clock_share_its_wakeups_and_stay_paced() -> None:
    from bridge.transports.webrtc.pacing import FrameClock

    clock = FrameClock(slots=2)
    tracks = [OutboundAudioTrack(clock=clock) for _ in range(8)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    got = await asyncio.gather(*(take(t, 25) for t in tracks))
    elapsed = loop.time() - started
    assert all(len(p) == 25 for p in got)
    assert elapsed >= 24 * 0.020 - 0.005, "shared pacing must still pace"
    assert elapsed < 2.0
    # 8 tracks x 25 frames on 2 phases: about 2 x 25 timer firings, not 200.
    assert clock.wakeups <= 2 * 26 + 2
    # Each phase holds half of the tracks.
    assert sorted(t._slot for t in tracks) == [0, 0, 0, 0, 1, 1, 1, 1]


async def test_a_cancelled_waiter_does_not_stop_its_neighbours() -> None:
    from bridge.transports.webrtc.pacing import FrameClock

    clock = FrameClock(slots=1)
    tick = clock.first_sub_tick(asyncio.get_running_loop().time(), 0) + 2
    first, second = (asyncio.ensure_future(clock.wait(tick)) for _ in range(2))
    await asyncio.sleep(0)
    assert not first.done() and not second.done()
    first.cancel()
    await asyncio.wait_for(second, 1.0)  # the shared tick still comes for the other one
    assert first.cancelled()
    assert clock.wakeups == 1


async def test_a_starved_track_catches_up_briefly_then_re_anchors() -> None:
    track = OutboundAudioTrack(max_lateness_ms=100)
    await take(track, 2)
    await asyncio.sleep(0.06)  # 3 frames behind: sent at once, no re-anchor
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await take(track, 3)
    assert loop.time() - t0 < 0.015
    assert track.late_resets == 0
    await asyncio.sleep(0.3)  # far behind: re-anchored instead of a burst of 15 frames
    t0 = loop.time()
    await take(track, 3)
    assert track.late_resets == 1
    assert loop.time() - t0 >= 0.035


# -- driven by the clock (the media fast path) -----------------------------------------------


async def test_a_driven_track_is_paced_by_the_clock_and_parks_aiortcs_recv() -> None:
    from bridge.transports.webrtc.pacing import FrameClock

    clock = FrameClock(slots=2)
    track = OutboundAudioTrack(clock=clock)
    loop = asyncio.get_running_loop()
    sent: list[tuple[float, bytes, int]] = []
    assert track.drive(lambda payload, t: sent.append((loop.time(), payload, t)) is None)
    assert track.driven and not track.drive(lambda p, t: True)  # once only
    parked = asyncio.ensure_future(track.recv())  # what aiortc's sender loop does
    track.push(tone(440, 0.2, 24000).tobytes(), "item")
    while len(sent) < 25:
        await asyncio.sleep(0.02)
    assert not parked.done()
    times = [t for t, _, _ in sent]
    assert [r for _, _, r in sent[:25]] == [960 * i for i in range(25)]  # contiguous RTP time
    assert (times[24] - times[0]) >= 24 * 0.020 - 0.005  # paced, not a burst
    assert float(np.median(np.diff(times))) == pytest.approx(0.020, abs=0.004)
    assert track.audio_frames_sent == 10 and track.played_ms("item") == 200
    heard = decode([av.Packet(p) for _, p, _ in sent], "libopus", 48000)
    assert abs(dominant_frequency(heard, 48000) - 440) < 10
    track.stop()
    assert not clock._tickers and not track.driven  # at once, not at the next tick
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(parked, 1.0)
    count = len(sent)
    await asyncio.sleep(0.1)
    assert len(sent) == count and not clock._tickers and not track.driven


async def test_a_driven_track_stops_sending_when_its_transport_is_gone() -> None:
    from bridge.transports.webrtc.pacing import FrameClock

    clock = FrameClock(slots=1)
    track = OutboundAudioTrack(clock=clock)
    calls: list[int] = []
    track.drive(lambda payload, t: calls.append(t) is None and len(calls) < 3)
    await asyncio.sleep(0.15)
    assert len(calls) == 3 and not clock._tickers and not track.driven
    assert track.readyState == "live"  # the call, not the track, decides when it ends


async def test_only_an_unstarted_track_can_be_driven() -> None:
    track = OutboundAudioTrack()
    await track.recv()
    assert not track.drive(lambda p, t: True)
    made: list[int] = []
    track.drive_when_sending(lambda: made.append(1) and None)  # never called after a frame
    await track.recv()
    assert made == [] and not track.driven


async def test_a_ticker_that_raises_is_removed_and_the_others_go_on() -> None:
    from bridge.transports.webrtc.pacing import FrameClock

    clock = FrameClock(slots=2)
    good: list[float] = []

    def bad(now: float) -> None:
        raise RuntimeError("broken call")

    clock.add_ticker(bad)
    remove = clock.add_ticker(good.append)
    while len(good) < 6:
        await asyncio.sleep(0.01)
    assert len(clock._tickers) == 1
    remove()
    remove()  # idempotent
    assert not clock._tickers
    assert np.diff(good).min() > 0.005  # one call per sub-tick (10 ms with 2 slots)

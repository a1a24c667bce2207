"""The playout buffer, clock-free: pre-roll for slow replies, underruns, flush, accounting."""

from __future__ import annotations

import numpy as np

from bridge.audio.playout import PlayoutBuffer, PlayoutPolicy

RATE = 24000
FRAME = 480  # 20 ms


def chunk(ms: int, value: int = 1000) -> np.ndarray:
    return np.full(RATE * ms // 1000, value, dtype=np.int16)


def simulate(
    buf: PlayoutBuffer, arrival_rate: float, reply_ms: int, chunk_ms: int = 40
) -> list[bool]:
    """Feed a reply at ``arrival_rate`` x real time while playing 20 ms frames; which frames
    carried audio, from the first audio frame to the last."""
    frames: list[bool] = []
    sent = 0
    t = 0.0
    while sent < reply_ms or buf.buffered_ms or buf.holding:
        # the provider has delivered reply audio up to arrival_rate * t
        while sent < reply_ms and sent + chunk_ms <= arrival_rate * t * 1000 + chunk_ms:
            buf.push(chunk(chunk_ms), "r1", t)
            sent += chunk_ms
            if sent >= reply_ms:
                buf.end_of_reply("r1")
        _, audio = buf.take(FRAME, t)
        frames.append(audio)
        t += 0.02
        if t > 60:
            raise AssertionError("did not finish")
    first, last = frames.index(True), len(frames) - 1 - frames[::-1].index(True)
    return frames[first : last + 1]


def test_without_a_policy_audio_plays_at_once() -> None:
    buf = PlayoutBuffer(RATE, max_ms=10_000)
    buf.push(chunk(40), "r1", 0.0)
    _, audio = buf.take(FRAME, 0.0)
    assert audio


def test_a_slow_reply_plays_without_gaps_after_an_adaptive_preroll() -> None:
    policy = PlayoutPolicy(base_preroll_ms=120, horizon_ms=4000, max_preroll_ms=1500)
    buf = PlayoutBuffer(RATE, max_ms=30_000, policy=policy)
    frames = simulate(buf, arrival_rate=0.8, reply_ms=3000)
    assert all(frames), f"{frames.count(False)} silent frames inside the reply"
    assert buf.rebuffers == 0 and buf.gap_ms == 0
    assert len(frames) == 150  # 3 s of audio, all of it


def test_the_same_slow_reply_stutters_without_preroll() -> None:
    """Negative control: the mechanism above is what prevents the gaps."""
    buf = PlayoutBuffer(RATE, max_ms=30_000)
    frames = simulate(buf, arrival_rate=0.8, reply_ms=3000)
    assert not all(frames)
    assert buf.gap_ms > 0


def test_a_fast_reply_gets_only_the_base_preroll() -> None:
    policy = PlayoutPolicy(base_preroll_ms=120, horizon_ms=4000, max_preroll_ms=1500)
    buf = PlayoutBuffer(RATE, max_ms=30_000, policy=policy)
    buf.push(chunk(100), "r1", 0.0)
    assert buf.take(FRAME, 0.0)[1] is False  # holding: 100 ms < 120 ms
    buf.push(chunk(100), "r1", 0.02)
    assert buf.take(FRAME, 0.02)[1] is True  # 200 ms buffered after 20 ms: fast, no extension
    assert buf.target_ms(0.05) == 120  # too early to judge the rate: base only


def test_a_complete_reply_plays_at_once_and_preroll_has_a_wall_clock_cap() -> None:
    policy = PlayoutPolicy(base_preroll_ms=500, max_wait_ms=100)
    buf = PlayoutBuffer(RATE, max_ms=30_000, policy=policy)
    buf.push(chunk(60), "short", 0.0)
    buf.end_of_reply("short")
    assert buf.take(FRAME, 0.0)[1]
    buf.take(FRAME, 0.02), buf.take(FRAME, 0.04)
    buf.push(chunk(60), "slow", 1.0)
    assert not buf.take(FRAME, 1.05)[1]
    assert buf.take(FRAME, 1.11)[1]  # waited max_wait_ms, plays what it has


def test_flush_reports_the_cut_and_drops_late_audio_of_that_reply() -> None:
    buf = PlayoutBuffer(RATE, max_ms=30_000)
    buf.push(chunk(200), "r1", 0.0)
    for i in range(5):
        buf.take(FRAME, i * 0.02)
    cut = buf.flush()
    assert cut is not None and (cut.item_id, cut.played_ms) == ("r1", 100)
    buf.push(chunk(100), "r1", 0.2)  # the provider had not stopped yet
    assert buf.buffered_ms == 0
    buf.push(chunk(100), "r2", 0.3)  # the next reply plays
    assert buf.take(FRAME, 0.3)[1]
    assert buf.flush() is not None


def test_the_buffer_is_bounded() -> None:
    buf = PlayoutBuffer(RATE, max_ms=1000)
    buf.push(chunk(1500), "r1", 0.0)
    assert (buf.buffered_ms, buf.dropped_ms) == (1000, 500)

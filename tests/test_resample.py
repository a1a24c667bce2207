"""The stateful resampler: chunked streaming must equal resampling the whole signal."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from bridge.audio.resample import Resampler, split
from tests.support import snr_db, snr_vs_ideal_tone


def frames_of(
    signal: np.ndarray, rate: int, layout: str, samples_per_frame: int
) -> list[av.AudioFrame]:
    channels = 2 if layout == "stereo" else 1
    frames = []
    for pts in range(0, signal.size // channels, samples_per_frame):
        chunk = signal[pts * channels : (pts + samples_per_frame) * channels]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = rate
        frame.pts = pts
        frame.time_base = Fraction(1, rate)
        frames.append(frame)
    return frames


def sine(rate: int, seconds: float, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = (np.sin(2 * np.pi * freq * t) * 12000).astype(np.int16)
    return np.repeat(mono, channels) if channels > 1 else mono


CASES = [
    # in rate, layout, out rate: Opus from aiortc is 48 kHz stereo, G.711 is 8 kHz mono.
    (48000, "stereo", 24000),
    (48000, "stereo", 16000),
    (8000, "mono", 24000),
    (8000, "mono", 16000),
]


@pytest.mark.parametrize("in_rate, layout, out_rate", CASES)
def test_chunked_stream_matches_whole_signal(in_rate: int, layout: str, out_rate: int) -> None:
    channels = 2 if layout == "stereo" else 1
    signal = sine(in_rate, 2.0, channels=channels)
    (whole_frame,) = frames_of(signal, in_rate, layout, signal.size // channels)
    reference = Resampler(out_rate).resample(whole_frame)

    stream = Resampler(out_rate)
    chunks = [stream.resample(f) for f in frames_of(signal, in_rate, layout, in_rate // 50)]
    streamed = np.concatenate(chunks)

    # Compare all but the last 10 ms (the whole-signal run holds back a different tail).
    n = min(reference.size, streamed.size) - out_rate // 100
    snr = snr_db(reference[:n], streamed[:n])
    tone_snr = snr_vs_ideal_tone(streamed[out_rate // 100 : n], out_rate)
    print(
        f"\n{in_rate} Hz {layout} -> {out_rate} Hz mono in 20 ms chunks: "
        f"SNR vs whole-signal resample {snr:.1f} dB, vs an ideal 440 Hz sine {tone_snr:.1f} dB"
    )
    assert snr > 60, snr
    assert tone_snr > 40, tone_snr
    # And it is really the tone, at the right rate.
    spectrum = np.abs(np.fft.rfft(streamed[:out_rate] * np.hanning(out_rate)))
    assert abs(np.argmax(spectrum) - 440) <= 1


def test_independent_chunks_would_click() -> None:
    """Negative control: a fresh resampler per chunk is measurably worse, so the test above
    can fail when the state is lost between chunks."""
    signal = sine(48000, 1.0, channels=2)
    (whole,) = frames_of(signal, 48000, "stereo", 48000)
    reference = Resampler(24000).resample(whole)
    stateless = np.concatenate(
        [Resampler(24000).resample(f) for f in frames_of(signal, 48000, "stereo", 960)]
    )
    assert snr_db(reference, stateless) < 40


def test_codec_switch_rebuilds_the_resampler() -> None:
    stream = Resampler(24000)
    stream.resample(frames_of(sine(48000, 0.02, channels=2), 48000, "stereo", 960)[0])
    out = stream.resample(frames_of(sine(8000, 0.02), 8000, "mono", 160)[0])
    assert stream.rebuilds == 1
    assert out.size > 0


def test_pcm_at_the_target_rate_passes_through() -> None:
    samples = sine(24000, 0.1)
    assert Resampler(24000).resample_pcm(samples, 24000) is samples


def test_split_cuts_pieces_and_holds_nothing_back() -> None:
    pieces = split(np.arange(1000, dtype=np.int16), 480)
    assert [len(p) for p in pieces] == [960, 960, 80]
    assert np.frombuffer(pieces[2], dtype="<i2")[0] == 960
    assert split(np.zeros(0, dtype=np.int16), 480) == []

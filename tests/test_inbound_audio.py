"""The inbound fast path: Opus straight to the provider's rate (libopus), or through PyAV and a
resampler when libopus can't be used; G.711 by table; bad packets counted, never raised."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.audio import g711
from bridge.audio.format import PCM16_16K, PCM16_24K, PCMU_8K, AudioFormat
from bridge.transports.webrtc.inbound import InboundAudio
from tests.peer import dominant_frequency, rms, tone

PAYLOAD_TYPES = {96: "opus", 0: "pcmu"}


def opus_packets(freq: float, seconds: float) -> list[bytes]:
    ctx = av.CodecContext.create("libopus", "w")
    ctx.format, ctx.layout, ctx.sample_rate = "s16", "stereo", 48000  # type: ignore[attr-defined]
    ctx.time_base = Fraction(1, 48000)
    ctx.open()
    mono = tone(freq, seconds, 48000)
    packets: list[bytes] = []
    for i in range(0, mono.size - 959, 960):
        stereo = np.repeat(mono[i : i + 960], 2).reshape(1, -1)  # as browsers send: 48k/2
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i, Fraction(1, 48000)
        packets += [bytes(p) for p in ctx.encode(frame)]  # type: ignore[attr-defined]
    return packets


def rtp(payload: bytes, seq: int, pt: int = 96) -> RtpPacket:
    packet = RtpPacket(payload_type=pt, sequence_number=seq, timestamp=seq * 960)
    packet._data = payload  # type: ignore[attr-defined]  # what aiortc's depayloader leaves
    return packet


def run(target: AudioFormat, packets: list[bytes], **kwargs: bool) -> tuple[InboundAudio, list]:
    chunks: list[bytes] = []
    inbound = InboundAudio(PAYLOAD_TYPES, target, chunks.append, lambda: 0.0, **kwargs)
    for seq, payload in enumerate(packets):
        inbound.add(rtp(payload, seq))
    return inbound, chunks


@pytest.mark.parametrize("target", [PCM16_24K, PCM16_16K], ids=["24k", "16k"])
@pytest.mark.parametrize("direct", [True, False], ids=["libopus", "pyav"])
def test_opus_arrives_at_the_providers_rate(target: AudioFormat, direct: bool) -> None:
    packets = opus_packets(1000, 1.0)
    inbound, chunks = run(target, packets, direct_opus=direct)
    assert (inbound._direct is not None) == direct
    assert inbound.decode_errors == 0
    pcm = np.frombuffer(b"".join(chunks), dtype="<i2")
    assert all(len(c) <= target.rate * 20 // 1000 * 2 for c in chunks), "20 ms pieces at most"
    assert abs(pcm.size - target.rate) <= target.rate // 50  # 1 s in, about 1 s out
    body = pcm[target.rate // 5 :]
    assert abs(dominant_frequency(body, target.rate) - 1000) < 5
    assert rms(body) > 3000


def test_opus_for_a_g711_provider_is_decoded_at_8k_and_encoded() -> None:
    inbound, chunks = run(PCMU_8K, opus_packets(440, 1.0))
    assert inbound._direct is not None and inbound._direct.rate == 8000
    pcm = g711.decode(b"".join(chunks), "pcmu")
    assert abs(dominant_frequency(pcm[1600:], 8000) - 440) < 5


def test_g711_for_a_pcm16_provider_is_resampled() -> None:
    ulaw = g711.encode(tone(440, 1.0, 8000), "pcmu")
    chunks: list[bytes] = []
    inbound = InboundAudio(PAYLOAD_TYPES, PCM16_24K, chunks.append, lambda: 0.0)
    for seq, i in enumerate(range(0, len(ulaw), 160)):
        inbound.add(rtp(ulaw[i : i + 160], seq, pt=0))
    pcm = np.frombuffer(b"".join(chunks), dtype="<i2")
    assert abs(dominant_frequency(pcm[4800:], 24000) - 440) < 5


def test_a_bad_packet_is_counted_and_the_stream_goes_on() -> None:
    packets = opus_packets(1000, 0.4)
    packets.insert(5, b"")  # empty: libopus refuses it
    packets.insert(9, b"\xff" * 3)  # a malformed TOC
    inbound, chunks = run(PCM16_24K, packets)
    assert inbound.decode_errors == 2
    pcm = np.frombuffer(b"".join(chunks), dtype="<i2")
    assert abs(dominant_frequency(pcm[4800:], 24000) - 1000) < 5


@settings(max_examples=200, deadline=None)
@given(payloads=st.lists(st.binary(max_size=400), min_size=1, max_size=20))
def test_any_payload_is_decoded_or_counted(payloads: list[bytes]) -> None:
    """Whatever a peer sends as Opus, add() returns and the counts add up."""
    inbound, chunks = run(PCM16_24K, payloads)
    assert inbound.packets == len(payloads)
    assert inbound.decode_errors <= len(payloads)
    assert all(len(c) % 2 == 0 for c in chunks)


def test_the_direct_decoder_refuses_rates_libopus_lacks() -> None:
    from bridge.audio import opus

    assert opus.decoder(22050) is None
    direct = opus.decoder(24000)
    assert direct is not None
    silence = direct.decode(opus_packets(0, 0.1)[0])
    assert silence.dtype == np.int16 and silence.size == 480
    direct.close()
    direct.close()  # idempotent
    with pytest.raises(opus.OpusError):
        direct.decode(b"\x00")


def test_close_frees_the_decoder_and_later_packets_are_ignored() -> None:
    packets = opus_packets(1000, 0.2)
    inbound, chunks = run(PCM16_24K, packets[:5])
    direct = inbound._direct
    assert direct is not None
    inbound.close()
    inbound.close()  # idempotent
    assert direct._handle is None and inbound._direct is None
    delivered = len(chunks)
    inbound.add(rtp(packets[5], 5))
    assert len(chunks) == delivered and inbound.decode_errors == 0

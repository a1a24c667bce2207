"""Price table and G.711 codec."""

from __future__ import annotations

import datetime
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.audio import g711
from bridge.core.pricing import (
    PER_MINUTE,
    PRICES_VERSION,
    ModalityPrices,
    gemini_cost,
    gemini_prices,
    openai_cost,
    openai_prices,
    price,
)
from bridge.providers.models import GEMINI_LIVE_MODELS, OPENAI_REALTIME_MODELS

CHECKED = datetime.date(2026, 11, 23)

USAGE = {
    "input_token_details": {
        "text_tokens": 1000,
        "audio_tokens": 2000,
        "image_tokens": 0,
        "cached_tokens_details": {"text_tokens": 500, "audio_tokens": 1000},
    },
    "output_token_details": {"text_tokens": 300, "audio_tokens": 4000},
}


def test_gpt_realtime_cost() -> None:
    # text 500*4 + 500*0.4, audio 1000*32 + 1000*0.4, out 300*16 + 4000*64 (per 1M tokens)
    expected = (500 * 4 + 500 * 0.4 + 1000 * 32 + 1000 * 0.4 + 300 * 16 + 4000 * 64) / 1e6
    assert openai_cost("gpt-realtime", USAGE) == pytest.approx(expected)
    assert openai_cost("gpt-realtime-2025-08-28", USAGE) == pytest.approx(expected)
    assert PRICES_VERSION


def test_model_families_do_not_collide() -> None:
    assert openai_prices("gpt-realtime-2") != openai_prices("gpt-realtime")
    assert openai_prices("gpt-realtime-2.1") == openai_prices("gpt-realtime-2")
    assert openai_prices("gpt-realtime-mini-2025-12-15") == openai_prices("gpt-realtime-mini")
    # The retired beta family is unavailable: no price rather than a stale one.
    assert openai_prices("gpt-4o-realtime-preview-2024-12-17") is None


def test_every_current_model_has_a_price() -> None:
    assert PRICES_VERSION == "2026-11-23"
    for model, lifecycle in OPENAI_REALTIME_MODELS.items():
        if not model.startswith("gpt-audio") and lifecycle.status(CHECKED) != "retired":
            assert openai_prices(model) is not None, model
    for model, rules in GEMINI_LIVE_MODELS.items():
        if rules.lifecycle.status(CHECKED) == "current":
            assert gemini_prices(model) is not None, model
    # protocols-2026.md Part D, row by row
    assert gemini_prices("gemini-3.8-live") == ModalityPrices(0.75, 3.00, 4.50, 12.00)
    assert gemini_prices("models/gemini-3.1-flash-live-preview") == gemini_prices("gemini-3.8-live")
    assert gemini_prices("gemini-2.5-flash-native-audio-preview-12-2025") == ModalityPrices(
        0.50, 3.00, 2.00, 12.00
    )
    mini = openai_prices("gpt-realtime-2.1-mini")
    assert mini is not None and (mini.text_out, mini.audio_out, mini.image_cached) == (
        2.40,
        20.00,
        0.08,
    )
    assert PER_MINUTE["gpt-live-1.1"]["active"] == 0.05


def test_cached_tokens_are_part_of_input_never_billed_twice() -> None:
    usage = {
        "input_token_details": {
            "text_tokens": 100,
            "audio_tokens": 0,
            "cached_tokens_details": {"text_tokens": 100},
        },
        "output_token_details": {},
    }
    assert openai_cost("gpt-realtime-2.1", usage) == pytest.approx(100 * 0.40 / 1e6)


def test_gemini_bills_each_snapshot_and_thinking_as_text_out() -> None:
    usage = {"promptTokenCount": 100, "responseTokenCount": 10, "thoughtsTokenCount": 5}
    assert gemini_cost("gemini-3.8-live", usage) == pytest.approx((100 * 0.75 + 15 * 4.5) / 1e6)
    assert gemini_cost("models/gemini-9-live", usage) is None


def test_unknown_model_is_null_not_zero() -> None:
    assert openai_cost("gpt-9-realtime", USAGE) is None
    assert openai_cost("gpt-realtime", {}) == 0.0


def _ulaw_ref(s16: int) -> int:
    """shared/protocols.md Appendix B, literally."""
    s = s16 >> 2
    mask = 0x7F if s < 0 else 0xFF
    s = min(-s if s < 0 else s, 8159) + 0x21
    for seg, end in enumerate([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]):
        if s <= end:
            return ((seg << 4) | ((s >> (seg + 1)) & 0x0F)) ^ mask
    return 0x7F ^ mask


def _alaw_ref(s16: int) -> int:
    s = s16 >> 3
    if s >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        s = -s - 1
    for seg, end in enumerate([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]):
        if s <= end:
            a = seg << 4
            a |= ((s >> 1) if seg < 2 else (s >> seg)) & 0x0F
            return a ^ mask
    return 0x7F ^ mask


def test_g711_is_bit_exact_with_the_reference() -> None:
    samples = np.arange(-32768, 32768, 7, dtype=np.int32).astype(np.int16)
    assert g711.encode(samples, "pcmu") == bytes(_ulaw_ref(int(s)) for s in samples)
    assert g711.encode(samples, "pcma") == bytes(_alaw_ref(int(s)) for s in samples)
    assert g711.encode(np.zeros(1, np.int16), "pcmu") == b"\xff"
    assert g711.encode(np.zeros(1, np.int16), "pcma") == b"\xd5"


def test_g711_decode_encode_round_trips_every_code() -> None:
    codes = bytes(range(256))
    for law in ("pcmu", "pcma"):
        again = g711.encode(g711.decode(codes, law), law)
        # mu-law has two zeros (0x7F and 0xFF); everything else comes back unchanged.
        assert sum(a != b for a, b in zip(codes, again, strict=True)) <= 1, law


@given(
    value=st.one_of(
        st.floats(),  # NaN, infinities included
        st.integers(-(10**30), 10**30),
        st.text(max_size=5),
        st.none(),
        st.booleans(),
    ),
    key=st.sampled_from(["text_tokens", "audio_tokens", "tokenCount", "promptTokenCount"]),
)
def test_any_usage_report_prices_to_a_finite_cost_or_none(value: object, key: str) -> None:
    """A provider's usage report is outside input: pricing never raises and never returns
    NaN, infinity or a negative amount (it would end the call, or poison the totals)."""
    reports = [
        ("openai", "gpt-realtime-2.1", {"input_token_details": {key: value}}),
        ("openai", "gpt-realtime-2.1", {"output_token_details": {key: value, "cached": value}}),
        ("gemini", "gemini-3.8-live", {key: value, "promptTokensDetails": [{key: value}]}),
        (
            "gemini",
            "gemini-3.8-live",
            {"responseTokensDetails": [{"modality": "AUDIO", key: value}]},
        ),
    ]
    for provider, model, usage in reports:
        cost = price(provider, model, usage)
        assert cost is None or (math.isfinite(cost) and cost >= 0), (usage, cost)

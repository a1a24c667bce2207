"""The Python SDK (``create_engine`` / ``create_realtime``) against the emulators and echo, over
real sockets: one script for every provider, audio in chunks, plain synchronous use, hooks
and the cost collector."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from bridge import create_engine, create_realtime
from bridge.core import events as ev
from bridge.core import hooks
from bridge.core.pricing import CostCollector
from bridge.emulators.gemini import GeminiEmulator, GeminiEmulatorOptions
from tests.peer import dominant_frequency, tone
from tests.support import judge_gemini, wait_until


@pytest.fixture
async def gemini_emulator() -> AsyncIterator[GeminiEmulator]:
    emulator = GeminiEmulator(GeminiEmulatorOptions(reply="echo", tone_seconds=0.5))
    await emulator.start()
    yield emulator
    await emulator.stop()
    judge_gemini(emulator, clients=True)


@pytest.fixture
async def targets(start_openai_emulator: Any, gemini_emulator: GeminiEmulator) -> Any:
    """An engine whose OpenAI and Gemini are the emulators (echo is local)."""
    openai = await start_openai_emulator(reply="tone", tone_seconds=0.5)
    openai.bridge_is_client = True
    engine = create_engine(
        api_keys={"openai": "sk-sdk-test", "gemini": "AIza-sdk-test"},
        urls={"openai": openai.url, "gemini": gemini_emulator.url},
        register=False,
    )
    yield engine
    engine.close()


MODELS = ["openai/gpt-realtime-2.1", "gemini/gemini-3.8-live", "echo/echo"]


async def chat(engine: Any, model: str) -> list[ev.Event]:
    """The seed's text example, unchanged for every provider."""
    session = create_realtime(
        model, modalities=("text",), instructions="You are helpful.", engine=engine
    )
    session.send({"text": "Hello! Tell me a short joke."})  # before open: queued, not lost
    seen: list[ev.Event] = []
    async with asyncio.timeout(15):
        async for event in session:
            seen.append(event)
            if event.type == "usage":
                session.close()
    return seen


@pytest.mark.parametrize("model", MODELS)
async def test_one_script_for_every_provider(targets: Any, model: str) -> None:
    seen = await chat(targets, model)
    kinds = [e.type for e in seen]
    assert kinds[0] == "open" and kinds[-1] == "close", kinds
    text = "".join(e.delta for e in seen if isinstance(e, ev.TextDelta))
    assert text.strip(), kinds
    assert kinds.index("text") < kinds.index("turnComplete") < kinds.index("usage")
    (usage,) = [e for e in seen if isinstance(e, ev.Usage)]
    provider = model.split("/")[0]
    if provider == "echo":
        assert usage.cost_usd == 0.0
    else:
        assert usage.cost_usd is not None and usage.cost_usd > 0
    assert isinstance(seen[-1], ev.Close) and seen[-1].reason == "client_closed"
    assert targets.costs.providers[provider].reports == 1


@pytest.mark.parametrize("model", MODELS)
async def test_audio_in_chunks_then_committed(targets: Any, model: str) -> None:
    session = create_realtime(model, modalities=("audio",), engine=targets)
    rate = session.input_format.rate
    assert session.input_format.encoding == "pcm16" and rate == (
        16000 if "gemini" in model else 24000
    )
    speech = tone(440, 0.6, rate).astype("<i2").tobytes()
    step = rate * 2 // 10  # 100 ms
    for i in range(0, len(speech), step):
        session.send({"audio": speech[i : i + step]}, turn_complete=False)
    session.send({"audio": b"\x00\x00" * (rate // 50)})  # the last chunk commits the turn
    audio: list[ev.AudioOut] = []
    async with asyncio.timeout(15):
        async for event in session:
            if isinstance(event, ev.AudioOut):
                audio.append(event)
            if event.type == "turnComplete":
                break
    await session.aclose()
    assert audio, "no audio events"
    assert {(a.mime_type, a.sample_rate) for a in audio} == {("audio/pcm;rate=24000", 24000)}
    reply = np.frombuffer(b"".join(a.chunk for a in audio), "<i2")
    # echo and the Gemini emulator (reply="echo") replay what they heard; OpenAI's answers 660 Hz
    expected = 660 if model.startswith("openai") else 440
    assert abs(dominant_frequency(reply, 24000) - expected) < 10


async def test_turns_sent_back_to_back_stay_apart(targets: Any) -> None:
    """A commit takes in only the audio sent before it, even when both turns are sent before
    the first commit is applied (the reviewer's case: they merged into one 3 s turn)."""
    session = create_realtime("echo/echo", modalities=("text",), engine=targets)
    rate = session.input_format.rate
    session.send({"audio": tone(440, 1.0, rate).astype("<i2").tobytes()})
    session.send({"audio": tone(440, 2.0, rate).astype("<i2").tobytes()})
    replies: list[str] = []
    async with asyncio.timeout(15):
        async for event in session:
            if isinstance(event, ev.TextDelta):
                replies.append(event.delta)
            if len(replies) == 2:
                break
    await session.aclose()
    assert replies == ["(you spoke for 1.0 s)", "(you spoke for 2.0 s)"]


def test_bad_arguments_fail_at_once() -> None:
    engine = create_engine(api_keys={"openai": "sk-x"}, register=False)
    with pytest.raises(ValueError, match="unsupported provider 'anthropic'"):
        create_realtime("anthropic/claude", engine=engine)
    with pytest.raises(ValueError, match="echo, gemini, gpt-live, openai"):
        create_realtime("gpt-realtime-2.1", provider="azure", engine=engine)
    with pytest.raises(ValueError, match="names no provider"):
        create_realtime("gpt-realtime-2.1", engine=engine)
    with pytest.raises(ValueError, match="no API key for gemini"):
        create_realtime("gemini/gemini-3.8-live", engine=engine)
    with pytest.raises(ValueError, match="modalities"):
        create_realtime("echo/echo", modalities=("video",), engine=engine)
    with pytest.raises(ValueError, match=r"retired|shut down"):
        create_realtime("openai/gpt-4o-realtime-preview", engine=engine)
    with pytest.raises(RuntimeError, match="create_engine"):
        import bridge.sdk as sdk

        previous, sdk._default = sdk._default, None
        try:
            create_realtime("echo/echo")
        finally:
            sdk._default = previous


async def test_voice_is_deprecated_but_works(targets: Any) -> None:
    with pytest.warns(DeprecationWarning, match="audio=\\{'voice'"):
        session = create_realtime(
            "openai/gpt-realtime-2.1", modalities=("audio",), voice="cedar", engine=targets
        )
    async with asyncio.timeout(10):
        async for event in session:
            if event.type == "open":
                break
    assert session.conversation.config.voice == "cedar"
    await session.aclose()


async def test_hooks_carry_metadata_only(targets: Any) -> None:
    seen: dict[str, list[Any]] = {name: [] for name in hooks.HOOKS}
    unsubscribe = {name: targets.hooks.on(name, seen[name].append) for name in hooks.HOOKS}

    def broken(context: Any) -> None:
        raise RuntimeError("a hook that raises")

    targets.hooks.on("onRealtimeFrame", broken)
    targets.hooks.on("onCompletion", broken)
    events = await chat(targets, "gemini/gemini-3.8-live")
    assert [e.type for e in events][-1] == "close"  # the raising hooks broke nothing
    (opened,) = seen["onRealtimeOpen"]
    assert opened.provider == "gemini" and opened.model == "gemini-3.8-live"
    assert "AIza-sdk-test" not in opened.url and "key=[redacted]" in opened.url
    frames = seen["onRealtimeFrame"]
    assert {f.direction for f in frames} == {"in", "out"}
    for frame in frames:  # metadata only: never the payload
        assert set(vars(frame) if hasattr(frame, "__dict__") else frame.__slots__) == {
            "session_id",
            "provider",
            "model",
            "direction",
            "size",
        }
        assert isinstance(frame.size, int) and frame.size > 0
    (completion,) = seen["onCompletion"]
    assert completion.cost_usd is not None and completion.usage["promptTokenCount"] > 0
    assert [c.code for c in seen["onRealtimeClose"]] == [1000]
    count = len(seen["onRealtimeFrame"])
    unsubscribe["onRealtimeFrame"]()
    await chat(targets, "gemini/gemini-3.8-live")
    assert len(seen["onRealtimeFrame"]) == count  # unsubscribed: nothing more
    assert len(seen["onCompletion"]) == 2
    with pytest.raises(ValueError, match="unknown hook"):
        targets.hooks.on("onSomething", print)


def test_cost_totals_match_hand_computed_values() -> None:
    costs = CostCollector()
    openai_usage = {
        "input_token_details": {
            "text_tokens": 1000,
            "audio_tokens": 2000,
            "cached_tokens_details": {"text_tokens": 400, "audio_tokens": 500},
        },
        "output_token_details": {"text_tokens": 100, "audio_tokens": 3000},
    }
    # gpt-realtime-2.1: 600 text * 4 + 400 cached * 0.4 + 1500 audio * 32 + 500 cached * 0.4
    #                   + 100 * 24 + 3000 * 64 (USD per 1M tokens)
    openai_cost = (600 * 4 + 400 * 0.4 + 1500 * 32 + 500 * 0.4 + 100 * 24 + 3000 * 64) / 1e6
    gemini_usage = {
        "promptTokenCount": 1000,
        "responseTokenCount": 200,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": 100},
            {"modality": "AUDIO", "tokenCount": 900},
        ],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 200}],
    }
    gemini_cost = (100 * 0.75 + 900 * 3 + 200 * 12) / 1e6  # gemini-3.8-live
    assert costs.record("s1", "openai", "gpt-realtime-2.1", openai_usage) == pytest.approx(
        openai_cost
    )
    costs.record("s1", "openai", "gpt-realtime-2.1", openai_usage)
    costs.record("s2", "gemini", "gemini-3.8-live", gemini_usage)
    costs.record("s3", "echo", "echo", {"input_audio_seconds": 3})
    assert costs.sessions["s1"].usd == pytest.approx(2 * openai_cost)
    assert costs.providers["gemini"].usd == pytest.approx(gemini_cost)
    assert costs.models["openai/gpt-realtime-2.1"].reports == 2
    assert costs.total.usd == pytest.approx(2 * openai_cost + gemini_cost)
    assert costs.record("s4", "openai", "gpt-9-realtime", openai_usage) is None
    assert costs.models["openai/gpt-9-realtime"].usd is None  # unknown price: null, never 0
    assert costs.total.usd is None and costs.providers["gemini"].usd is not None
    assert math.isclose(costs.summary()["by_provider"]["echo"], 0.0)


def test_a_plain_script_without_an_event_loop(
    tmp_path: Any, run_emulator_process: Callable[..., str]
) -> None:
    """The seed's style: callbacks, then wait. No asyncio in the user's code."""
    url = run_emulator_process("openai", "--reply", "text")
    script = tmp_path / "chat.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from bridge import create_engine, create_realtime

            create_engine(api_keys={{"openai": "sk-script"}}, urls={{"openai": "{url}"}})
            session = create_realtime("openai/gpt-realtime-2.1", instructions="Be brief.")
            parts = []
            session.on("text", lambda e: parts.append(e.delta))
            session.on("turnComplete", lambda e: session.close())
            session.on("open", lambda e: session.send({{"text": "Hello!"}}))
            session.on("error", lambda e: print("error", e.code, e.message))
            assert session.wait(timeout=15), "no close within 15 s"
            print("TEXT:", "".join(parts))
            print("COST:", session.cost_usd)
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "TEXT: Hello! This is the OpenAI emulator speaking." in done.stdout
    cost = float(done.stdout.split("COST:")[1])
    assert cost > 0


async def test_errors_reach_the_error_hook_redacted(start_openai_emulator: Any) -> None:
    emulator = await start_openai_emulator(invalid_key_in_band=True)
    engine = create_engine(
        api_keys={"openai": "sk-secret-key-0123456789"},
        urls={"openai": emulator.url},
        register=False,
    )
    errors: list[Any] = []
    engine.hooks.on("onRealtimeError", errors.append)
    session = create_realtime("openai/gpt-realtime-2.1", engine=engine)
    async with asyncio.timeout(10):
        events = [event async for event in session]
    engine.close()
    (error,) = [e for e in events if isinstance(e, ev.Error)]
    assert error.code == "invalid_api_key" and "sk-secret" not in error.message
    assert [(e.code, e.fatal) for e in errors] == [("invalid_api_key", True)]
    assert "sk-secret" not in errors[0].message
    assert events[-1] == ev.Close("provider_error")


async def test_an_open_callback_registered_after_open_still_runs(targets: Any) -> None:
    session = create_realtime("echo/echo", modalities=("text",), engine=targets)
    async with asyncio.timeout(10):
        async for event in session:
            if event.type == "open":
                break
    opened: list[ev.Event] = []
    session.on("open", opened.append)  # late: called at once (on the loop), exactly once
    await asyncio.sleep(0)
    await session.aclose()
    assert [e.type for e in opened] == ["open"]


async def test_closing_while_the_provider_sets_up_leaves_no_socket() -> None:
    """A Gemini that accepts the socket but never answers ``setup``: the user hangs up
    meanwhile, and the half-open provider socket is closed (the reviewer found it kept)."""
    from websockets.asyncio.server import ServerConnection, serve

    live: set[ServerConnection] = set()
    arrived = asyncio.Event()

    async def silent(ws: ServerConnection) -> None:
        live.add(ws)
        arrived.set()
        try:
            await ws.wait_closed()
        finally:
            live.discard(ws)

    async with serve(silent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        engine = create_engine(
            api_keys={"gemini": "AIza-x"},
            urls={"gemini": f"ws://127.0.0.1:{port}/"},
            register=False,
        )
        seen: list[str] = []
        for name in ("onRealtimeOpen", "onRealtimeClose"):
            engine.hooks.on(name, lambda _, name=name: seen.append(name))
        for _ in range(3):
            arrived.clear()
            session = create_realtime("gemini/gemini-3.8-live", engine=engine)
            await asyncio.wait_for(arrived.wait(), 5)  # the socket is open, setup unanswered
            await session.aclose()

        async def all_closed() -> bool:
            return not live

        await wait_until(all_closed)
        engine.close()
    assert seen == ["onRealtimeOpen", "onRealtimeClose"] * 3

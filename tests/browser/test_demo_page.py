"""The demo page as people use it: Chromium, a microphone, the reply heard."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support import GEMINI_TEST_KEY, OPENAI_TEST_KEY

pytestmark = pytest.mark.browser

REPLY_ENERGY = """async () => {
  const report = await window.bridgeDemo.pc.getStats();
  let energy = 0;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') energy = s.totalAudioEnergy || 0;
  });
  return energy;
}"""


async def wait_for(page: Any, script: str, timeout_s: float = 20.0) -> None:
    await page.wait_for_function(script, timeout=timeout_s * 1000)


async def start_call(page: Any, url: str, provider: str | None = None) -> None:
    await page.goto(url + "/")
    await wait_for(page, "document.querySelector('#provider option[value=echo]') !== null")
    if provider:
        await page.select_option("#provider", provider)
    await page.click("#start")
    await wait_for(page, "document.querySelector('#state').textContent.trim() === 'connected'")


async def check_a_heard_turn(page: Any, events: tuple[str, ...]) -> float:
    """Wait for a whole turn and for reply audio to be decoded; returns its energy."""
    for kind in events:
        await wait_for(page, f"window.bridgeDemo.events.some(e => e.type === '{kind}')", 30)
    energy = 0.0
    for _ in range(100):
        energy = await page.evaluate(REPLY_ENERGY)
        if energy > 0.01:
            break
        await asyncio.sleep(0.1)
    assert energy > 0.01, "no reply audio reached the browser"
    attached = await page.evaluate(
        "document.querySelector('#remote-audio').srcObject?.getAudioTracks().length || 0"
    )
    assert attached == 1, "the remote track is not attached to the <audio> element"
    return float(energy)


async def stop_call(page: Any, bridge: Any) -> None:
    await page.click("#start")
    await wait_for(page, "document.querySelector('#state').textContent.trim() === 'idle'")
    for _ in range(100):
        if not await bridge.sessions():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the session outlived the call")


async def test_a_call_with_the_echo_provider(chromium: Any, bridge: Any, artifacts: Path) -> None:
    page = await chromium.new_page(viewport={"width": 1100, "height": 900})
    await start_call(page, bridge.url)
    await check_a_heard_turn(page, ("speechStarted", "speechStopped", "turnComplete"))
    transcript = await page.inner_text("#transcript")
    assert "s of speech" in transcript and "echo of" in transcript
    log = await page.text_content("#log") or ""  # the log is collapsed: not inner_text
    assert "speechStarted" in log and "turnComplete" in log
    await wait_for(page, "/\\d+ ms/.test(document.querySelector('#latency').textContent)")
    # Each turn's latency in plain words, how it was measured in its title.
    turn = page.locator("#latency-turns li").first
    assert re.fullmatch(r"Reply latency \d+ ms", (await turn.inner_text()).strip())
    assert "end of your speech" in (await turn.get_attribute("title") or "")
    # How long connecting took, stage by stage, as the bridge measured it (GET /sessions/{id}).
    await wait_for(page, "!document.querySelector('#connect-stages').hidden")
    stages = await page.inner_text("#connect-stages")
    assert re.fullmatch(r"Connected in \d+ ms \(ICE \d+, DTLS \d+, provider \d+\)", stages), stages
    # The meters move: the mic with the fake microphone's speech, the reply with the echo.
    for meter in ("#mic-meter", "#reply-meter"):
        await wait_for(
            page,
            f"parseFloat(document.querySelector('{meter}').style.getPropertyValue"
            "('--level') || '0') > 0.05",
        )
    await page.screenshot(path=str(artifacts / "echo-call.png"), full_page=True)
    await stop_call(page, bridge)


@pytest.mark.parametrize("provider", ["openai", "gemini"])
async def test_a_call_through_the_provider_picker(
    chromium: Any, start_bridge: Any, start_openai_emulator: Any, provider: str, artifacts: Path
) -> None:
    from bridge.emulators.gemini import GeminiEmulator, GeminiEmulatorOptions

    openai = await start_openai_emulator(reply="tone", tone_seconds=1.0)
    async with GeminiEmulator(GeminiEmulatorOptions(reply="tone", tone_seconds=1.0)) as gemini:
        bridge = await start_bridge(
            openai_url=openai.url,
            openai_api_key=OPENAI_TEST_KEY,
            gemini_url=gemini.url,
            gemini_api_key=GEMINI_TEST_KEY,
        )
        page = await chromium.new_page(viewport={"width": 1100, "height": 900})
        await start_call(page, bridge.url, provider)
        await check_a_heard_turn(page, ("transcript", "turnComplete", "usage"))
        (session,) = await bridge.sessions()
        assert session["provider"] == provider
        assert session["model"] == await page.input_value("#model")  # the picked model
        # The live cost: the sum of the usage events' cost_usd, as a dollar figure.
        cost = (await page.inner_text("#usage-cost")).strip()
        assert re.fullmatch(r"\$\d+\.\d{2,4}", cost), cost
        if provider == "openai":  # the emulator's tokens are priced: more than nothing
            assert float(cost[1:]) > 0, cost
        await wait_for(page, "!document.querySelector('#connect-stages').hidden")
        await page.screenshot(path=str(artifacts / f"{provider}-call.png"), full_page=True)
        await stop_call(page, bridge)
    emulator = openai if provider == "openai" else gemini
    assert emulator.sessions, f"the {provider} emulator was never called"


async def test_a_call_stopped_while_connecting_leaves_nothing_behind(
    chromium: Any, bridge: Any
) -> None:
    """Stop pressed mid-setup: the call's AbortController ends every step still in flight
    (listeners, fetches, timers); its session is deleted and the next call is unaffected."""
    page = await chromium.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(bridge.url + "/")
    await wait_for(page, "document.querySelector('#provider option[value=echo]') !== null")
    for delay_ms in (0, 50, 300):
        await page.click("#start")
        await page.wait_for_timeout(delay_ms)
        await page.click("#start")
        await wait_for(page, "document.querySelector('#state').textContent.trim() === 'idle'")
    await page.wait_for_timeout(500)  # a cancelled step that wrongly went on would show now
    assert (await page.inner_text("#state")).strip() == "idle"
    assert await page.is_hidden("#error")
    for _ in range(100):
        if not await bridge.sessions():
            break
        await asyncio.sleep(0.05)
    assert not await bridge.sessions(), "a cancelled call's session was left behind"
    await start_call(page, bridge.url)
    await check_a_heard_turn(page, ("speechStarted", "speechStopped", "turnComplete"))
    await stop_call(page, bridge)
    assert not errors, errors


@asynccontextmanager
async def call_on_own_bridge(chromium: Any) -> AsyncIterator[tuple[Any, subprocess.Popen[bytes]]]:
    """A page in a call with a bridge of its own (one process: a signal to it is a crash or
    a stop of the whole service); the process is killed afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "BRIDGE_PORT": str(port), "BRIDGE_ICE_ADDRESSES": "127.0.0.1",
           "BRIDGE_WORKERS": "1"}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "serve"], env=env)
    try:
        page = await chromium.new_page()
        for _ in range(100):
            try:
                await page.goto(f"http://127.0.0.1:{port}/")
                break
            except Exception:
                await asyncio.sleep(0.1)
        await start_call(page, f"http://127.0.0.1:{port}")
        yield page, proc
    finally:
        proc.kill()
        proc.wait()


async def test_a_lost_bridge_shows_a_readable_error(chromium: Any, artifacts: Path) -> None:
    async with call_on_own_bridge(chromium) as (page, proc):
        proc.send_signal(signal.SIGKILL)  # a crash: no goodbye on the data channel
        await wait_for(page, "!document.querySelector('#error').hidden", 45)
        message = await page.inner_text("#error")
        assert "connection to the bridge was lost" in message.lower()
        assert "start" in message.lower()  # it says what to do
        assert (await page.inner_text("#state")).strip() == "failed"
        await page.screenshot(path=str(artifacts / "lost-connection.png"), full_page=True)


PHONE_OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


async def test_the_page_fits_a_phone_screen(chromium: Any, bridge: Any, artifacts: Path) -> None:
    page = await chromium.new_page(viewport={"width": 360, "height": 740})
    await page.goto(bridge.url + "/")
    overflow = await page.evaluate(PHONE_OVERFLOW)
    assert overflow <= 0, f"{overflow} px of horizontal scroll on a 360 px screen"
    assert await page.is_visible("#start")
    # During a call, with turns, latencies and connect stages shown, it still fits...
    await start_call(page, bridge.url)
    await check_a_heard_turn(page, ("speechStarted", "speechStopped", "turnComplete"))
    await wait_for(page, "!document.querySelector('#connect-stages').hidden")
    await wait_for(page, "document.querySelector('#latency-turns li') !== null")
    overflow = await page.evaluate(PHONE_OVERFLOW)
    assert overflow <= 0, f"{overflow} px of horizontal scroll on a 360 px screen in a call"
    wider = await page.evaluate(
        """[...document.querySelectorAll('body *')].filter((el) => {
          const r = el.getBoundingClientRect();
          return r.width > 0 && r.right > document.documentElement.clientWidth + 1;
        }).map((el) => el.id || el.className || el.tagName)"""
    )
    assert not wider, f"wider than the screen: {wider}"
    # ...and the transcript is compact: the controls and the newest turns share the screen.
    height = await page.evaluate("document.querySelector('#transcript').offsetHeight")
    assert height <= 0.45 * 740, f"the transcript is {height} px tall on a 740 px screen"
    await page.screenshot(path=str(artifacts / "phone-call.png"), full_page=True)
    await stop_call(page, bridge)


async def test_the_page_loads_nothing_from_outside(chromium: Any, bridge: Any) -> None:
    page = await chromium.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await page.goto(bridge.url + "/")
    await page.wait_for_load_state("networkidle")
    assert requested and all(url.startswith(bridge.url) for url in requested), requested


async def test_the_page_works_over_https_with_a_self_signed_certificate(
    chromium: Any, artifacts: Path
) -> None:
    """``--tls self-signed``: what a phone on the LAN needs (browsers give the microphone to
    secure origins only); the browser accepts the certificate as a user would."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "BRIDGE_ICE_ADDRESSES": "127.0.0.1", "BRIDGE_WORKERS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--tls", "self-signed", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"https://localhost:{port}/" in banner or f":{port}/" in banner, banner
        context = await chromium.new_context(ignore_https_errors=True)
        page = await context.new_page()
        url = f"https://127.0.0.1:{port}"
        for _ in range(100):
            try:
                await page.goto(url + "/")
                break
            except Exception:
                await asyncio.sleep(0.1)
        assert await page.evaluate("window.isSecureContext")
        await start_call(page, url)
        await check_a_heard_turn(page, ("speechStarted", "speechStopped", "turnComplete"))
        await page.screenshot(path=str(artifacts / "https-call.png"), full_page=True)
        await context.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


async def test_a_typed_message_shows_once_with_its_reply(chromium: Any, bridge: Any) -> None:
    page = await chromium.new_page(viewport={"width": 1100, "height": 900})
    await start_call(page, bridge.url)
    await page.fill("#text-input", "hello there")
    await page.press("#text-input", "Enter")
    await wait_for(page, "document.querySelector('#transcript').innerText.includes('You said')")
    await wait_for(page, "window.bridgeDemo.events.some(e => e.type === 'turnComplete')")
    bubbles = await page.evaluate(
        "[...document.querySelectorAll('#transcript .turn.user')]"
        ".filter(t => t.innerText.includes('hello there')).length"
    )
    assert bubbles == 1
    # The newest bubble is fully in view once its text is in.
    visible = await page.evaluate(
        """() => {
          const t = document.querySelector('#transcript');
          const last = t.lastElementChild.getBoundingClientRect();
          const box = t.getBoundingClientRect();
          return last.bottom <= box.bottom + 1;
        }"""
    )
    assert visible
    await stop_call(page, bridge)


async def test_a_stopping_bridge_is_explained_in_plain_words(chromium: Any) -> None:
    async with call_on_own_bridge(chromium) as (page, proc):
        proc.send_signal(signal.SIGINT)  # a clean stop: the bridge says goodbye
        await wait_for(page, "document.querySelector('#state').textContent.trim() === 'closed'")
        await wait_for(page, "!document.querySelector('#error').hidden")
        shown = await page.inner_text("#error")
        assert "The bridge is shutting down." in shown and "Press Start" in shown, shown
        assert "server_shutdown" not in shown


async def test_the_model_picker_offers_every_model_the_bridge_has(
    chromium: Any, start_bridge: Any
) -> None:
    bridge = await start_bridge(openai_api_key=OPENAI_TEST_KEY)
    page = await chromium.new_page()
    await page.goto(bridge.url + "/")
    await wait_for(
        page, "document.querySelector('#provider option[value=\\'gpt-live\\']') !== null"
    )
    await page.select_option("#provider", "gpt-live")
    models = await page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    assert models == ["gpt-live-1", "gpt-live-1.1"]
    assert await page.input_value("#model") == "gpt-live-1.1"  # the provider's default
    await page.select_option("#provider", "openai")
    options = await page.eval_on_selector_all(
        "#model option", "os => Object.fromEntries(os.map(o => [o.value, o.title]))"
    )
    assert "gpt-realtime-2.1" in options and "gpt-realtime-2.1-mini" in options
    assert "shut" in options["gpt-realtime"].lower()  # a model near its end says so
    assert await page.input_value("#model") == "gpt-realtime-2.1"

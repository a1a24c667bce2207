"""Logs: JSON lines that carry session ids, and no credential in any line, whatever its
format or source (aiohttp's access log prints request paths with their query strings)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from bridge.server.logs import current_session, make_handler
from tests.test_workers import free_port

SESSION_ID = "0-AbCdEfGhIjKlMnOp"
KNOWN_SECRET = "hunter2-known-secret-value"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, dict[str, io.StringIO]]]:
    """A private logger writing through both formats to strings (the root logger and the
    other tests' loggers are left alone)."""
    logger = logging.getLogger("tests.logs.private")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    streams = {fmt: io.StringIO() for fmt in ("json", "text")}
    handlers = [make_handler(fmt, s, secrets=[KNOWN_SECRET]) for fmt, s in streams.items()]
    for handler in handlers:
        logger.addHandler(handler)
    yield logger, streams
    for handler in handlers:
        logger.removeHandler(handler)


def test_json_lines_carry_the_session_and_no_secret(
    captured: tuple[logging.Logger, dict[str, io.StringIO]],
) -> None:
    logger, streams = captured
    logger.info("session %s ending: %s", SESSION_ID, "deleted")
    logger.warning("gateway %s: the client stopped reading", SESSION_ID)
    logger.info("provider says hi", extra={"session": "explicit-session"})
    token = current_session.set("from-the-context")
    try:
        logger.debug("inside a session's task")
    finally:
        current_session.reset(token)
    logger.info('127.0.0.1 "GET /realtime?model=echo&token=plainsecret1 HTTP/1.1" 101 -')
    logger.info("headers: Authorization: Bearer zq7x, Host: x")
    logger.info("echoed %s", f"the key {KNOWN_SECRET} and sk-proj-abcdef0123456789")
    try:
        raise ConnectionError("wss://example.test/ws?key=AIzaSyQUERYKEY123456 refused")
    except ConnectionError:
        logger.exception("session %s: provider failed\nsecond line", SESSION_ID)
    logger.info("no session here")

    lines = streams["json"].getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # one JSON object a line, all of them
    assert len(records) == 9
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
        assert record["logger"] == "tests.logs.private"
        assert record["time"].endswith("+00:00")
    sessions = [r.get("session") for r in records]
    assert sessions == [
        SESSION_ID,
        SESSION_ID,
        "explicit-session",
        "from-the-context",
        None,
        None,
        None,
        SESSION_ID,
        None,
    ]
    assert records[0]["message"] == f"session {SESSION_ID} ending: deleted"
    assert records[0]["level"] == "INFO" and records[3]["level"] == "DEBUG"
    assert "token=[redacted]" in records[4]["message"]
    assert "Authorization: [redacted]" in records[5]["message"]
    failed = records[7]
    assert failed["level"] == "ERROR" and failed["message"].endswith("\nsecond line")
    assert "Traceback" in failed["exception"] and "ConnectionError" in failed["exception"]
    assert "key=[redacted]" in failed["exception"]
    assert "exception" not in records[8]
    text = streams["text"].getvalue()
    assert f"INFO tests.logs.private: session {SESSION_ID} ending: deleted" in text
    assert "Traceback" in text
    for output in (streams["json"].getvalue(), text):
        for secret in (
            "plainsecret1",
            "zq7x",
            KNOWN_SECRET,
            "sk-proj-abcdef0123456789",
            "AIzaSyQUERYKEY123456",
        ):
            assert secret not in output


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="json"):
        make_handler("xml")


async def test_a_json_server_logs_sessions_and_no_token() -> None:
    """``bridge serve --log-format json`` at debug level: every stderr line is JSON, the
    session's lines name it, and no token or credential of a request shows anywhere."""
    port = free_port()
    env = {
        **os.environ,
        "BRIDGE_PORT": str(port),
        "BRIDGE_WORKERS": "1",
        "BRIDGE_PROVIDER": "echo",
        "BRIDGE_LOG_FORMAT": "json",
        "BRIDGE_LOG_LEVEL": "debug",
        "TWILIO_AUTH_TOKEN": "twilio-env-secret-0123",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    bearer = {"Authorization": "Bearer HEADERSECRET42"}
    try:
        async with aiohttp.ClientSession(headers=bearer) as http:
            for _ in range(200):
                try:
                    async with http.get(f"{base}/healthz?token=QUERYSECRET17&x=1") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
            async with http.get(f"{base}/metrics?token=QUERYSECRET17") as r:
                assert r.status == 200
            ws = await http.ws_connect(f"{base}/realtime?model=echo&token=WSSECRET99")
            await ws.send_json({"type": "bridge.stats"})
            while (message := await asyncio.wait_for(ws.receive_json(), 10))["event"] != "stats":
                pass
            session_id = message["data"]["id"]
            await ws.close()
            for _ in range(100):
                async with http.get(f"{base}/healthz") as r:
                    if (await r.json())["sessions"] == 0:
                        break
                await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr[-2000:]
    records: list[dict[str, Any]] = []
    for line in stderr.splitlines():
        if line.strip():
            records.append(json.loads(line))  # every line: not one plain-text line
    # Debug level took effect for our loggers (asyncio's own debug lines depend on its loop).
    assert any(r["level"] == "DEBUG" and r["logger"].startswith("bridge.") for r in records)
    about = [r for r in records if r.get("session") == session_id]
    assert any(r["message"].endswith("closed") for r in about), about
    access = [r for r in records if r["logger"] == "aiohttp.access"]
    assert any("/realtime?model=echo&token=[redacted]" in r["message"] for r in access), access
    assert any("/healthz?token=[redacted]&x=1" in r["message"] for r in access), access
    for secret in ("QUERYSECRET17", "WSSECRET99", "HEADERSECRET42", "twilio-env-secret-0123"):
        assert secret not in stderr

"""The Python SDK: realtime voice sessions from code, with no WebRTC in between.

::

    from bridge import create_engine, create_realtime

    create_engine(api_keys={"openai": "sk-..."})
    session = create_realtime("openai/gpt-realtime-2.1", instructions="Be brief.")
    session.on("text", lambda e: print(e.delta, end="", flush=True))
    session.on("turnComplete", lambda e: session.close())
    session.send({"text": "Tell me a short joke."})
    session.wait()

A session is a :class:`~bridge.core.conversation.Conversation`, the core every bridge call runs
on: the same providers, events, policies, hooks and cost collector. ``create_realtime`` returns
at once; the provider session opens in the background and whatever is sent before it is open
waits for it. Inside ``async`` code a session lives on the running event loop (``async for
event in session``, ``async with``); from a plain script it lives on the engine's own loop
thread, callbacks run there, and :meth:`RealtimeSession.wait` blocks until it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from bridge.audio.format import AudioFormat
from bridge.audio.playout import Playback
from bridge.core import commands as cmd
from bridge.core import events as ev
from bridge.core.conversation import CloseReason, Conversation
from bridge.core.engine import Engine
from bridge.core.errors import BridgeError
from bridge.core.session_config import SessionConfig
from bridge.providers import PROVIDERS, Provider

__all__ = ["Engine", "RealtimeSession", "create_engine", "create_realtime", "default_engine"]

log = logging.getLogger(__name__)

SUPPORTED = tuple(sorted(PROVIDERS))
AUDIO_FORMATS = ("pcm16", "pcmu", "pcma")
MAX_QUEUED_EVENTS = 1024  # for ``async for``; the oldest go first when nobody reads
URL_VARIABLES = {
    "openai": "BRIDGE_OPENAI_URL",
    "gemini": "BRIDGE_GEMINI_URL",
    "gpt-live": "BRIDGE_OPENAI_LIVE_URL",
}

_default: Engine | None = None
_default_lock = threading.Lock()


def create_engine(
    api_keys: Mapping[str, str] | None = None,
    *,
    urls: Mapping[str, str] | None = None,
    register: bool = True,
) -> Engine:
    """An engine with these provider keys (and URLs: the official endpoints unless given here
    or in ``BRIDGE_OPENAI_URL``/``BRIDGE_GEMINI_URL``, e.g. a local emulator); it becomes the
    default engine unless ``register`` is false."""
    keys, given_urls = dict(api_keys or {}), dict(urls or {})
    unknown = (set(keys) | set(given_urls)) - set(PROVIDERS)
    if unknown:
        raise ValueError(f"unknown providers {sorted(unknown)} (supported: {', '.join(SUPPORTED)})")
    options = {}
    for name, spec in PROVIDERS.items():
        fields: dict[str, Any] = {"api_key": keys.get(name, "")}
        url = given_urls.get(name) or os.environ.get(URL_VARIABLES.get(name, ""), "")
        if url:
            fields["url"] = url
        options[name] = spec.options(**fields)
    engine = Engine(options)
    if register:
        global _default
        with _default_lock:
            _default = engine
    return engine


def default_engine() -> Engine:
    """The engine :func:`create_engine` registered last."""
    with _default_lock:
        if _default is None:
            raise RuntimeError("no engine: call create_engine(api_keys=...) first, or pass engine=")
        return _default


def create_realtime(
    model: str,
    provider: str | None = None,
    api_key: str | None = None,
    modalities: Iterable[str] = ("text",),
    audio: Mapping[str, Any] | None = None,
    voice: str | None = None,
    instructions: str | None = None,
    engine: Engine | None = None,
) -> RealtimeSession:
    """Open a realtime session (returns at once; listen for ``open``).

    ``model`` is bare (``gpt-realtime-2.1``, with ``provider``) or namespaced
    (``openai/gpt-realtime-2.1``, ``gemini/gemini-3.8-live``, ``echo/echo``; ``provider`` is then
    ignored). ``modalities`` are ``text`` and/or ``audio`` (audio answers come with their
    transcript). ``audio`` takes ``voice`` and ``format`` (``pcm16``, the default, or ``pcmu``/
    ``pcma``): the format of the audio you send and receive. Turns are yours to end
    (``send(..., turn_complete=True)``); there is no voice activity detection.
    """
    name, model_id = _resolve_model(model, provider)
    engine = engine or default_engine()
    key = api_key or engine.api_key(name)
    if name != "echo" and not key:
        raise ValueError(
            f"no API key for {name}: pass api_key=, or create_engine(api_keys={{{name!r}: ...}})"
        )
    audio = dict(audio or {})
    if voice is not None:
        warnings.warn(
            "create_realtime(voice=...) is deprecated; use audio={'voice': ...}",
            DeprecationWarning,
            stacklevel=2,
        )
        audio.setdefault("voice", voice)
    unknown = set(audio) - {"voice", "format"}
    if unknown:
        raise ValueError(f"unknown audio options {sorted(unknown)} (known: voice, format)")
    audio_format = audio.get("format", "pcm16")
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
    wanted = list(dict.fromkeys(modalities))
    if not wanted or set(wanted) - {"text", "audio"}:
        raise ValueError(f"modalities must be 'text' and/or 'audio', got {wanted!r}")
    update: dict[str, Any] = {
        "output_modalities": ["audio"] if "audio" in wanted else ["text"],
        "turn_detection": None,  # turns end when the caller says so
    }
    if instructions is not None:
        update["instructions"] = instructions
    if audio.get("voice") is not None:
        update["voice"] = audio["voice"]
    try:
        config = SessionConfig().merged(update)
        provider_session = engine.create_provider(name, model_id, config, api_key=key)
    except BridgeError as exc:
        raise ValueError(exc.message) from None
    session = RealtimeSession(engine, provider_session, config, audio_format)
    session._start()
    return session


def _resolve_model(model: str, provider: str | None) -> tuple[str, str | None]:
    if not isinstance(model, str) or not model.strip():
        raise ValueError("model must be a non-empty string such as 'openai/gpt-realtime-2.1'")
    name, slash, rest = model.partition("/")
    if slash:
        name, model_id = name, rest or None
    elif provider is None:
        raise ValueError(
            f"model {model!r} names no provider: pass provider= "
            f"({', '.join(SUPPORTED)}) or write '<provider>/{model}'"
        )
    else:
        name, model_id = provider, model
    if name not in PROVIDERS:
        raise ValueError(f"unsupported provider {name!r} (supported: {', '.join(SUPPORTED)})")
    return name, model_id


class _AppSink:
    """Reply audio goes to the application as ``audio`` events; what was handed over counts
    as played (the application plays it; the SDK can't know when)."""

    def __init__(self, session: RealtimeSession) -> None:
        self._session = session
        self._played: dict[str, int] = {}
        self._current: str | None = None

    def push(self, data: bytes, item_id: str) -> None:
        fmt = self._session.output_format
        self._played[item_id] = self._played.get(item_id, 0) + fmt.bytes_to_ms(len(data))
        self._current = item_id
        self._session._dispatch(ev.AudioOut(data, fmt.rate, item_id, fmt.encoding))

    def end_of_reply(self, item_id: str | None = None) -> None:
        if item_id is None or item_id == self._current:
            self._current = None

    def flush(self) -> Playback | None:
        current, self._current = self._current, None
        return Playback(current, self._played.get(current, 0)) if current else None


class _Transport:
    """The conversation's view of an SDK session: nothing to tear down but the waiters."""

    kind = "sdk"

    def __init__(self, session: RealtimeSession) -> None:
        self._session = session

    async def close(self, reason: str) -> None:
        self._session._closed.set()
        self._session._done().set()

    def describe(self) -> dict[str, Any]:
        return self._session.describe()


class RealtimeSession:
    """A realtime session; see the module docstring."""

    def __init__(
        self, engine: Engine, provider: Provider, config: SessionConfig, audio_format: str
    ) -> None:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # a plain script: the engine's loop thread hosts the session
            self._loop = engine.background_loop()
        self.id = f"sdk-{secrets.token_urlsafe(9)}"
        self.engine = engine
        self.conversation = Conversation(
            session_id=self.id, provider=provider, config=config, engine=engine
        )
        self._open_event: ev.Open | None = None
        self._open_told: list[Callable[[Any], None]] = []  # open callbacks already called
        self._callbacks: dict[str, list[Callable[[Any], None]]] = {
            kind: [] for kind in (*ev.EVENT_TYPES, "*")
        }
        self._events: deque[ev.Event] = deque(maxlen=MAX_QUEUED_EVENTS)
        self._arrived: asyncio.Event | None = None  # these two are created on the loop
        self._finished: asyncio.Event | None = None
        self._closed = threading.Event()
        self.dropped_events = 0
        self.conversation.attach(_Transport(self), _AppSink(self), self._dispatch)
        self.input_format: AudioFormat
        self.output_format: AudioFormat
        self.input_format, self.output_format = self.conversation.configure_audio(audio_format)

    @property
    def provider(self) -> str:
        return self.conversation.provider.name

    @property
    def model(self) -> str:
        return self.conversation.provider.model

    @property
    def cost_usd(self) -> float | None:
        return self.conversation.cost_usd

    # -- the caller's side ---------------------------------------------------------------------

    def send(self, data: Mapping[str, Any] | str, *, turn_complete: bool = True) -> None:
        """Send ``{"text": ...}`` and/or ``{"audio": bytes}`` (in :attr:`input_format`).

        With ``turn_complete`` (the default) the turn ends here and the model answers; with
        false, a turn streams over several calls (e.g. audio chunks). A commit takes in
        exactly the audio sent before it. Text does not end an audio turn left open: send
        its last chunk with ``turn_complete`` first. Safe from any thread.
        """
        if isinstance(data, str):
            data = {"text": data}
        if not isinstance(data, Mapping) or not data or set(data) - {"text", "audio"}:
            raise ValueError("send() takes {'text': str} and/or {'audio': bytes}")
        text, audio = data.get("text"), data.get("audio")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise ValueError("'text' must be a non-empty string")
        if audio is not None and not isinstance(audio, (bytes, bytearray, memoryview)):
            raise ValueError("'audio' must be bytes")
        self._call(self._send, text, bytes(audio) if audio is not None else None, turn_complete)

    def on(self, kind: str, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for each event of ``kind`` ("*": all); returns the
        function that stops it."""
        if kind not in self._callbacks:
            raise ValueError(f"unknown event type {kind!r} (known: {', '.join(self._callbacks)})")
        callbacks = self._callbacks[kind]
        callbacks.append(callback)
        if kind == "open":  # sticky: a session may open before its callbacks are registered
            self._call(self._opened_already, callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                callbacks.remove(callback)

        return unsubscribe

    def interrupt(self) -> None:
        """Stop the current reply now (your own barge-in): queued audio events stop and the
        provider is told what was delivered."""
        self._call(self.conversation.submit, cmd.Interrupt())

    def close(self) -> None:
        """End the session (idempotent, returns at once; ``close`` is the last event)."""
        self._call(self.conversation.end, CloseReason.CLIENT_CLOSED)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the session has closed (for scripts without an event loop); False on
        timeout."""
        if self._on_loop_thread():
            raise RuntimeError("wait() would block the session's own event loop; await aclose()")
        return self._closed.wait(timeout)

    async def aclose(self) -> None:
        """End the session and wait until it has closed."""
        self.close()
        if self._on_loop_thread():
            await self._done().wait()
        else:  # another loop or thread: the engine's loop hosts the session
            await asyncio.to_thread(self._closed.wait)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def __aenter__(self) -> RealtimeSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> RealtimeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self.wait(30)

    def __aiter__(self) -> AsyncIterator[ev.Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ev.Event]:
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("iterate a session on the event loop it was created on")
        while True:
            while self._events:
                event = self._events.popleft()
                yield event
                if isinstance(event, ev.Close):
                    return
            self._wakeup().clear()
            await self._wakeup().wait()

    # -- on the loop ---------------------------------------------------------------------------

    def _on_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._on_loop_thread():
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _start(self) -> None:
        self._call(self._begin)

    def _begin(self) -> None:
        self.conversation.start()
        self.conversation.peer_connected()  # no peer to wait for

    def _send(self, text: str | None, audio: bytes | None, turn_complete: bool) -> None:
        if audio:
            self.conversation.send_audio(audio)
            if turn_complete and text is None:
                self.conversation.submit(cmd.CommitAudio())
        if text is not None:
            self.conversation.submit(cmd.SendText(text, turn_complete))

    def _done(self) -> asyncio.Event:
        if self._finished is None:
            self._finished = asyncio.Event()
        return self._finished

    def _wakeup(self) -> asyncio.Event:
        if self._arrived is None:
            self._arrived = asyncio.Event()
        return self._arrived

    def _opened_already(self, callback: Callable[[Any], None]) -> None:
        if (
            self._open_event is not None
            and callback in self._callbacks["open"]
            and callback not in self._open_told
        ):
            self._open_told.append(callback)
            try:
                callback(self._open_event)
            except Exception:
                log.exception("an open callback raised; skipped")

    def _dispatch(self, event: ev.Event) -> None:
        if isinstance(event, ev.Open):
            self._open_event = event
            self._open_told = list(self._callbacks["open"])
        for callback in [*self._callbacks[event.type], *self._callbacks["*"]]:
            try:
                callback(event)
            except Exception:
                log.exception("an %s callback raised; skipped", event.type)
        if len(self._events) == self._events.maxlen:
            self.dropped_events += 1
        self._events.append(event)
        self._wakeup().set()

    def describe(self) -> dict[str, Any]:
        return {
            "input_format": self.input_format.encoding,
            "input_rate": self.input_format.rate,
            "output_format": self.output_format.encoding,
            "output_rate": self.output_format.rate,
            "dropped_events": self.dropped_events,
        }

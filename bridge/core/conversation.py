"""One conversation with a voice model, whatever carries it (WebRTC, the SDK, later others).

:class:`Conversation` owns the provider session and its tasks, its state machine and its
policies, and meets the outside world at two seams:

* the input side: :meth:`Conversation.send_audio` (user audio in the provider's format, the hot
  path) and :meth:`Conversation.submit` (typed text, session updates, commits, interrupts:
  :mod:`bridge.core.commands`), applied in order once the provider session is open;
* the output side: reply audio to a :class:`~bridge.audio.sink.PlaybackSink`, every other
  event to the transport's ``emit`` callback.

Policies: on barge-in (the provider heard the user start speaking) playback is flushed first,
then the provider is told how much of the cut reply was actually played; a fatal provider error
is reported and ends the conversation; every usage report is priced once (the engine's cost
collector) and shows in the ``usage`` event and the ``onCompletion`` hook; provider messages
are redacted of credentials before anyone sees them. Renewing a provider socket (expiry,
``goAway``, drops) is the provider's own business and invisible here.

States only move forward (:data:`TRANSITIONS`); whatever ends a conversation calls
:meth:`Conversation.end` with a :class:`CloseReason`, which runs the shutdown exactly once:
its tasks and the provider, the ``close`` event, the transport, then ``on_closed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, Protocol

from bridge.audio.format import PCM16_24K, AudioFormat
from bridge.audio.playout import Playback
from bridge.audio.sink import PlaybackSink
from bridge.core import commands as cmd
from bridge.core import events as ev
from bridge.core import hooks
from bridge.core.budget import Budget, Verdict
from bridge.core.engine import Engine
from bridge.core.errors import BadRequest, BridgeError
from bridge.core.pricing import MAX_TOKENS, CostTotal
from bridge.core.redact import redact
from bridge.core.session_config import SessionConfig
from bridge.core.tasks import OwnedTasks
from bridge.providers import Provider, check_voice

log = logging.getLogger(__name__)

MAX_PENDING_COMMANDS = 64
MAX_EARLY_AUDIO_BYTES = 1024 * 1024  # user audio held until the provider session is open


class State(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    ACTIVE = "active"
    CLOSING = "closing"
    CLOSED = "closed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.NEW: frozenset({State.CONNECTING, State.CLOSING}),
    State.CONNECTING: frozenset({State.ACTIVE, State.CLOSING}),
    State.ACTIVE: frozenset({State.CLOSING}),
    State.CLOSING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


class CloseReason(enum.StrEnum):
    PEER_CLOSED = "peer_closed"
    PEER_FAILED = "peer_failed"
    CONNECT_TIMEOUT = "connect_timeout"
    INACTIVE = "inactive"
    PROVIDER_ERROR = "provider_error"
    PROVIDER_CLOSED = "provider_closed"
    DELETED = "deleted"
    CLIENT_CLOSED = "client_closed"
    CLIENT_TOO_SLOW = "client_too_slow"
    SERVER_SHUTDOWN = "server_shutdown"
    BAD_OFFER = "bad_offer"
    INTERNAL_ERROR = "internal_error"
    MAX_DURATION = "max_duration"
    BUDGET_EXCEEDED = "budget_exceeded"


class Transport(Protocol):
    """What carries a conversation to its peer (a WebRTC call, an SDK session...)."""

    kind: str

    async def close(self, reason: str) -> None:
        """Deliver the end to the peer and release everything; idempotent."""

    def describe(self) -> dict[str, Any]:
        """Transport facts for ``GET /sessions`` (codec, formats...)."""
        ...


class _NoSink:
    def push(self, data: bytes, item_id: str) -> None:
        pass

    def end_of_reply(self, item_id: str | None = None) -> None:
        pass

    def flush(self) -> Playback | None:
        return None


class _HookObserver:
    """Reports a provider's connection to the engine's hooks (metadata only)."""

    def __init__(self, conversation: Conversation) -> None:
        self._c = conversation
        self._hooks = conversation.engine.hooks

    def _context(self) -> tuple[str, str, str]:
        return self._c.id, self._c.provider.name, self._c.provider.model

    def opened(self, url: str) -> None:
        self._hooks.emit("onRealtimeOpen", hooks.RealtimeOpen(*self._context(), url=url))

    def frame(self, direction: Literal["in", "out"], size: int) -> None:
        if self._hooks.wants("onRealtimeFrame"):
            frame = hooks.RealtimeFrame(*self._context(), direction=direction, size=size)
            self._hooks.emit("onRealtimeFrame", frame)

    def closed(self, code: int, reason: str) -> None:
        self._hooks.emit("onRealtimeClose", hooks.RealtimeClose(*self._context(), code, reason))


class Conversation:
    """See the module docstring."""

    def __init__(
        self,
        *,
        session_id: str,
        provider: Provider,
        config: SessionConfig,
        engine: Engine,
        connect_timeout: float = 15.0,
        locked: frozenset[str] = frozenset(),
    ) -> None:
        self.id = session_id
        self.locked = locked  # session fields clients may not change
        self.provider = provider
        self.config = config
        self.engine = engine
        self.connect_timeout = connect_timeout
        self.state = State.NEW
        self.created_at = time.time()
        self.close_reason: str | None = None
        self.transport: Transport | None = None
        self.sink: PlaybackSink = _NoSink()
        self.input_format = self.output_format = PCM16_24K
        self.on_closed: list[Callable[[Conversation], None]] = []
        self.owner: str | None = None  # the access token's subject that started it
        self.client_ip: str | None = None
        self.max_duration: float | None = None  # seconds, then it ends (max_duration)
        self.budgets: list[Budget] = []
        self._over_budget = False
        self._replying = False  # a reply is being generated (from its first output to its end)
        self.probes: list[Callable[[Conversation, str, float | str], None]] = []
        """Measurements as they happen, for metrics: ("provider_connect_ms", ms),
        ("turn_latency_ms", ms), ("cost_usd", usd of one report), ("error", code), and loop
        times: ("provider_open", t), ("reply_began", t)."""
        self.audio_in_bytes = 0
        self.audio_out_bytes = 0
        self.tokens = 0
        self.cost = CostTotal()
        self.errors = 0
        self.last_turn_latency_ms: float | None = None
        self._turn_ended_at: float | None = None  # the user finished; the reply is awaited
        self.provider.observer = _HookObserver(self)
        self._emit: Callable[[ev.Event], None] = lambda event: None
        # Bounded by submit (MAX_PENDING_COMMANDS) and send_audio (MAX_EARLY_AUDIO_BYTES).
        self._commands: asyncio.Queue[cmd.Command | cmd.Audio] = asyncio.Queue()
        self._waiting_commands = 0  # queued or being applied, audio included
        self._queued_audio_chunks = 0
        self._queued_audio_bytes = 0
        self._tasks = OwnedTasks(session_id, lambda: self.end(CloseReason.INTERNAL_ERROR))
        self._provider_open = asyncio.Event()
        self._early_audio: deque[bytes] = deque()
        self._early_bytes = 0
        self.early_audio_dropped = 0
        self._peer_up = False
        self._shutdown_task: asyncio.Task[None] | None = None
        self._secrets = engine.secrets()

    # -- wiring --------------------------------------------------------------------------------

    def attach(
        self, transport: Transport, sink: PlaybackSink, emit: Callable[[ev.Event], None]
    ) -> None:
        """Connect the transport: reply audio to ``sink``, every other event to ``emit``."""
        self.transport, self.sink, self._emit = transport, sink, emit

    def configure_audio(self, peer_codec: str) -> tuple[AudioFormat, AudioFormat]:
        """Ask the provider for the formats to use with a peer speaking ``peer_codec``."""
        self.input_format, self.output_format = self.provider.configure_audio(peer_codec)
        return self.input_format, self.output_format

    def _move(self, state: State) -> None:
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"conversation {self.id}: {self.state.name} -> {state.name}")
        self.state = state

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Open the provider session and serve it (in tasks this conversation owns)."""
        self._move(State.CONNECTING)
        self._tasks.spawn(self._run_provider(), "provider")
        self._tasks.spawn(self._serve_commands(), "commands")
        if self.max_duration is not None:
            self._tasks.spawn(self._end_after(self.max_duration), "max-duration")

    async def _end_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        log.info("session %s reached its maximum duration (%g s)", self.id, seconds)
        self.end(CloseReason.MAX_DURATION)

    def peer_connected(self) -> None:
        """The transport's peer is up (WebRTC connected; at once for the SDK)."""
        self._peer_up = True
        self._maybe_active()

    def _maybe_active(self) -> None:
        if self.state is State.CONNECTING and self._peer_up and self._provider_open.is_set():
            self._move(State.ACTIVE)

    def end(self, reason: str) -> None:
        """End the conversation (idempotent); the first reason given is the one reported."""
        if self._shutdown_task is not None:
            return
        self.close_reason = str(reason)
        self._move(State.CLOSING)
        log.info("session %s ending: %s", self.id, reason)
        self._shutdown_task = asyncio.get_running_loop().create_task(
            self._shutdown(), name=f"session-{self.id}-shutdown"
        )

    async def close(self, reason: str = CloseReason.CLIENT_CLOSED) -> None:
        """End the conversation and wait until everything it owned is closed."""
        self.end(reason)
        assert self._shutdown_task is not None
        await asyncio.shield(self._shutdown_task)

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    async def _shutdown(self) -> None:
        try:
            await self._tasks.cancel_all()
            with contextlib.suppress(Exception):
                await self.provider.close()
            drain = getattr(self.provider, "drain_usage", None)
            if drain is not None:  # usage confirmed by the provider's own close (GPT-Live)
                for usage in drain():
                    self.emit(self._priced(usage.usage))
            # ``close`` is the last event: the provider is gone when the transport hears it.
            self._emit(ev.Close(self.close_reason or ""))
            if self.transport is not None:
                with contextlib.suppress(Exception):
                    await self.transport.close(self.close_reason or "")
        finally:
            self.state = State.CLOSED
            for callback in self.on_closed:
                with contextlib.suppress(Exception):
                    callback(self)
            log.info("session %s closed", self.id)

    # -- input side ----------------------------------------------------------------------------

    def send_audio(self, pcm: bytes) -> None:
        """User audio in the input format; never blocks (the provider queues, bounded).
        Before the provider session is open it waits here (bounded, oldest dropped first)."""
        self.audio_in_bytes += len(pcm)
        if self._over_budget:
            return  # no new replies
        if self._waiting_commands:  # behind them: a queued commit must not take it in
            if self._queued_audio_bytes + len(pcm) > MAX_EARLY_AUDIO_BYTES:
                self.early_audio_dropped += 1
                return
            self._queued_audio_bytes += len(pcm)
            self._queued_audio_chunks += 1
            self._waiting_commands += 1
            self._commands.put_nowait(cmd.Audio(pcm))
            return
        if self._provider_open.is_set():
            self.provider.send_audio(pcm)
            return
        self._early_audio.append(pcm)
        self._early_bytes += len(pcm)
        while self._early_bytes > MAX_EARLY_AUDIO_BYTES:
            self._early_bytes -= len(self._early_audio.popleft())
            self.early_audio_dropped += 1

    def submit(self, command: cmd.Command) -> None:
        """Queue a command; applied in order once the provider session is open."""
        if self.state in (State.CLOSING, State.CLOSED):
            return
        if self._over_budget and not isinstance(command, cmd.Interrupt):
            self.emit(ev.Error("budget_exceeded", "the budget is spent: no new replies"))
            return
        if self._waiting_commands - self._queued_audio_chunks >= MAX_PENDING_COMMANDS:
            self.emit(ev.Error("rate_limited", "too many messages; slow down"))
            return
        self._commands.put_nowait(command)
        self._waiting_commands += 1

    async def _serve_commands(self) -> None:
        await self._provider_open.wait()  # what came before the session was open waits
        while True:
            command = await self._commands.get()
            try:
                if isinstance(command, cmd.Audio):
                    self._queued_audio_bytes -= len(command.pcm)
                    self._queued_audio_chunks -= 1
                    self.provider.send_audio(command.pcm)
                else:
                    await self._apply(command)
            except BridgeError as exc:
                self.emit(ev.Error(exc.code, exc.message))
            except Exception:  # one bad command must not end the conversation
                log.exception("session %s: %s failed", self.id, type(command).__name__)
                self.emit(ev.Error("internal_error", "the request could not be applied"))
            finally:
                self._waiting_commands -= 1

    async def _apply(self, command: cmd.Command) -> None:
        match command:
            case cmd.SendText(text=text, turn_complete=turn_complete):
                if not text.strip():
                    raise BadRequest("'text' must be a non-empty string", code="invalid_event")
                await self.provider.send_text(text, turn_complete)
                if turn_complete:
                    self._user_turn_ended()
            case cmd.CommitAudio():
                await self.provider.commit_audio()
                self._user_turn_ended()
            case cmd.UpdateSession(session=update):
                self.check_unlocked(update)
                merged = self.config.merged(update)
                if merged.voice != self.config.voice:
                    check_voice(self.provider.name, merged.voice)
                self.config = await self.provider.update_session(merged)
            case cmd.Interrupt():
                played = self.sink.flush()
                await self.provider.interrupt(played, cancel=True)
            case cmd.Relay(message=message):
                relay = getattr(self.provider, "relay", None)
                if relay is None:
                    raise BadRequest(
                        f"{self.provider.name} does not take events in the OpenAI protocol",
                        code="not_supported",
                    )
                relay(message)

    def check_unlocked(self, update: dict[str, Any]) -> None:
        """Refuse an update that touches a field the server owns."""
        locked = sorted(set(update) & self.locked)
        if locked:
            raise BadRequest(
                f"session.{locked[0]} is set by the server and cannot be changed",
                code="locked_field",
            )

    def _user_turn_ended(self) -> None:
        self._turn_ended_at = asyncio.get_running_loop().time()

    def _reply_began(self) -> None:
        if not self._replying:
            self._probe("reply_began", asyncio.get_running_loop().time())
        self._replying = True
        if self._turn_ended_at is not None:
            elapsed = asyncio.get_running_loop().time() - self._turn_ended_at
            self.last_turn_latency_ms = round(elapsed * 1000, 1)
            self._turn_ended_at = None
            self._probe("turn_latency_ms", self.last_turn_latency_ms)

    # -- output side ---------------------------------------------------------------------------

    def _charge(self, usd: float) -> None:
        """Count ``usd`` against every budget: a warning at 80 %; at 100 % no new replies
        (user input stops reaching the provider) and the call ends once the current one is
        done."""
        for budget in self.budgets:
            verdict = budget.charge(usd)
            share = f"${budget.spent_usd:.4f} of ${budget.limit_usd:.4f}"
            if verdict is Verdict.WARN:
                log.warning("session %s: %s budget 80 %% spent (%s)", self.id, budget.name, share)
                self.emit(ev.Error("budget_warning", f"80 % of the {budget.name} budget spent"
                                   f" ({share})"))  # fmt: skip
            elif verdict is Verdict.EXCEEDED and not self._over_budget:
                self._over_budget = True
                log.warning("session %s: %s budget spent (%s)", self.id, budget.name, share)
                self.emit(ev.Error("budget_exceeded", f"the {budget.name} budget is spent "
                                   f"({share}); the call ends"))  # fmt: skip

    def _probe(self, name: str, value: float | str) -> None:
        for probe in self.probes:
            try:
                probe(self, name, value)
            except Exception:  # a metric must never break a call
                log.exception("session %s: a probe failed", self.id)

    def emit(self, event: ev.Event) -> None:
        """An event for the transport; errors are redacted of credentials first."""
        if isinstance(event, ev.Error):
            self.errors += 1
            self._probe("error", event.code)
            event = dataclasses.replace(event, message=redact(event.message, self._secrets))
            self.engine.hooks.emit(
                "onRealtimeError",
                hooks.RealtimeError(
                    self.id,
                    self.provider.name,
                    self.provider.model,
                    event.code,
                    event.message,
                    event.fatal,
                ),
            )
        self._emit(event)

    async def _run_provider(self) -> None:
        loop = asyncio.get_running_loop()
        connecting = loop.time()
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self.provider.connect()
            self._probe("provider_connect_ms", round((loop.time() - connecting) * 1000, 1))
        except (BridgeError, TimeoutError, OSError) as exc:
            if isinstance(exc, BridgeError):
                code, message = exc.code, exc.message
            else:
                code, message = "provider_unavailable", "the provider did not answer"
            self.emit(ev.Error(code, message, fatal=True))
            self.end(CloseReason.PROVIDER_ERROR)
            return
        async for event in self.provider.events():
            if not await self._handle(event):
                return
        self.end(CloseReason.PROVIDER_CLOSED)

    async def _handle(self, event: ev.Event) -> bool:
        """Apply the policies to one provider event; False when the conversation is over."""
        match event:
            case ev.AudioOut(pcm=pcm, item_id=item_id):
                self.audio_out_bytes += len(pcm)
                self._reply_began()
                self.sink.push(pcm, item_id)
            case ev.AudioDone(item_id=item_id):
                self.sink.end_of_reply(item_id)
            case ev.SpeechStarted():
                # Barge-in: cut playback before anything else, then tell the provider how
                # much of its reply the user actually heard.
                played = self.sink.flush()
                self.emit(event)
                await self.provider.interrupt(played)
            case ev.SpeechStopped():
                self._user_turn_ended()
                self.emit(event)
            case ev.TextDelta():
                self._reply_began()
                self.emit(event)
            case ev.Interrupted():
                self.sink.flush()
                self.emit(event)
            case ev.TurnComplete():
                self._replying = False
                self.sink.end_of_reply()
                self.emit(event)
                if self._over_budget:  # the reply that was under way has finished
                    self.end(CloseReason.BUDGET_EXCEEDED)
                    return False
            case ev.Usage(usage=usage):
                self.emit(self._priced(usage))
                if self._over_budget and not self._replying:
                    self.end(CloseReason.BUDGET_EXCEEDED)
                    return False
            case ev.Open():
                while self._early_audio:  # first what came before, then the commands
                    self.provider.send_audio(self._early_audio.popleft())
                self._early_bytes = 0
                self._provider_open.set()
                self._probe("provider_open", asyncio.get_running_loop().time())
                self._maybe_active()
                self.emit(event)
            case ev.Error(fatal=True):
                self.emit(event)
                self.end(CloseReason.PROVIDER_ERROR)
                return False
            case _:
                self.emit(event)
        return True

    def _priced(self, usage: dict[str, Any]) -> ev.Usage:
        """Price a usage report once (the engine's collector) and tell ``onCompletion``."""
        name, model = self.provider.name, self.provider.model
        cost = self.engine.costs.record(self.id, name, model, usage)
        self.cost.add(cost)
        if cost is not None:
            self._probe("cost_usd", cost)
            self._charge(cost)
        total = usage.get("total_tokens", usage.get("totalTokenCount"))
        if isinstance(total, int) and not isinstance(total, bool) and total > 0:
            self.tokens += min(total, MAX_TOKENS)
        completion = hooks.Completion(self.id, name, model, usage, cost)
        self.engine.hooks.emit("onCompletion", completion)
        return ev.Usage(usage, cost)

    # -- reporting -----------------------------------------------------------------------------

    @property
    def cost_usd(self) -> float | None:
        """What this conversation has cost so far (None once a report could not be priced)."""
        return self.cost.usd

    @property
    def usage_reports(self) -> int:
        return self.cost.reports

    @property
    def audio_in_ms(self) -> int:
        return self.input_format.bytes_to_ms(self.audio_in_bytes)

    @property
    def audio_out_ms(self) -> int:
        return self.output_format.bytes_to_ms(self.audio_out_bytes)

    def describe(self) -> dict[str, Any]:
        """What ``GET /sessions`` shows; never includes secrets."""
        stats = self.provider.stats()
        return {
            "id": self.id,
            "transport": self.transport.kind if self.transport is not None else None,
            "state": self.state.value,
            "provider": self.provider.name,
            "model": self.provider.model,
            "created_at": self.created_at,
            "started": datetime.datetime.fromtimestamp(self.created_at, datetime.UTC).isoformat(),
            "duration_s": round(time.time() - self.created_at, 3),
            "audio_in_ms": self.audio_in_ms,
            "audio_in_s": round(self.audio_in_ms / 1000, 3),
            "audio_out_s": round(self.audio_out_ms / 1000, 3),
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "usage_reports": self.usage_reports,
            "errors": self.errors,
            "reconnects": stats.get("reconnects", 0) + stats.get("resumes", 0),
            "last_turn_latency_ms": self.last_turn_latency_ms,
            "close_reason": self.close_reason,
            "owner": self.owner,
            "max_duration_s": self.max_duration,
            "budgets": [
                {"on": b.name, "limit_usd": b.limit_usd, "spent_usd": round(b.spent_usd, 6)}
                for b in self.budgets
            ],
            "provider_stats": stats,
            **(self.transport.describe() if self.transport is not None else {}),
        }

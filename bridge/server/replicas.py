"""Several bridge replicas behind a load balancer, sharing state through Redis (``redis_url``).

One machine needs none of this (its workers share state over Unix sockets,
:mod:`bridge.server.cluster`). With Redis, each replica:

* records every call it holds in the hash ``rtcbridge:sessions`` (id -> its own URL, the
  owning token's subject, the client address) as calls come and go, and announces itself
  under ``rtcbridge:replica:<url>`` every ``HEARTBEAT_S`` (the key expires after
  ``REPLICA_TTL_S``: calls of a replica that died are ignored, then removed);
* answers ``GET /sessions`` with every live replica's calls, asked over HTTP;
* **forwards** a request about a call it does not hold (``GET``/``DELETE /sessions/{id}``,
  ``/whip/{id}``) to the replica that holds it and returns its answer unchanged; the caller
  never needs to know which replica it reached (no redirect: WHIP clients and browsers would
  have to follow it with their token);
* checks a token's concurrent calls across all replicas before starting one (a check at start:
  two replicas starting the same token's last allowed call in the same millisecond may both
  succeed);
* counts what each token spent in ``rtcbridge:spent:<subject>`` (``INCRBYFLOAT``), so a token's
  budget holds across replicas; a replica sees the others' spending with a delay of one
  report.

Requests between replicas carry a short-lived admin token minted with the shared
``BRIDGE_AUTH_SECRET`` (replicas must share it), or nothing on an open bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from bridge.core.conversation import Conversation
from bridge.core.errors import BadRequest
from bridge.server.auth import INTERNAL, OPEN, Grant, mint
from bridge.server.config import Settings

log = logging.getLogger(__name__)

SESSIONS = "rtcbridge:sessions"
REPLICA = "rtcbridge:replica:"
SPENT = "rtcbridge:spent:"
HEARTBEAT_S = 5.0
REPLICA_TTL_S = 15
REQUEST_TIMEOUT_S = 5.0
_FORWARDED_HEADERS = ("content-type", "if-match")
_RETURNED_HEADERS = ("content-type", "location", "etag", "retry-after", "allow")


class RedisLedger:
    """Token budgets shared by every replica: totals in Redis, a local view for the
    conversation's synchronous check (what this replica added at once, the others' on the
    next answer)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._known: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, key: str, usd: float) -> float:
        total = self._known.get(key, 0.0) + usd
        self._known[key] = total
        task = asyncio.get_running_loop().create_task(self._push(key, usd))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return total

    async def _push(self, key: str, usd: float) -> None:
        try:
            total = float(await self._redis.incrbyfloat(SPENT + key, usd))
            self._known[key] = max(self._known.get(key, 0.0), total)
        except (aioredis.RedisError, OSError) as exc:
            log.warning("redis: could not record spending: %s", type(exc).__name__)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


@dataclass
class Replicas:
    """This replica's view of the others; see the module docstring."""

    settings: Settings
    url: str
    client: aioredis.Redis
    ledger: RedisLedger
    _writes: asyncio.Queue[tuple[str, str, str]] = field(default_factory=asyncio.Queue)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    # -- bookkeeping ---------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._heartbeat(), name="replicas-heartbeat"),
            loop.create_task(self._writer(), name="replicas-writer"),
        ]

    def listener(self, change: str, session: Conversation) -> None:
        """Registry listener: record calls as they come and go (in order, by one writer)."""
        entry = json.dumps({"replica": self.url, "owner": session.owner, "ip": session.client_ip})
        self._writes.put_nowait((change, session.id, entry))

    async def _writer(self) -> None:
        while True:
            change, session_id, entry = await self._writes.get()
            try:
                if change == "added":
                    await self.client.hset(SESSIONS, session_id, entry)
                else:
                    await self.client.hdel(SESSIONS, session_id)
            except (aioredis.RedisError, OSError) as exc:
                log.warning("redis: could not record session %s: %s", session_id, exc)

    async def _heartbeat(self) -> None:
        while True:
            try:
                await self.client.set(REPLICA + self.url, "1", ex=REPLICA_TTL_S)
            except (aioredis.RedisError, OSError) as exc:
                log.warning("redis: heartbeat failed: %s", type(exc).__name__)
            await asyncio.sleep(HEARTBEAT_S)

    async def close(self, local_ids: list[str]) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(aioredis.RedisError, OSError):
            if local_ids:
                await self.client.hdel(SESSIONS, *local_ids)
        await self.ledger.close()
        await self.client.aclose()

    # -- questions -----------------------------------------------------------------------------

    async def _entries(self) -> dict[str, dict[str, Any]]:
        """Calls of live replicas (those of a replica whose heartbeat stopped are dropped)."""
        raw = await self.client.hgetall(SESSIONS)
        entries = {}
        for key, value in raw.items():
            with contextlib.suppress(ValueError, TypeError):
                entries[_text(key)] = json.loads(_text(value))
        replicas = {e.get("replica") for e in entries.values() if isinstance(e, dict)}
        live = {r for r in replicas if isinstance(r, str) and await self.client.exists(REPLICA + r)}
        dead = [k for k, e in entries.items() if e.get("replica") not in live]
        if dead:
            await self.client.hdel(SESSIONS, *dead)
        return {k: e for k, e in entries.items() if e.get("replica") in live}

    async def where(self, session_id: str) -> str | None:
        """The URL of the other replica holding ``session_id`` (None: here, or nowhere)."""
        value = await self.client.hget(SESSIONS, session_id)
        if value is None:
            return None
        try:
            replica = json.loads(_text(value)).get("replica")
        except (ValueError, AttributeError):
            return None
        if not isinstance(replica, str) or replica == self.url:
            return None
        return replica if await self.client.exists(REPLICA + replica) else None

    async def check_token(self, grant: Grant) -> None:
        """A token's concurrent calls on every replica (429 ``too_many_sessions``)."""
        if grant in (OPEN, INTERNAL):
            return
        limits = [n for n in (self.settings.max_sessions_per_token, grant.max_sessions) if n]
        if not limits:
            return
        owned = sum(1 for e in (await self._entries()).values() if e.get("owner") == grant.subject)
        if owned >= min(limits):
            raise BadRequest(
                f"this token has {min(limits)} calls already", code="too_many_sessions", status=429
            )

    async def other_sessions(self) -> list[dict[str, Any]]:
        """Every other live replica's own calls."""
        replicas = {e["replica"] for e in (await self._entries()).values()} - {self.url}
        answers = await asyncio.gather(
            *(self._get_json(r, "/sessions?local=1") for r in replicas), return_exceptions=True
        )
        sessions: list[dict[str, Any]] = []
        for answer in answers:
            if isinstance(answer, dict):
                sessions.extend(answer.get("sessions", []))
        return sessions

    # -- forwarding ----------------------------------------------------------------------------

    def _headers(self, request: web.Request | None = None) -> dict[str, str]:
        headers = {}
        if request is not None:
            headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_HEADERS}
            if "Authorization" in request.headers:
                headers["Authorization"] = request.headers["Authorization"]
                return headers
        if self.settings.auth_secret:
            admin = mint(self.settings.auth_secret, 30, subject="replica", admin=True)
            headers["Authorization"] = f"Bearer {admin}"
        return headers

    async def _get_json(self, replica: str, path: str) -> Any:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(replica + path, headers=self._headers()) as reply,
        ):
            return await reply.json()

    async def forward(self, request: web.Request, replica: str, body: bytes) -> web.Response:
        """Replay ``request`` on ``replica`` with the caller's own credentials; its answer,
        unchanged."""
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.request(
                request.method,
                replica + str(request.rel_url),
                data=body,
                headers=self._headers(request),
            ) as reply,
        ):
            data = await reply.read()
            kept = {k: v for k, v in reply.headers.items() if k.lower() in _RETURNED_HEADERS}
            return web.Response(status=reply.status, body=data, headers=kept)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def connect(settings: Settings) -> AsyncIterator[Replicas]:
    """The replicas of ``settings.redis_url`` for one app's lifetime (a cleanup context)."""
    client = aioredis.from_url(settings.redis_url, socket_timeout=REQUEST_TIMEOUT_S)
    url = (settings.advertise_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    try:
        await client.ping()
    except (aioredis.RedisError, OSError) as exc:
        await client.aclose()
        raise RuntimeError(f"cannot reach Redis at redis_url: {type(exc).__name__}") from None
    replicas = Replicas(settings, url, client, RedisLedger(client))
    replicas.start()
    yield replicas

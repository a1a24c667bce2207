"""Several worker processes behind one port, each owning its own sessions.

A Python process tops out around 1.3 busy cores (the GIL and one event loop), so
``bridge serve --workers N`` forks N workers that accept on one shared listening socket; the
kernel spreads new connections among them. A call lives entirely in the worker that answered
its offer (peer connection, provider socket, tasks). Its id starts with that worker's number,
so a request about it (``DELETE /whip/{id}``, ``GET /sessions/{id}``) that lands on another
worker is forwarded over that worker's private Unix socket; ``GET /sessions`` and
``GET /stats`` gather every worker's answer.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

_FORWARDED_HEADERS = ("content-type", "if-match", "authorization")
_WORKER = re.compile(r"[0-9]{1,3}")  # ASCII digits only: str.isdigit() takes "²" too
_RETURNED_HEADERS = ("content-type", "location", "etag", "retry-after", "allow")


@dataclass(frozen=True, slots=True)
class Cluster:
    """Which worker this is, and where every worker's private socket is."""

    index: int
    sockets: tuple[str, ...]

    def session_id(self, token: str) -> str:
        return f"{self.index}-{token}"

    def owner(self, session_id: str) -> int | None:
        """The worker that owns ``session_id``, or None when it names none of ours."""
        head, sep, _ = session_id.partition("-")
        if not sep or not _WORKER.fullmatch(head) or int(head) >= len(self.sockets):
            return None
        return int(head)

    async def forward(self, request: web.Request, worker: int, body: bytes) -> web.Response:
        """Replay ``request`` (whose ``body`` the caller read) on ``worker`` and return its
        answer unchanged."""
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_HEADERS}
        connector = aiohttp.UnixConnector(path=self.sockets[worker])
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.request(
                request.method,
                f"http://worker{request.rel_url}",
                data=body,
                headers=headers,
            ) as reply,
        ):
            body = await reply.read()
            kept = {k: v for k, v in reply.headers.items() if k.lower() in _RETURNED_HEADERS}
            return web.Response(status=reply.status, body=body, headers=kept)

    async def gather(self, path: str, method: str = "GET") -> list[Any]:
        """``path`` (JSON) from every other worker; a worker that fails is left out."""

        async def one(worker: int) -> Any:
            connector = aiohttp.UnixConnector(path=self.sockets[worker])
            async with (
                aiohttp.ClientSession(connector=connector) as http,
                http.request(method, f"http://worker{path}") as reply,
            ):
                return await reply.json()

        others = [i for i in range(len(self.sockets)) if i != self.index]
        answers = await asyncio.gather(*(one(i) for i in others), return_exceptions=True)
        return [a for a in answers if not isinstance(a, BaseException)]

    async def gather_post(self, path: str) -> list[Any]:
        return await self.gather(path, method="POST")

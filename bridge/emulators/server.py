"""What every emulator shares: a WebSocket server on 127.0.0.1, one-shot faults, ``async with``."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

# websockets logs request headers (API keys) at DEBUG: use a logger that never does.
ws_log = logging.getLogger("bridge.emulators.websocket")
ws_log.setLevel(logging.INFO)


class EmulatorServer:
    """Subclasses give ``options`` (whose attributes name the faults) and ``_handle``."""

    options: Any

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._fired: set[str] = set()
        self._server: Server | None = None
        self._live: list[ServerConnection] = []

    async def inject(self, frame: str | bytes) -> int:
        """Send ``frame`` as it is to every open connection (a fault a test scripts: whatever
        a broken or hostile provider might send); returns how many got it."""
        sent = 0
        for ws in list(self._live):
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame)
                sent += 1
        return sent

    async def _serve(self, ws: ServerConnection) -> None:
        self._live.append(ws)
        try:
            await self._handle(ws)
        finally:
            self._live.remove(ws)

    def take_fault(self, name: str) -> Any:
        """The fault's value (a delay, a flag) the first time it is asked for, None afterwards."""
        value = getattr(self.options, name)
        if not value or name in self._fired:
            return None
        self._fired.add(name)
        return value

    async def _handle(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        return None

    async def start(self, **serve_options: Any) -> None:
        self._server = await serve(
            self._serve,
            self.host,
            self.port,
            process_request=self._check_request,
            max_size=None,
            close_timeout=1.0,
            logger=ws_log,
            **serve_options,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Any:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

"""The live sessions of one bridge process, owned by the aiohttp application."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from .errors import BadRequest
from .session import CallSession


class SessionRegistry:
    """Sessions by id, with a capacity limit; sessions remove themselves when they close."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._sessions: dict[str, CallSession] = {}

    def check_capacity(self) -> None:
        if len(self._sessions) >= self.max_sessions:
            raise BadRequest(
                f"the bridge is at its limit of {self.max_sessions} calls; try again later",
                code="at_capacity",
                status=503,
            )

    def add(self, session: CallSession) -> None:
        self.check_capacity()
        self._sessions[session.id] = session

    def remove(self, session: CallSession) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    def get(self, session_id: str) -> CallSession | None:
        return self._sessions.get(session_id)

    def __iter__(self) -> Iterator[CallSession]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    async def close_all(self, reason: str) -> None:
        await asyncio.gather(*(s.close(reason) for s in self), return_exceptions=True)

"""Spend budgets in USD, from the live cost of calls.

A :class:`Budget` is a limit on what a :class:`Ledger` key has spent: one call's own (key: the
session id) or everything one access token's calls spent (key: the token's subject, shared by
its calls, across replicas when the ledger is Redis-backed). The conversation reports each
priced usage report to each of its budgets and acts on the answer: a warning at
``WARN_AT`` of the limit, and at the limit no new replies, then the end of the call.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

WARN_AT = 0.8


class Ledger(Protocol):
    def add(self, key: str, usd: float) -> float:
        """Add ``usd`` to ``key`` and return its total."""
        ...


@dataclass
class LocalLedger:
    """Totals in this process (one machine, one worker: or the cache of a shared one)."""

    totals: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, usd: float) -> float:
        total = self.totals.get(key, 0.0) + usd
        self.totals[key] = total
        return total


class Verdict(enum.Enum):
    OK = "ok"
    WARN = "warn"  # crossed WARN_AT just now
    EXCEEDED = "exceeded"


@dataclass
class Budget:
    key: str
    limit_usd: float
    ledger: Ledger
    name: str = "call"  # what the limit is on, for messages: "call" or "token"
    spent_usd: float = 0.0
    _warned: bool = False

    def charge(self, usd: float) -> Verdict:
        self.spent_usd = self.ledger.add(self.key, usd)
        if self.spent_usd >= self.limit_usd:
            return Verdict.EXCEEDED
        if self.spent_usd >= WARN_AT * self.limit_usd and not self._warned:
            self._warned = True
            return Verdict.WARN
        return Verdict.OK

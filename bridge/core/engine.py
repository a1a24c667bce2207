"""The engine: provider options (credentials, URLs, limits), hooks and a cost collector, shared
by every conversation started with it (the server's calls, or an SDK's sessions).

Code that runs without an event loop of its own (a plain script using the SDK) gets one from
the engine: a daemon thread running an asyncio loop, started on first use and stopped by
:meth:`Engine.close`. Every conversation of such code lives on that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Mapping

from bridge.core.hooks import Hooks
from bridge.core.pricing import CostCollector
from bridge.core.session_config import SessionConfig
from bridge.providers import PROVIDERS, Provider, ProviderOptions, create_provider, routed


class Engine:
    """See the module docstring."""

    def __init__(self, options: Mapping[str, ProviderOptions] | None = None) -> None:
        given = dict(options or {})
        self._options: dict[str, ProviderOptions] = {
            name: given.get(name) or spec.options() for name, spec in PROVIDERS.items()
        }
        self.hooks = Hooks()
        self.costs = CostCollector()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def options(self, provider: str, api_key: str | None = None) -> ProviderOptions:
        """The options for ``provider``, with ``api_key`` instead of the engine's if given."""
        options = self._options[provider]
        if not api_key and not options.api_key and provider == "gpt-live":
            api_key = self._options["openai"].api_key  # one OpenAI key serves both APIs
        return dataclasses.replace(options, api_key=api_key) if api_key else options

    def api_key(self, provider: str) -> str:
        return self._options[provider].api_key if provider in self._options else ""

    def create_provider(
        self,
        name: str,
        model: str | None,
        config: SessionConfig,
        api_key: str | None = None,
    ) -> Provider:
        name = routed(name, model)
        return create_provider(name, model, config, self.options(name, api_key))

    def secrets(self) -> tuple[str, ...]:
        """Every credential the engine holds (redacted from anything a peer or a log sees)."""
        return tuple(o.api_key for o in self._options.values() if o.api_key)

    # -- a loop for code that has none ---------------------------------------------------------

    def background_loop(self) -> asyncio.AbstractEventLoop:
        """The engine's own event loop, in a daemon thread (started on first use)."""
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()
                    with contextlib.suppress(Exception):
                        loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()

                self._thread = threading.Thread(target=run, name="rtc-bridge-engine", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def close(self) -> None:
        """Stop the background loop, if one was started (its sessions should be closed)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

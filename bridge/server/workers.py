"""Running the service: one process, or a parent and N forked workers sharing one port.

Each worker binds its own listening socket to the port with SO_REUSEPORT, and the kernel
spreads new connections evenly over them; each worker also listens on a private Unix socket
through which the others forward requests about its sessions (:mod:`bridge.cluster`).
The parent only forwards signals and waits; if a worker dies, the others are stopped so
that a supervisor restarts the whole service rather than a half of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import ssl
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from bridge.server import prometheus, tls
from bridge.server.app import create_app
from bridge.server.cluster import Cluster
from bridge.server.config import Settings
from bridge.server.registry import freeze_startup_objects

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
METRICS_FOLDER = "metrics"  # in the runtime folder: the workers' Prometheus values


def worker_count(settings: Settings) -> int:
    return settings.workers or os.cpu_count() or 1


def listen(host: str, port: int, *, shared: bool = False, backlog: int = 1024) -> socket.socket:
    """A listening socket; ``shared`` ones (SO_REUSEPORT) let the kernel spread new
    connections evenly over the workers, each of which binds its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if backlog:
        sock.listen(backlog)
    sock.setblocking(False)
    return sock


def serve(settings: Settings, announce: Callable[[int, str], None]) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code. ``announce`` gets the number of
    workers and the URL to open."""
    workers = worker_count(settings)
    ssl_context, lan_url = tls.context(settings)
    scheme = "https" if ssl_context is not None else "http"
    url = lan_url or f"{scheme}://{settings.host}:{settings.port}/"
    if workers == 1:
        sock = listen(settings.host, settings.port)
        announce(workers, url)
        return _run_worker(settings, sock, None, ssl_context)
    # Fail here, not in every worker, when the port is taken. Bound without SO_REUSEPORT
    # (never listening): another bridge's workers share the port with each other, not with us.
    listen(settings.host, settings.port, backlog=0).close()
    announce(workers, url)
    own_folder = not settings.runtime_dir
    folder = tempfile.mkdtemp(prefix="rtc-bridge-") if own_folder else settings.runtime_dir
    paths = tuple(os.path.join(folder, f"worker-{i}.sock") for i in range(workers))
    # Every worker's metric values, in files GET /metrics on any worker reads: set up before
    # the fork, so the workers' prometheus_client keeps its values there.
    metrics_folder = os.path.join(folder, METRICS_FOLDER)
    prometheus.use_multiprocess_dir(metrics_folder)
    pids: list[int] = []
    try:
        for index in range(workers):
            pid = os.fork()
            if pid == 0:  # the worker
                code = 1
                try:
                    _end_with_parent()
                    sock = listen(settings.host, settings.port, shared=True)
                    code = _run_worker(settings, sock, Cluster(index, paths), ssl_context)
                finally:
                    os._exit(code)
            pids.append(pid)
        return _supervise(pids, on_exit=prometheus.worker_exited)
    finally:
        prometheus.discard_multiprocess_dir(metrics_folder)
        if own_folder:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def _end_with_parent() -> None:
    """Linux: SIGTERM this worker if the parent dies, even by SIGKILL (no orphans serving)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _supervise(pids: list[int], on_exit: Callable[[int], None] = lambda pid: None) -> int:
    def forward(signum: int, _frame: object) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    worst = 0
    alive = set(pids)
    while alive:
        pid, status = os.wait()
        alive.discard(pid)
        with contextlib.suppress(Exception):
            on_exit(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and alive:
            worst = worst or (code if code > 0 else 1)
            forward(signal.SIGTERM, None)  # one worker died: stop the rest
        elif code > 0:
            worst = worst or code
    return worst


def _run_worker(
    settings: Settings,
    sock: socket.socket,
    cluster: Cluster | None,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    # A stop signal can come before the event loop is up (e.g. while a sibling still starts):
    # remember it instead of dying with a traceback, and stop as soon as the loop runs.
    early: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda received, _frame: early.append(received))

    async def main() -> None:
        runner = web.AppRunner(create_app(settings, cluster), handle_signals=False)
        await runner.setup()
        freeze_startup_objects()
        loop_type = type(asyncio.get_running_loop())
        log.debug(
            "worker %d: event loop %s.%s", os.getpid(), loop_type.__module__, loop_type.__name__
        )
        await web.SockSite(runner, sock, ssl_context=ssl_context).start()
        if cluster is not None:
            await web.UnixSite(runner, cluster.sockets[cluster.index]).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if early:
            stop.set()
        try:
            await stop.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
                signal.signal(signum, signal.SIG_IGN)  # a second signal must not break shutdown
            await runner.cleanup()

    try:
        _event_loop_runner()(main())
    except KeyboardInterrupt:  # Ctrl+C while shutting down is still a clean stop
        pass
    return 0


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop when it is installed (a faster event loop), else asyncio's."""
    try:
        import uvloop

        return uvloop.run  # type: ignore[no-any-return,unused-ignore]
    except ImportError:
        return asyncio.run

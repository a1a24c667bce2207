"""The benchmark: the bridge against stock aiortc, on this machine, in one run.

    ./bench            # the full sweep (a few minutes)
    ./bench --quick    # fewer points

Each point starts a fresh server pinned to core 0 (``taskset``) and a load generator
(:mod:`benchmarks.loadgen`) pinned to core 1, in its own process, with N calls of
speech-like Opus each way. Servers: the stock aiortc echo (``MediaRelay``), the bridge with
its ``echo`` provider, and the bridge with the OpenAI emulator streaming every chunk straight
back (the emulator runs beside the load generator, on core 1). It also measures the round trip
of a click through the stock echo and through the bridge with that instant-echo emulator,
and calls per machine with 1 and 2 workers. Prints tables; writes ``benchmarks/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MAX_LATE_PCT = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(core: str | None, argv: list[str]) -> list[str]:
    if core is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return argv
    return ["taskset", "-c", core, *argv]


def wait_http(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Server:
    """A server process (and, for the OpenAI scenario, its emulator) for one point."""

    def __init__(self, kind: str, workers: int = 1, core: str | None = "0") -> None:
        self.kind, self.port = kind, free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if kind == "stock":
            argv = [PY, "-m", "benchmarks.stock_echo", "--port", str(self.port)]
        else:
            argv = [
                PY,
                "-m",
                "bridge",
                "serve",
                "--port",
                str(self.port),
                "--ice-addresses",
                "127.0.0.1",
                "--workers",
                str(workers),
                "--max-sessions",
                "500",
                "--max-sessions-per-ip",  # every simulated caller is 127.0.0.1
                "0",
                "--log-level",
                "warning",
            ]
            if kind == "openai":
                emulator_port = free_port()
                self.procs.append(
                    subprocess.Popen(
                        pinned(
                            "1",
                            [
                                PY,
                                "-m",
                                "bridge",
                                "emulate",
                                "openai",
                                "--reply",
                                "loopback",
                                "--port",
                                str(emulator_port),
                            ],
                        ),
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                wait_http(emulator_port)
                argv += [
                    "--provider",
                    "openai",
                    "--openai-url",
                    f"ws://127.0.0.1:{emulator_port}/v1/realtime",
                ]
                env["OPENAI_API_KEY"] = "benchmark"
        self.procs.append(
            subprocess.Popen(
                pinned(core, argv),
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_http(self.port)
        time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def load(
    server: Server, calls: int, mode: str, window: float, core: str | None = "1"
) -> dict[str, Any]:
    argv = [
        PY,
        "-m",
        "benchmarks.loadgen",
        "--url",
        server.url,
        "--calls",
        str(calls),
        "--mode",
        mode,
        "--window",
        str(window),
    ]
    out = subprocess.run(
        pinned(core, argv),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        return {"calls": calls, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def point(
    kind: str, calls: int, window: float, mode: str = "stream", **server: Any
) -> dict[str, Any]:
    srv = Server(kind, **server)
    try:
        result = load(
            srv, calls, mode, window, core=None if server.get("core", "0") is None else "1"
        )
    finally:
        srv.stop()
    result["server"] = kind
    if "server_cpu_pct" in result and calls:
        result["cpu_pct_per_call"] = round(result["server_cpu_pct"] / calls, 2)
        grown = result["server_rss_mb"] - result["server_rss_idle_mb"]
        result["rss_mb_per_call"] = round(grown / calls, 2)
    print("  " + summary(result), flush=True)
    return result


def summary(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['server']:7} N={r['calls']:3}  failed: {r['error']}"
    parts = [
        f"{r['server']:7} N={r['calls']:3}",
        f"cpu/call {r.get('cpu_pct_per_call', 0):5.2f}%",
        f"rss/call {r.get('rss_mb_per_call', 0):5.2f} MB",
        f"missing {r.get('missing_pct', 0):5.2f}%",
        f"late {r.get('late_pct', 0):5.2f}%",
        f"loadgen {r.get('loadgen_cpu_pct', 0):5.1f}%",
    ]
    if "uplink_ms" in r:
        parts += [
            f"up p50/p99 {r['uplink_ms']['p50']}/{r['uplink_ms']['p99']} ms",
            f"down p50/p99 {r['downlink_ms']['p50']}/{r['downlink_ms']['p99']} ms",
            f"bridge late {r['bridge_late_frames_pct']}%",
        ]
    if "click_rtt_ms" in r:
        parts.append(f"click rtt p50 {r['click_rtt_ms'].get('p50')} ms")
    stages = r.get("connect_ms")
    if stages:  # offer -> each stage, p50/p99 over this point's calls
        order = ("ice", "dtls", "channel", "provider_open", "open_delivered")
        parts.append(
            "connect " + " ".join(f"{k} {pair(stages[k])}" for k in order if k in stages) + " ms"
        )
    return "  ".join(parts)


def pair(latency: dict[str, Any] | None) -> str:
    return f"{latency['p50']}/{latency['p99']}" if latency else "-"


def markdown(results: dict[str, Any]) -> str:
    """The results as the README's table."""
    rows = [
        "| server | calls | CPU/call (% of a core) | RSS/call MB | missing % | late % "
        "| uplink p50/p99 ms | downlink p50/p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in results["points"]:
        if "error" in p:
            continue
        rows.append(
            f"| {p['server']} | {p['calls']} | {p['cpu_pct_per_call']} | {p['rss_mb_per_call']} "
            f"| {p['missing_pct']} | {p['late_pct']} "
            f"| {pair(p.get('uplink_ms'))} | {pair(p.get('downlink_ms'))} |"
        )
    return "\n".join(rows)


def capacity(points: list[dict[str, Any]]) -> int:
    """The most calls that kept missing and late packets within MAX_LATE_PCT."""
    ok = [
        p["calls"]
        for p in points
        if "error" not in p and p.get("missing_pct", 100) + p.get("late_pct", 100) <= MAX_LATE_PCT
    ]
    return max(ok, default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer points, shorter windows")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    args = parser.parse_args()
    window = 5.0 if args.quick else 8.0
    sweeps = {
        "stock": [1, 5, 10] if args.quick else [1, 5, 10, 15],
        "echo": [1, 5, 10, 25] if args.quick else [1, 5, 10, 20, 30, 40],
        "openai": [1, 5, 10, 25] if args.quick else [1, 5, 10, 20, 30],
    }
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "when": time.strftime("%Y-%m-%d %H:%M"),
        },
        "points": [],
    }
    print("calls on one core (server on core 0, load on core 1):", flush=True)
    for kind, sweep in sweeps.items():
        for calls in sweep:
            results["points"].append(point(kind, calls, window))
    print("click round trip (one call, instant echo):", flush=True)
    results["click"] = [point("stock", 1, 6.0, mode="click"), point("openai", 1, 6.0, mode="click")]
    print("calls per machine, all cores shared (1 vs 2 workers, bridge echo):", flush=True)
    steps = [10, 20, 30] if args.quick else [10, 20, 30, 40, 50]
    results["workers"] = {
        str(n): [point("echo", calls, window, workers=n, core=None) for calls in steps]
        for n in (1, 2)
    }
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for p in results["points"]:
        by_kind.setdefault(p["server"], []).append(p)

    def at(kind: str, calls: int) -> float | None:
        for p in by_kind.get(kind, []):
            if p["calls"] == calls and "cpu_pct_per_call" in p:
                return float(p["cpu_pct_per_call"])
        return None

    # CPU per call is compared where both keep up and share fixed costs alike: 5 calls.
    stock5, echo5, openai5 = at("stock", 5), at("echo", 5), at("openai", 5)
    results["summary"] = {
        "capacity_per_core": {k: capacity(v) for k, v in by_kind.items()},
        "cpu_pct_per_call_at_5": {"stock": stock5, "echo": echo5, "openai": openai5},
        "bridge_over_stock_cpu_at_5": {
            "echo": round(echo5 / stock5, 3) if echo5 and stock5 else None,
            "openai": round(openai5 / stock5, 3) if openai5 and stock5 else None,
        },
        "click_rtt_p50_ms": {
            p["server"]: p.get("click_rtt_ms", {}).get("p50") for p in results["click"]
        },
        "capacity_per_machine": {n: capacity(v) for n, v in results["workers"].items()},
    }
    print(markdown(results))
    print(json.dumps(results["summary"], indent=2))
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

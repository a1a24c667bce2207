"""The benchmark: the bridge beside stock aiortc, pipecat and fastrtc, on this machine, in one run.

    ./bench            # the full sweep (about a quarter of an hour)
    ./bench --quick    # fewer points

Each point starts a fresh server pinned to core 0 (``taskset``) and a load generator
(:mod:`benchmarks.loadgen`) pinned to core 1, in its own process, with N calls of speech-like
Opus each way. Servers: the stock aiortc echo (``MediaRelay``), pipecat's SmallWebRTC
transport with an echo pipeline, fastrtc's ``Stream`` with an echo handler (both in their own
benchmark-only virtualenvs, made by ``benchmarks/peers/setup.sh``), the bridge with its ``echo``
provider, and the bridge with the OpenAI emulator streaming every chunk straight back (the
emulator runs beside the load generator, on core 1). Loads: speech with pauses (the bridge's
echo replies after each phrase, about half the time; the other servers relay everything) and
continuous speech. Then capacity per core of the bridge, the round trip of a click, and the
workers. Prints tables; writes ``benchmarks/results.json``.
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
PEERS = {  # benchmark-only servers, each with its own virtualenv
    "pipecat": (ROOT / ".venv-bench-pipecat" / "bin" / "python", "benchmarks/pipecat_echo.py"),
    "fastrtc": (ROOT / ".venv-bench-fastrtc" / "bin" / "python", "benchmarks/fastrtc_echo.py"),
}
BRIDGES = ("echo", "openai")


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
        elif kind in PEERS:
            python, script = PEERS[kind]
            argv = [str(python), script, "--port", str(self.port)]
            env.pop("PYTHONPATH")  # their own virtualenv, nothing of ours
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
        wait_http(self.port, timeout=60.0)  # fastrtc imports gradio: slow to start
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
    server: Server,
    calls: int,
    mode: str,
    window: float,
    core: str | None = "1",
    speech: str = "pauses",
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
        "--speech",
        speech,
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
    kind: str,
    calls: int,
    window: float,
    mode: str = "stream",
    speech: str = "pauses",
    load_core: str | None = "1",
    **server: Any,
) -> dict[str, Any]:
    srv = Server(kind, **server)
    try:
        result = load(srv, calls, mode, window, core=load_core, speech=speech)
    finally:
        srv.stop()
    result["server"] = kind
    result["speech"] = speech
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


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    """A markdown table (the README shows the benchmark's tables as printed)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_side_by_side(results: dict[str, Any]) -> str:
    """The side-by-side table: CPU per call and punctuality of every server, per load."""
    columns = ["load", "server", "calls", "CPU/call (% of a core)", "RSS/call MB", "missing %"]
    columns += ["late %", "bridge / stock", "bridge / pipecat", "bridge / fastrtc"]
    rows: list[list[Any]] = []
    for p in results["side_by_side"]:
        head = [p["speech"], label(p["server"]), p["calls"]]
        if "error" in p:
            rows.append([*head, "failed", *[""] * 6])
            continue
        ratios = p.get("ratios", {})
        rows.append(
            [*head, p["cpu_pct_per_call"], p["rss_mb_per_call"], p["missing_pct"], p["late_pct"]]
            + [ratios.get(peer, "") for peer in ("stock", "pipecat", "fastrtc")]
        )
    return markdown_table(columns, rows)


def markdown_capacity(results: dict[str, Any]) -> str:
    columns = ["bridge", "calls", "CPU/call (% of a core)", "missing %", "late %"]
    columns += ["bridge late %", "uplink p50/p99 ms", "downlink p50/p99 ms", "RSS/call MB"]
    rows: list[list[Any]] = []
    for p in results["capacity"]:
        head = [label(p["server"]), p["calls"]]
        if "error" in p:
            rows.append([*head, "failed", *[""] * 6])
            continue
        rows.append(
            [
                *head,
                p["cpu_pct_per_call"],
                p["missing_pct"],
                p["late_pct"],
                p.get("bridge_late_frames_pct", ""),
                pair(p.get("uplink_ms")),
                pair(p.get("downlink_ms")),
                p["rss_mb_per_call"],
            ]
        )
    return markdown_table(columns, rows)


def label(kind: str) -> str:
    return {"echo": "bridge (echo)", "openai": "bridge (OpenAI loopback)"}.get(kind, kind)


def within_limits(p: dict[str, Any]) -> bool:
    """Kept up: missing + late packets at the caller, and the bridge's own late frames,
    each at most MAX_LATE_PCT."""
    if "error" in p:
        return False
    heard = p.get("missing_pct", 100) + p.get("late_pct", 100)
    return bool(heard <= MAX_LATE_PCT and p.get("bridge_late_frames_pct", 0) <= MAX_LATE_PCT)


def capacity(points: list[dict[str, Any]]) -> int:
    """The most calls that stayed within limits (and every smaller point did too)."""
    best = 0
    for p in sorted(points, key=lambda p: int(p["calls"])):
        if not within_limits(p):
            break
        best = p["calls"]
    return best


def add_ratios(points: list[dict[str, Any]]) -> None:
    """Bridge CPU per call over each other server's, same load and number of calls."""
    by = {(p["server"], p["speech"], p["calls"]): p for p in points if "cpu_pct_per_call" in p}
    for (kind, speech, calls), p in by.items():
        if kind not in BRIDGES:
            continue
        p["ratios"] = {}
        for peer in ("stock", *PEERS):
            other = by.get((peer, speech, calls))
            if other and other["cpu_pct_per_call"]:
                p["ratios"][peer] = round(p["cpu_pct_per_call"] / other["cpu_pct_per_call"], 2)


def ensure_peers() -> list[str]:
    """Set up the peers' virtualenvs; returns the peers that can run."""
    setup = ROOT / "benchmarks" / "peers" / "setup.sh"
    done = subprocess.run(["bash", str(setup)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"peers not set up ({done.stderr.strip()[-300:]}); measuring without them")
    return [name for name, (python, _) in PEERS.items() if python.exists()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer points, shorter windows")
    parser.add_argument("--no-peers", action="store_true", help="skip pipecat and fastrtc")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    args = parser.parse_args()
    window = 5.0 if args.quick else 8.0
    peers = [] if args.no_peers else ensure_peers()
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
            "when": time.strftime("%Y-%m-%d %H:%M"),
        },
    }
    side_calls = [5] if args.quick else [5, 10]
    loads = {
        "pauses": ["stock", *peers, "echo", "openai"],
        "continuous": ["stock", *peers, "openai"],
    }
    print("side by side, one core each (server on core 0, load on core 1):", flush=True)
    side: list[dict[str, Any]] = []
    for speech, kinds in loads.items():
        for calls in side_calls:
            for kind in kinds:
                side.append(point(kind, calls, window, speech=speech))
    add_ratios(side)
    results["side_by_side"] = side
    print("bridge capacity on one core (speech with pauses):", flush=True)
    sweeps = {
        "echo": [10, 20, 25, 30] if args.quick else [10, 20, 25, 30, 35, 40],
        "openai": [10, 15, 20, 25] if args.quick else [10, 15, 20, 25, 30],
    }
    results["capacity"] = [
        point(kind, calls, window) for kind, steps in sweeps.items() for calls in steps
    ]
    print("click round trip (one call, instant echo):", flush=True)
    results["click"] = [point("stock", 1, 6.0, mode="click"), point("openai", 1, 6.0, mode="click")]
    print("workers (bridge echo, speech with pauses):", flush=True)
    # The machine has two cores: a worker per core leaves none for the load generator. So:
    # two workers sharing core 0 (load on core 1) show what a second worker costs on one
    # core; two workers on both cores with the load beside them show calls per machine with
    # the load generator's CPU taken out of it.
    steps = [20, 30] if args.quick else [20, 25, 30, 35]
    results["workers"] = {
        "1 worker, core 0": [point("echo", n, window, workers=1) for n in steps],
        "2 workers, core 0": [point("echo", n, window, workers=2) for n in steps],
        "2 workers, cores 0-1, load on 0-1": [
            point("echo", n, window, workers=2, core=None, load_core=None)
            for n in ([30, 40, 50] if args.quick else [30, 40, 50, 60])
        ],
    }

    def cpu(kind: str, speech: str, calls: int) -> float | None:
        for p in side:
            if (p["server"], p["speech"], p["calls"]) == (kind, speech, calls):
                return p.get("cpu_pct_per_call")
        return None

    results["summary"] = {
        "cpu_pct_per_call": {
            f"{speech} N={n}": {kind: cpu(kind, speech, n) for kind in kinds}
            for speech, kinds in loads.items()
            for n in side_calls
        },
        "bridge_over_peers": {
            f"{p['server']} {p['speech']} N={p['calls']}": p["ratios"]
            for p in side
            if p.get("ratios")
        },
        "capacity_per_core": {
            kind: capacity([p for p in results["capacity"] if p["server"] == kind])
            for kind in sweeps
        },
        "click_rtt_p50_ms": {
            p["server"]: p.get("click_rtt_ms", {}).get("p50") for p in results["click"]
        },
        "workers_capacity": {name: capacity(v) for name, v in results["workers"].items()},
    }
    print(markdown_side_by_side(results))
    print()
    print(markdown_capacity(results))
    print(json.dumps(results["summary"], indent=2))
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()

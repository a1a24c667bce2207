"""The ``bridge`` command: ``bridge serve`` runs the service."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from bridge.core.errors import ConfigError
from bridge.server.config import Settings, env_name, parse_value, public_fields
from bridge.server.logs import configure as configure_logging


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    for f in public_fields():
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown = ",".join(default) if isinstance(default, tuple) else default
        parser.add_argument(
            flag,
            dest=f.name,
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata['help']} [env {env_name(f.name)}; default {shown!r}]",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge", description="rtc-bridge: talk to realtime voice AI over WebRTC."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the bridge service")
    _add_setting_flags(serve)
    token = commands.add_parser(
        "token", help="mint an access token (signed with BRIDGE_AUTH_SECRET) and print it"
    )
    token.add_argument("--ttl", type=float, default=300.0, help="seconds it is valid")
    token.add_argument("--subject", help="owner id of the calls it starts (default: random)")
    token.add_argument("--admin", action="store_true", help="may list and end every call")
    token.add_argument(
        "--provider", action="append", help="a provider it may use (repeat; default: any)"
    )
    token.add_argument("--model", action="append", help="a model it may use (repeat)")
    token.add_argument("--max-duration", type=float, help="seconds each call may last")
    token.add_argument("--max-sessions", type=int, help="concurrent calls it may hold")
    token.add_argument("--budget-usd", type=float, help="USD all its calls may spend")
    emulate = commands.add_parser(
        "emulate",
        help="run a local provider emulator",
        description="A local server that speaks a provider's wire protocol (for tests and "
        "demos without keys or network). Ctrl+C stops it.",
    )
    emulate.add_argument(
        "provider", choices=["openai", "gemini", "gpt-live"], help="which to emulate"
    )
    emulate.add_argument("--host", default="127.0.0.1", help="address to listen on")
    emulate.add_argument("--port", type=int, default=8765, help="TCP port to listen on")
    emulate.add_argument(
        "--reply",
        choices=["echo", "tone", "text", "loopback"],
        default="echo",
        help="what it answers: echo (your utterance), tone, text (openai), loopback (openai: "
        "every appended chunk straight back, for latency tests); gpt-live takes echo or tone",
    )
    emulate.add_argument(
        "--tone-hz", type=float, default=660.0, help="pitch of the tone reply, in Hz"
    )
    emulate.add_argument(
        "--tone-seconds", type=float, default=1.0, help="length of the tone reply, in seconds"
    )
    emulate.add_argument(
        "--speed", type=float, default=4.0, help="reply speed, x real time (0.8: slower)"
    )
    emulate.add_argument("--accept-beta", action="store_true", help="openai: serve the beta API")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for f in public_fields():
        raw = getattr(args, f.name, None)
        if raw is not None:
            overrides[f.name] = parse_value(f, raw, "--" + f.name.replace("_", "-"))
    return Settings.from_sources(overrides=overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "emulate":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        return _emulate(args)
    if args.command == "token":
        return _token(args)
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"bridge: error: {exc.message}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        return _serve(settings)
    return 2


def _serve(settings: Settings) -> int:
    from bridge.server.workers import serve

    def announce(workers: int, url: str) -> None:
        print(
            f"rtc-bridge on {url} "
            f"(default provider: {settings.default_provider}, {workers} worker"
            f"{'s' if workers > 1 else ''}); Ctrl+C stops it",
            flush=True,
        )
        if settings.tls == "self-signed":
            print(
                f"open {url} on your phone or another machine and accept the certificate "
                "warning (self-signed); the microphone then works",
                flush=True,
            )

    for warning in _network_warnings(settings):
        print(f"bridge: warning: {warning}", file=sys.stderr, flush=True)
    try:
        return serve(settings, announce)
    except OSError as exc:
        why = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            why = "the port is in use (another bridge, or another program, listens there)"
        print(
            f"bridge: error: cannot listen on {settings.host}:{settings.port}: {why}",
            file=sys.stderr,
        )
        return 2


def _network_warnings(settings: Settings) -> list[str]:
    """What would make calls from other machines time out (checked once, at startup)."""
    import asyncio

    from bridge.server.config import is_loopback
    from bridge.server.turn import diagnose

    if is_loopback(settings.host):
        return []  # only this machine's clients: loopback candidates are what they need
    try:
        report = asyncio.run(diagnose(settings, probe=False))
    except Exception as exc:  # the check is advice: it must never stop the service
        return [f"could not check the ICE addresses: {type(exc).__name__}"]
    return [str(w) for w in report.get("warnings", [])]


def _token(args: argparse.Namespace) -> int:
    from bridge.server.auth import mint

    secret = os.environ.get("BRIDGE_AUTH_SECRET", "")
    if len(secret) < 32:
        print("bridge: error: set BRIDGE_AUTH_SECRET (32+ characters) first", file=sys.stderr)
        return 2
    for name in ("ttl", "max_duration", "max_sessions", "budget_usd"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            print(f"bridge: error: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            return 2
    print(
        mint(
            secret,
            args.ttl,
            subject=args.subject,
            admin=args.admin,
            providers=tuple(args.provider) if args.provider else None,
            models=tuple(args.model) if args.model else None,
            max_duration=args.max_duration,
            max_sessions=args.max_sessions,
            budget_usd=args.budget_usd,
        )
    )
    return 0


def _emulate(args: argparse.Namespace) -> int:
    import asyncio

    from bridge.emulators.gemini import GeminiEmulator, GeminiEmulatorOptions
    from bridge.emulators.gpt_live import GptLiveEmulator, GptLiveEmulatorOptions
    from bridge.emulators.openai import OpenAIEmulator, OpenAIEmulatorOptions

    common = {
        "reply": args.reply,
        "tone_hz": args.tone_hz,
        "tone_seconds": args.tone_seconds,
        "speed": args.speed,
    }
    emulator: OpenAIEmulator | GeminiEmulator | GptLiveEmulator
    if args.provider == "gpt-live":
        if args.reply not in ("echo", "tone"):
            print("bridge: error: gpt-live replies with echo or tone", file=sys.stderr)
            return 2
        emulator = GptLiveEmulator(GptLiveEmulatorOptions(**common), host=args.host, port=args.port)
        hint = "BRIDGE_OPENAI_LIVE_URL={url} OPENAI_API_KEY=anything"
    elif args.provider == "openai":
        options = OpenAIEmulatorOptions(**common, accept_beta=args.accept_beta)
        emulator = OpenAIEmulator(options, host=args.host, port=args.port)
        hint = "BRIDGE_OPENAI_URL={url} OPENAI_API_KEY=anything"
    else:
        emulator = GeminiEmulator(GeminiEmulatorOptions(**common), host=args.host, port=args.port)
        hint = "BRIDGE_GEMINI_URL={url} GEMINI_API_KEY=anything"

    async def run() -> None:
        await emulator.start()
        try:
            print(
                f"{args.provider} emulator on {emulator.url}; point the bridge at it with "
                f"{hint.format(url=emulator.url)}; Ctrl+C stops it",
                flush=True,
            )
            await asyncio.Event().wait()
        finally:
            await emulator.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())

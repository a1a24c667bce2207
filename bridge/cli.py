"""The ``bridge`` command: ``bridge serve`` runs the service."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .config import Settings, env_name, parse_value, public_fields
from .errors import ConfigError


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
    emulate = commands.add_parser("emulate", help="run a local provider emulator")
    emulate.add_argument("provider", choices=["openai"], help="which provider to emulate")
    emulate.add_argument("--host", default="127.0.0.1")
    emulate.add_argument("--port", type=int, default=8765)
    emulate.add_argument("--reply", choices=["echo", "tone", "text"], default="echo")
    emulate.add_argument("--tone-hz", type=float, default=660.0)
    emulate.add_argument("--tone-seconds", type=float, default=1.0)
    emulate.add_argument("--speed", type=float, default=4.0, help="reply speed, x real time")
    emulate.add_argument("--accept-beta", action="store_true", help="serve the beta interface")
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
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"bridge: error: {exc.message}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        return _serve(settings)
    return 2


def _serve(settings: Settings) -> int:
    from aiohttp import web

    from .app import create_app

    def announce(_: str) -> None:
        print(
            f"rtc-bridge on http://{settings.host}:{settings.port}/ "
            f"(default provider: {settings.default_provider}); Ctrl+C stops it",
            flush=True,
        )

    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=announce)
    return 0


def _emulate(args: argparse.Namespace) -> int:
    import asyncio

    from .emulators.openai import OpenAIEmulator, OpenAIEmulatorOptions

    options = OpenAIEmulatorOptions(
        reply=args.reply,
        tone_hz=args.tone_hz,
        tone_seconds=args.tone_seconds,
        speed=args.speed,
        accept_beta=args.accept_beta,
    )

    async def run() -> None:
        async with OpenAIEmulator(options, host=args.host, port=args.port) as emulator:
            print(
                f"OpenAI Realtime emulator on {emulator.url}; point the bridge at it with "
                f"BRIDGE_OPENAI_URL={emulator.url} OPENAI_API_KEY=anything; Ctrl+C stops it",
                flush=True,
            )
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())

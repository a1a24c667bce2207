"""The ``bridge`` command: ``bridge serve`` runs the service."""

from __future__ import annotations

import argparse
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


if __name__ == "__main__":
    sys.exit(main())

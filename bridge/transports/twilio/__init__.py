"""Twilio Media Streams: phone calls as a WebSocket of 8 kHz mu-law (work in progress)."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Register the Twilio webhook and media-stream endpoints."""

"""rtc-bridge: talk to realtime voice AI over WebRTC, or from Python code (:mod:`bridge.sdk`)."""

from bridge.core.engine import Engine
from bridge.sdk import RealtimeSession, create_engine, create_realtime
from bridge.server.app import create_app
from bridge.server.config import Settings

__all__ = [
    "Engine",
    "RealtimeSession",
    "Settings",
    "create_app",
    "create_engine",
    "create_realtime",
]
__version__ = "0.1.0"

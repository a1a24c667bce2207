"""rtc-bridge: talk to realtime voice AI over WebRTC."""

from bridge.server.app import create_app
from bridge.server.config import Settings

__all__ = ["Settings", "create_app"]
__version__ = "0.1.0"

"""rtc-bridge: talk to realtime voice AI over WebRTC."""

from .app import create_app
from .config import Settings

__all__ = ["Settings", "create_app"]
__version__ = "0.1.0"

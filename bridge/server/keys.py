"""Typed application keys shared by the app factory and the request handlers."""

from __future__ import annotations

from aiohttp import web

from bridge.core.budget import Ledger
from bridge.core.engine import Engine
from bridge.core.metrics import Metrics
from bridge.server.cluster import Cluster
from bridge.server.config import Settings
from bridge.server.registry import SessionRegistry
from bridge.server.replicas import Replicas
from bridge.transports.webrtc.pacing import FrameClock

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", SessionRegistry)
METRICS = web.AppKey("metrics", Metrics)
CLUSTER = web.AppKey("cluster", Cluster)
ENGINE = web.AppKey("engine", Engine)
LEDGER: web.AppKey[Ledger] = web.AppKey("ledger")  # what each access token has spent
REPLICAS: web.AppKey[Replicas] = web.AppKey("replicas")  # only with redis_url
FRAME_CLOCK = web.AppKey("frame_clock", FrameClock)  # paces every outbound WebRTC track

"""Typed application keys shared by the app factory and the request handlers."""

from __future__ import annotations

from aiohttp import web

from .cluster import Cluster
from .config import Settings
from .metrics import Metrics
from .registry import SessionRegistry

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", SessionRegistry)
METRICS = web.AppKey("metrics", Metrics)
CLUSTER = web.AppKey("cluster", Cluster)

"""``GET /metrics``: the bridge's sessions, audio, latencies, errors and spending in the
Prometheus text format (OpenMetrics when the scraper asks for it).

Sessions feed it through the registry's listeners (``"added"``: the session's probes get one
more; ``"removed"``: its totals from :meth:`Conversation.describe`) and through their probes
(``provider_connect_ms``, ``turn_latency_ms``, ``cost_usd``, ``error``) as things happen.

* **One process** (and every app a test creates): the metrics live in the app's own
  :class:`CollectorRegistry`, never in prometheus_client's global one, so apps do not see each
  other's numbers.
* **Several workers** (``bridge serve --workers N``): :func:`use_multiprocess_dir` (called by
  the parent in :mod:`bridge.server.workers` before it forks) puts every worker's values in
  memory-mapped files in one folder; ``/metrics`` on any worker reads them all, so it answers
  for the whole service. The active-sessions gauge sums live workers only (``livesum``);
  :func:`worker_exited` drops a dead worker's gauges.

Labels hold only transport kinds, provider and model names, error codes and close reasons
(checked, see :func:`_label`): never a key, token, session id or anything a client typed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.exposition import choose_encoder

from bridge.core.conversation import Conversation
from bridge.core.redact import redact
from bridge.server.keys import CLUSTER, REGISTRY

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "rtcbridge_"
CONNECT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_LABEL = re.compile(r"[A-Za-z0-9_.:/\-]{1,64}")
OTHER = "other"

SESSION = ("transport", "provider")


def _label(value: object) -> str:
    """``value`` as a label value, when it is a short name that carries no secret; else
    ``"other"`` (a provider's free-form code must not mint series without end)."""
    if not isinstance(value, str) or not _LABEL.fullmatch(value) or redact(value) != value:
        return OTHER
    return value


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value >= 0 else None


class Meters:
    """The metrics of one app, and which of its sessions the active gauge counts."""

    def __init__(self, registry: CollectorRegistry, multiproc_dir: str | None = None) -> None:
        self.registry = r = registry
        self.multiproc_dir = multiproc_dir
        self.counted: dict[str, tuple[str, str]] = {}
        """Session id → the (transport, provider) it was counted under (the gauge's labels)."""
        self.waiting: dict[str, Conversation] = {}
        """Sessions registered before their transport was attached (gateway, Twilio): counted
        at their first probe, at a scrape, or when they end, whichever comes first."""
        self.active = Gauge(
            PREFIX + "sessions_active",
            "Sessions in progress",
            SESSION,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.sessions = Counter(PREFIX + "sessions", "Sessions started", SESSION, registry=r)
        self.closed = Counter(
            PREFIX + "sessions_closed",
            "Sessions ended, by why they ended",
            (*SESSION, "reason"),
            registry=r,
        )
        self.audio_in = Counter(
            PREFIX + "audio_in_seconds",
            "User audio sent to the provider, in seconds (counted when a session ends)",
            SESSION,
            registry=r,
        )
        self.audio_out = Counter(
            PREFIX + "audio_out_seconds",
            "Reply audio received from the provider, in seconds (counted when a session ends)",
            SESSION,
            registry=r,
        )
        self.reply_dropped = Counter(
            PREFIX + "reply_dropped_seconds",
            "Reply audio dropped because the reply buffer was full (counted when a session ends)",
            SESSION,
            registry=r,
        )
        self.reply_underruns = Counter(
            PREFIX + "reply_underruns",
            "Replies that ran dry while playing (counted when a session ends)",
            SESSION,
            registry=r,
        )
        self.connect = Histogram(
            PREFIX + "provider_connect_seconds",
            "Time to open a provider session",
            ("provider",),
            buckets=CONNECT_BUCKETS,
            registry=r,
        )
        self.turn_latency = Histogram(
            PREFIX + "turn_latency_seconds",
            "End of the user's turn to the first reply audio or text",
            SESSION,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reconnects = Counter(
            PREFIX + "provider_reconnects",
            "Provider sockets replaced after a drop, Gemini resumptions included (counted "
            "when a session ends)",
            ("provider",),
            registry=r,
        )
        self.handovers = Counter(
            PREFIX + "provider_handovers",
            "Provider sessions handed over: renewal (a session cap), resume (Gemini "
            "resumption); counted when a session ends",
            ("provider", "kind"),
            registry=r,
        )
        self.errors = Counter(
            PREFIX + "errors",
            "Error events sent to clients, by code",
            ("provider", "code"),
            registry=r,
        )
        self.cost = Counter(
            PREFIX + "cost_usd",
            "USD spent at the providers, as priced from their usage reports",
            ("provider", "model"),
            registry=r,
        )

    # -- sessions coming and going ---------------------------------------------------------------

    def on_change(self, change: str, conversation: Conversation) -> None:
        """A :attr:`SessionRegistry.listeners` entry."""
        if change == "added":
            conversation.probes.append(self.on_probe)
            if conversation.transport is not None:
                self._count(conversation)
            else:
                self.waiting[conversation.id] = conversation
        elif change == "removed":
            self._ended(conversation)

    def _count(self, conversation: Conversation) -> tuple[str, str]:
        """The session's labels; it enters the gauge and the total the first time."""
        labels = self.counted.get(conversation.id)
        if labels is None:
            self.waiting.pop(conversation.id, None)
            transport = conversation.transport
            labels = (
                _label(transport.kind) if transport is not None else "none",
                _label(conversation.provider.name),
            )
            self.counted[conversation.id] = labels
            self.sessions.labels(*labels).inc()
            self.active.labels(*labels).inc()
        return labels

    def count_waiting(self) -> None:
        """Count the waiting sessions whose transport is attached by now."""
        for conversation in list(self.waiting.values()):
            if conversation.transport is not None:
                self._count(conversation)

    def _ended(self, conversation: Conversation) -> None:
        labels = self._count(conversation)
        self.active.labels(*labels).dec()
        del self.counted[conversation.id]
        if self.on_probe in conversation.probes:
            conversation.probes.remove(self.on_probe)
        self.closed.labels(*labels, _label(conversation.close_reason or "unknown")).inc()
        try:
            facts = conversation.describe()
        except Exception:  # the totals are worth less than the rest of the shutdown
            log.exception("session %s: no totals for the metrics", conversation.id)
            return
        for counter, key, scale in (
            (self.audio_in, "audio_in_s", 1.0),
            (self.audio_out, "audio_out_s", 1.0),
            (self.reply_dropped, "reply_dropped_ms", 0.001),
            (self.reply_underruns, "reply_underruns", 1.0),
        ):
            amount = _number(facts.get(key))
            if amount:
                counter.labels(*labels).inc(amount * scale)
        provider = labels[1]
        reconnects = _number(facts.get("reconnects"))
        if reconnects:
            self.reconnects.labels(provider).inc(reconnects)
        stats = facts.get("provider_stats")
        if isinstance(stats, dict):
            for kind, key in (("renewal", "renewals"), ("resume", "resumes")):
                amount = _number(stats.get(key))
                if amount:
                    self.handovers.labels(provider, kind).inc(amount)

    # -- measurements as they happen -------------------------------------------------------------

    def on_probe(self, conversation: Conversation, name: str, value: float | str) -> None:
        """A :attr:`Conversation.probes` entry."""
        labels = self._count(conversation)
        provider = labels[1]
        if name == "error":
            self.errors.labels(provider, _label(value)).inc()
            return
        amount = _number(value)
        if amount is None:
            return
        if name == "provider_connect_ms":
            self.connect.labels(provider).observe(amount / 1000)
        elif name == "turn_latency_ms":
            self.turn_latency.labels(*labels).observe(amount / 1000)
        elif name == "cost_usd" and amount:
            self.cost.labels(provider, _label(conversation.provider.model)).inc(amount)

    # -- scraping ----------------------------------------------------------------------------------

    def exposition(self) -> CollectorRegistry:
        """What ``/metrics`` shows: this app's registry, or with several workers every
        worker's values read from the shared folder."""
        self.count_waiting()
        if self.multiproc_dir is None:
            return self.registry
        gathered = CollectorRegistry()
        multiprocess.MultiProcessCollector(gathered, path=self.multiproc_dir)  # type: ignore[no-untyped-call]
        return gathered


METERS = web.AppKey("prometheus_meters", Meters)


def install(app: web.Application) -> None:
    """Register ``/metrics`` and the listeners that feed it."""
    meters = Meters(CollectorRegistry(auto_describe=True), multiproc_dir=_shared_dir(app))
    app[METERS] = meters
    app[REGISTRY].listeners.append(meters.on_change)
    app.router.add_get("/metrics", get_metrics)


def _shared_dir(app: web.Application) -> str | None:
    """The multiprocess folder, for a worker of several that :func:`use_multiprocess_dir`
    prepared; None for a lone process (its app's own registry is the whole story)."""
    folder = os.environ.get(MULTIPROC_ENV)
    if app.get(CLUSTER) is None or not folder:
        return None
    if not os.path.isdir(folder) or values.ValueClass is values.MutexValue:
        log.warning("%s is not usable: /metrics shows this worker only", MULTIPROC_ENV)
        return None
    return folder


async def get_metrics(request: web.Request) -> web.Response:
    meters = request.app[METERS]
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(meters.exposition())
    return web.Response(body=body, headers={"Content-Type": content_type})


# -- several workers (called by the parent process of bridge.server.workers) -----------------------


def use_multiprocess_dir(folder: str) -> None:
    """Make ``folder`` (emptied first) where the workers about to be forked keep their metric
    values. prometheus_client chooses its value store when it is imported, which the bridge
    package has already done here, so it is told to choose again now that the folder is set;
    metrics created from now on (in the workers' apps) live in files there."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, mode=0o700)
    os.environ[MULTIPROC_ENV] = folder
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay: they were counted)."""
    folder = os.environ.get(MULTIPROC_ENV)
    if folder and os.path.isdir(folder):
        multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]


def discard_multiprocess_dir(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)

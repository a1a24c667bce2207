"""Service settings: named, typed, validated once at startup.

Each field can be set on the command line (``--connect-timeout 10``) or in the environment
(``BRIDGE_CONNECT_TIMEOUT=10``); the command line wins. A wrong value stops the service at
startup with a :class:`~bridge.errors.ConfigError` that names the setting, never mid-call.
Provider keys are read from their usual variables (``OPENAI_API_KEY``, ``GEMINI_API_KEY``) and
never printed: ``repr(settings)`` masks them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.core.errors import BadRequest, ConfigError
from bridge.core.session_config import SessionConfig
from bridge.protocols.openai_server import CLIENT_EVENTS
from bridge.providers import PROVIDERS
from bridge.providers.base import ProviderOptions
from bridge.providers.echo import EchoOptions
from bridge.providers.gemini import DEFAULT_URL as GEMINI_URL
from bridge.providers.gemini import GeminiOptions
from bridge.providers.gpt_live import DEFAULT_URL as OPENAI_LIVE_URL
from bridge.providers.gpt_live import GptLiveOptions
from bridge.providers.openai import DEFAULT_URL as OPENAI_URL
from bridge.providers.openai import OpenAIOptions

PROVIDER_NAMES = ("echo", "openai", "gemini", "gpt-live")
RESERVED_PATHS = (
    "/",
    "/offer",
    "/whip",
    "/sessions",
    "/providers",
    "/healthz",
    "/stats",
    "/v1/realtime",
    "/telephony/twilio",
    "/telephony/twilio/voice",
    "/metrics",
    "/ice-servers",
    "/diag/ice",
)
LOG_LEVELS = ("debug", "info", "warning", "error")
GATEWAY_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "response.create",
    "response.cancel",
    "conversation.item.truncate",
)


def _setting(default: Any, help: str, **limits: Any) -> Any:
    return field(default=default, metadata={"help": help, **limits})


@dataclass(frozen=True)
class Settings:
    host: str = _setting("127.0.0.1", "address to listen on")
    port: int = _setting(8080, "TCP port to listen on", min=0, max=65535)
    provider: str = _setting(
        "", "default provider: echo, openai or gemini (default: by the API key present)"
    )
    model: str = _setting("", "default model for the provider (default: the provider's own)")
    ice_servers: tuple[str, ...] = _setting(
        (), "STUN/TURN URLs for the bridge's peers, comma separated (default: none, host only)"
    )
    ice_addresses: tuple[str, ...] = _setting(
        (), "local addresses to offer as ICE host candidates, comma separated (default: all)"
    )
    workers: int = _setting(
        0, "worker processes sharing the port (0: one per CPU core)", min=0, max=64
    )
    runtime_dir: str = _setting(
        "", "folder for the workers' private sockets (default: a new temporary folder)"
    )
    max_sessions: int = _setting(100, "most concurrent calls; more get HTTP 503", min=1)
    connect_timeout: float = _setting(
        15.0, "seconds a new peer has to connect before its session ends", min=0.1
    )
    inactivity_timeout: float = _setting(
        15.0, "seconds without inbound audio before a session ends", min=0.1
    )
    max_body_bytes: int = _setting(
        65536, "largest signaling request body in bytes", min=1024, max=16 * 1024 * 1024
    )
    body_timeout: float = _setting(
        10.0, "seconds a client has to send a request body (slower ones get HTTP 408)", min=0.1
    )
    header_timeout: float = _setting(
        10.0,
        "seconds a connection may stay open without a complete request (headers included)",
        min=0.1,
    )
    max_reply_buffer_ms: int = _setting(
        60_000, "most reply audio buffered for playback per call, in ms", min=200
    )
    opus_complexity: int = _setting(
        5,
        "libopus complexity of the reply audio sent to WebRTC peers (0-10): CPU against "
        "quality; 5 is libwebrtc's choice on phones, 10 libopus's default",
        min=0,
        max=10,
    )
    pacing_slots: int = _setting(
        2,
        "phases of the one 20 ms clock that paces all outbound tracks of a worker: calls are "
        "spread over them, so each timer wakes a few calls at once (1 = all together)",
        min=1,
        max=20,
    )
    media_fast_path: bool = _setting(
        True,
        "once a WebRTC call is connected, its audio RTP bypasses aiortc's per-packet chain "
        "(same SRTP sessions and RTCP figures, less CPU per call); off = aiortc's path",
    )
    max_text_chars: int = _setting(
        4000, "longest typed message a client may send on the events channel", min=1
    )
    echo_threshold_dbfs: float = _setting(
        -45.0, "echo provider: level above which input counts as speech", min=-120, max=0
    )
    echo_silence_ms: int = _setting(
        500, "echo provider: silence that ends an utterance, in ms", min=40
    )
    echo_max_utterance_ms: int = _setting(
        30_000, "echo provider: longest utterance it keeps to replay, in ms", min=100
    )
    openai_url: str = _setting(OPENAI_URL, "OpenAI Realtime WebSocket URL (an emulator in tests)")
    gemini_url: str = _setting(GEMINI_URL, "Gemini Live WebSocket URL (an emulator in tests)")
    openai_live_url: str = _setting(
        OPENAI_LIVE_URL, "OpenAI GPT-Live WebSocket URL (an emulator in tests)"
    )
    gpt_live_tell_heard: bool = _setting(
        True,
        "GPT-Live: after a local barge-in flush, tell the model (as silent context) how much of "
        "its reply the user heard; an estimate from played milliseconds",
    )
    openai_transcription_model: str = _setting(
        "gpt-4o-mini-transcribe",
        "OpenAI model that transcribes the user's speech (gpt-4o-mini-transcribe shuts down "
        "2027-02-26; gpt-live-transcribe is its named successor)",
    )
    gemini_resume_overlap_ms: int = _setting(
        500,
        "Gemini: user audio sent just before a resumption handle arrived that is replayed on "
        "resumption (audio still in flight when the server made the handle), in ms",
        min=0,
        max=5000,
    )
    gemini_handle_wait: float = _setting(
        2.0,
        "Gemini: seconds a handover waits after a finished turn for the handle that covers it",
        min=0,
        max=30,
    )
    openai_session_cap: float = _setting(
        3300.0,
        "seconds before an OpenAI session is renewed at a turn boundary (cap: 60 min)",
        min=1,
    )
    provider_connect_timeout: float = _setting(
        15.0, "seconds a provider has to open its session before the call ends", min=0.5
    )
    provider_audio_queue_ms: int = _setting(
        5000, "user audio held (oldest dropped) while a provider socket is replaced, in ms", min=100
    )
    provider_reconnects: int = _setting(
        3, "reconnection attempts after a transient provider drop", min=0, max=20
    )
    provider_ping_interval: float = _setting(
        20.0,
        "seconds between WebSocket pings to the provider (a silent socket is dropped)",
        min=0.1,
    )
    log_level: str = _setting("info", "debug, info, warning or error")
    static_dir: str = _setting("", "folder of the demo page (default: the repo's static/)")
    session_defaults: str = _setting(
        "",
        "session every call starts from, as JSON in the events-channel shape, e.g. "
        '{"instructions": "Be brief.", "voice": "marin"} (clients merge their own into it)',
    )
    lock_instructions: bool = _setting(
        False, "clients may not replace the instructions of session_defaults"
    )
    gateway_path: str = _setting("/realtime", "path of the WebSocket gateway's envelope mode")
    gateway_max_message_bytes: int = _setting(
        1024 * 1024,
        "largest message a gateway client may send (larger ones close the socket with 1009)",
        min=1024,
    )
    gateway_events: tuple[str, ...] = _setting(
        GATEWAY_EVENTS,
        "OpenAI client event types gateway clients may send, comma separated (others get an "
        "error event)",
    )
    public_url: str = _setting(
        "",
        "the bridge's public http(s) URL, for links it hands out (Twilio's stream URL, its "
        "signature check); default: from each request's Host header",
    )
    allow_unauthenticated: bool = _setting(
        False,
        "serve a non-loopback host without auth_secret (anyone who reaches it can start calls "
        "on your provider keys)",
    )
    allowed_origins: tuple[str, ...] = _setting(
        (),
        "Origins browsers may call from, comma separated (* for any; default: same origin)",
    )
    token_max_ttl: int = _setting(
        86_400, "longest lifetime of an access token the bridge accepts, in seconds", min=10
    )
    max_sessions_per_ip: int = _setting(
        20, "most concurrent calls from one client IP (0: no limit)", min=0
    )
    max_sessions_per_token: int = _setting(
        10, "most concurrent calls per access token, unless it grants fewer (0: no limit)", min=0
    )
    max_call_duration: float = _setting(
        3600.0, "seconds a call may last before it ends (max_duration)", min=1
    )
    session_budget_usd: float = _setting(
        0.0,
        "USD a call may spend (warned at 80 %, ended at 100 %); 0: no limit but the token's",
        min=0,
    )
    turn_urls: tuple[str, ...] = _setting(
        (),
        "TURN server URLs (turn:host:3478?transport=udp, ...) whose credentials the bridge "
        "mints with turn_secret, comma separated",
    )
    turn_ttl: int = _setting(
        3600, "lifetime of minted TURN credentials, in seconds", min=60, max=7 * 86_400
    )
    redis_url: str = _setting(
        "",
        "Redis for several replicas: shared registry, per-token limits and budgets "
        "(redis://host:6379/0); default: none, this machine only",
    )
    advertise_url: str = _setting(
        "",
        "this replica's own http URL other replicas forward requests to (with redis_url); "
        "default: http://host:port",
    )
    log_format: str = _setting("text", "text or json (one JSON object a line, with session ids)")
    tls: str = _setting(
        "",
        "self-signed: serve HTTPS with a certificate made for this machine's LAN address "
        "(phones and other machines need https:// for the microphone)",
    )
    tls_cert: str = _setting("", "PEM certificate (chain) to serve HTTPS with (and --tls-key)")
    tls_key: str = _setting("", "PEM private key of --tls-cert")
    auth_secret: str = field(default="", repr=False, metadata={"secret": "BRIDGE_AUTH_SECRET"})
    turn_secret: str = field(default="", repr=False, metadata={"secret": "BRIDGE_TURN_SECRET"})
    openai_api_key: str = field(default="", repr=False, metadata={"secret": "OPENAI_API_KEY"})
    gemini_api_key: str = field(default="", repr=False, metadata={"secret": "GEMINI_API_KEY"})
    twilio_auth_token: str = field(default="", repr=False, metadata={"secret": "TWILIO_AUTH_TOKEN"})

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            if lo is not None and value < lo:
                raise ConfigError(f"{f.name} must be at least {lo} (got {value})")
            if hi is not None and value > hi:
                raise ConfigError(f"{f.name} must be at most {hi} (got {value})")
        if self.provider and self.provider not in PROVIDER_NAMES:
            raise ConfigError(f"provider must be one of {', '.join(PROVIDER_NAMES)}")
        if self.tls not in ("", "self-signed"):
            raise ConfigError(f"tls must be self-signed or empty (got {self.tls!r})")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key go together")
        if self.tls and self.tls_cert:
            raise ConfigError("tls self-signed and tls_cert contradict each other: pick one")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ConfigError(f"{name}: no such file {path!r}")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format must be text or json (got {self.log_format!r})")
        if self.auth_secret and len(self.auth_secret) < 32:
            raise ConfigError("BRIDGE_AUTH_SECRET must be at least 32 characters")
        if self.turn_urls and not self.turn_secret:
            raise ConfigError("turn_urls need BRIDGE_TURN_SECRET (coturn's static-auth-secret)")
        for url in self.turn_urls:
            if not url.startswith(("turn:", "turns:")):
                raise ConfigError(f"turn_urls: {url!r} is not a turn: or turns: URL")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix:")):
            raise ConfigError("redis_url must be a redis://, rediss:// or unix: URL")
        if self.advertise_url and not self.advertise_url.startswith(("http://", "https://")):
            raise ConfigError(f"advertise_url must be an http(s) URL (got {self.advertise_url!r})")
        if not self.auth_secret and not self.allow_unauthenticated and not is_loopback(self.host):
            raise ConfigError(
                f"host {self.host} is reachable from other machines but no BRIDGE_AUTH_SECRET "
                "is set: set one (clients then need tokens: bridge token), or pass "
                "--allow-unauthenticated true to serve anyone who can reach it"
            )
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        for name in ("openai_url", "gemini_url", "openai_live_url"):
            url = getattr(self, name)
            if not url.startswith(("ws://", "wss://")):
                raise ConfigError(f"{name} must be a ws:// or wss:// URL (got {url!r})")
        if not self.gateway_path.startswith("/") or self.gateway_path in RESERVED_PATHS:
            raise ConfigError(
                f"gateway_path must be a free path starting with / (got {self.gateway_path!r})"
            )
        unknown = sorted(set(self.gateway_events) - set(CLIENT_EVENTS))
        if unknown:
            raise ConfigError(
                f"gateway_events: {', '.join(unknown)} not OpenAI Realtime client events "
                f"(known: {', '.join(CLIENT_EVENTS)})"
            )
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(f"public_url must be an http(s) URL (got {self.public_url!r})")
        base = self.session_base  # validates session_defaults now, not mid-call
        if self.lock_instructions and not base.instructions:
            raise ConfigError(
                "lock_instructions locks the instructions of session_defaults, which has none: "
                'set session_defaults (e.g. {"instructions": "..."}) or drop lock_instructions'
            )
        if self.advertise_url and not self.redis_url:
            raise ConfigError("advertise_url is for replicas sharing redis_url, which is not set")
        if self.connect_timeout >= self.max_call_duration:
            raise ConfigError("connect_timeout must be shorter than max_call_duration")
        if self.provider:
            options = self.provider_options()[self.provider]
            reason = PROVIDERS[self.provider].unavailable_reason(options)
            if reason:
                raise ConfigError(f"provider {self.provider} cannot be used: {reason}")
        for url in self.ice_servers:
            if not url.startswith(("stun:", "turn:", "turns:")):
                raise ConfigError(f"ice_servers: {url!r} is not a stun:, turn: or turns: URL")

    @property
    def session_base(self) -> SessionConfig:
        """The session every call starts from (``session_defaults``)."""
        if not self.session_defaults:
            return SessionConfig()
        try:
            update = json.loads(self.session_defaults)
            return SessionConfig().merged(update)
        except (ValueError, RecursionError):
            raise ConfigError("session_defaults is not valid JSON") from None
        except BadRequest as exc:
            raise ConfigError(f"session_defaults: {exc.message}") from None

    @property
    def default_provider(self) -> str:
        """The configured provider, else the first one whose key is present, else echo."""
        if self.provider:
            return self.provider
        if self.openai_api_key:
            return "openai"
        if self.gemini_api_key:
            return "gemini"
        return "echo"

    def provider_options(self) -> dict[str, ProviderOptions]:
        """What each provider is given of these settings (never the settings themselves)."""
        sockets: dict[str, Any] = {
            "ping_interval": self.provider_ping_interval,
            "reconnects": self.provider_reconnects,
            "audio_queue_ms": self.provider_audio_queue_ms,
        }
        return {
            "echo": EchoOptions(
                threshold_dbfs=self.echo_threshold_dbfs,
                silence_ms=self.echo_silence_ms,
                max_utterance_ms=self.echo_max_utterance_ms,
            ),
            "openai": OpenAIOptions(
                api_key=self.openai_api_key,
                url=self.openai_url,
                session_cap=self.openai_session_cap,
                transcription_model=self.openai_transcription_model,
                **sockets,
            ),
            "gpt-live": GptLiveOptions(
                api_key=self.openai_api_key,
                url=self.openai_live_url,
                tell_heard=self.gpt_live_tell_heard,
                **sockets,
            ),
            "gemini": GeminiOptions(
                api_key=self.gemini_api_key,
                url=self.gemini_url,
                resume_overlap_ms=self.gemini_resume_overlap_ms,
                handle_wait=self.gemini_handle_wait,
                **sockets,
            ),
        }

    @classmethod
    def from_sources(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Settings from ``BRIDGE_*`` variables, then ``overrides`` (e.g. parsed CLI flags)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            secret = f.metadata.get("secret")
            if secret:
                raw = env.get(secret) or (
                    env.get("GOOGLE_API_KEY") if f.name == "gemini_api_key" else None
                )
                if raw:
                    values[f.name] = raw
                continue
            name = env_name(f.name)
            if name in env and env[name] != "":
                values[f.name] = parse_value(f, env[name], name)
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = value
        return cls(**values)


def env_name(field_name: str) -> str:
    return "BRIDGE_" + field_name.upper()


def parse_value(f: dataclasses.Field[Any], raw: str, source: str) -> Any:
    """Parse one setting from text, naming ``source`` when it is wrong."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            value = raw.strip().lower()
            if value not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return value in ("1", "true", "yes", "on")
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return raw.strip()
    except ValueError:
        raise ConfigError(f"{source}: {raw!r} is not a valid {kind}") from None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def public_fields() -> list[dataclasses.Field[Any]]:
    """Settings that have a flag and a ``BRIDGE_*`` variable (secrets excluded)."""
    return [f for f in dataclasses.fields(Settings) if not f.metadata.get("secret")]

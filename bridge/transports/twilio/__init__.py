"""Twilio Media Streams: a phone call reaches any provider as a WebSocket of 8 kHz mu-law.

* ``POST /telephony/twilio/voice`` (:mod:`.webhook`): the number's webhook; TwiML that
  connects the call to the stream below, with the webhook's query as stream parameters.
* ``GET /telephony/twilio`` (:mod:`.stream`): the media stream; one conversation per call.
* :mod:`.messages` (the wire format), :mod:`.audio` (mu-law to and from the provider's
  formats), :mod:`.playback` (paced frames, marks, barge-in), :mod:`.signature` (Twilio's
  request signature).

**Signatures.** With ``twilio_auth_token`` set, both requests must carry a valid
``X-Twilio-Signature``. Twilio signs the WebSocket upgrade too, over the stream URL it dials
(the ``wss://`` URL of the TwiML) with no parameters; an upgrade without a valid one is refused
with 403 before any conversation exists, so nobody can spend the provider keys by dialling the
stream directly. That signature does not vary per call (same URL, no body), so it shows the
caller knows the token or saw an earlier upgrade's header: it keeps strangers out, it does not
bind a stream to one call. Without a token nothing is checked (fine on a private network, or
behind a proxy that authenticates).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from bridge.server.keys import SETTINGS
from bridge.transports.twilio import signature
from bridge.transports.twilio.stream import CLOSE_TIMEOUT_S, MAX_MESSAGE_BYTES, TwilioStream
from bridge.transports.twilio.webhook import STREAM_PATH, VOICE_PATH, voice

STREAMS: web.AppKey[set[TwilioStream]] = web.AppKey("twilio_streams")


def add_routes(app: web.Application) -> None:
    """Register the Twilio webhook and media-stream endpoints."""
    app[STREAMS] = set()
    app.router.add_post(VOICE_PATH, voice)
    app.router.add_get(VOICE_PATH, voice)
    app.router.add_get(STREAM_PATH, media_stream)
    app.on_shutdown.append(_close_streams)


async def media_stream(request: web.Request) -> web.WebSocketResponse:
    """One call's media stream, from the upgrade until the socket closes."""
    settings = request.app[SETTINGS]
    signature.require_configured(settings)
    if settings.twilio_auth_token:
        url = signature.websocket_base(request, settings) + request.raw_path
        signature.check(request, settings.twilio_auth_token, url)
    ws = web.WebSocketResponse(
        max_msg_size=MAX_MESSAGE_BYTES, compress=False, timeout=CLOSE_TIMEOUT_S
    )
    await ws.prepare(request)
    stream = TwilioStream(request.app, ws)
    streams = request.app[STREAMS]
    streams.add(stream)
    try:
        await stream.serve()
    finally:
        streams.discard(stream)
    return ws


async def _close_streams(app: web.Application) -> None:
    """Streams hold their requests open: end them before aiohttp waits for its handlers."""
    live: set[TwilioStream] = app[STREAMS]
    streams = list(live)
    await asyncio.gather(*(s.shutdown() for s in streams), return_exceptions=True)

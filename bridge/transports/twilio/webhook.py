"""The voice webhook: Twilio asks what to do with a call, the bridge answers with TwiML that
connects the call to its media-stream WebSocket.

Pointing a Twilio number's "A call comes in" webhook at ``/telephony/twilio/voice`` is the
whole setup. The stream URL must be ``wss://`` and may not carry a query string, so the
webhook's own query (``?provider=gemini&model=…&instructions=…&voice=…``) becomes
``<Parameter>`` elements, which Twilio hands back in the stream's ``start`` message. They are
checked here first, so a wrong provider, model or session shows in Twilio's debugger as a
clear HTTP error instead of a call that drops. Twilio dials only ``wss://``: behind a proxy
that terminates TLS, set ``public_url`` or have the proxy send ``X-Forwarded-Proto``.

With ``twilio_auth_token`` set, the request must carry Twilio's signature for the URL it
called and its form parameters (403 ``bad_signature``), checked before anything else.
"""

from __future__ import annotations

import asyncio
import logging
import re
import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl

from aiohttp import web

from bridge.core.errors import BadRequest
from bridge.providers import spec_of
from bridge.server.config import Settings
from bridge.server.conversations import default_model, session_config
from bridge.server.keys import ENGINE, SETTINGS
from bridge.transports.twilio import signature
from bridge.transports.twilio.messages import STREAM_PARAMETERS

log = logging.getLogger(__name__)

VOICE_PATH = "/telephony/twilio/voice"
STREAM_PATH = "/telephony/twilio"
FORM = "application/x-www-form-urlencoded"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
TLS_HINT = "set --public-url, or have the TLS proxy send X-Forwarded-Proto"

# Characters XML 1.0 cannot carry at all, even escaped.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


async def voice(request: web.Request) -> web.Response:
    """TwiML that streams the call to the bridge (POST, or GET if the number is set so)."""
    settings = request.app[SETTINGS]
    signature.require_configured(settings)
    params = await _form(request, settings) if request.method == "POST" else []
    if settings.twilio_auth_token:
        url = signature.public_base(request, settings) + request.raw_path
        signature.check(request, settings.twilio_auth_token, url, params)
    parameters = stream_parameters(request, settings)
    stream_url = signature.websocket_base(request, settings) + STREAM_PATH
    if stream_url.startswith("ws:"):
        log.warning("TwiML names %s, but Twilio only dials wss://: %s", stream_url, TLS_HINT)
    return web.Response(text=twiml(stream_url, parameters), content_type="text/xml")


def stream_parameters(request: web.Request, settings: Settings) -> dict[str, str]:
    """The query's stream parameters, checked as the stream's ``start`` will use them (the
    provider is made, not connected: unknown, unusable or retired ones are refused here)."""
    parameters = {k: request.query[k] for k in STREAM_PARAMETERS if request.query.get(k)}
    for name, value in parameters.items():
        if NOT_XML.search(value):
            message = f"'{name}' has characters TwiML cannot carry"
            raise BadRequest(message, code="invalid_parameter")
    provider = spec_of(parameters.get("provider") or settings.default_provider).name
    session = {k: parameters[k] for k in ("instructions", "voice") if k in parameters}
    config = session_config(settings, provider, session)
    model = parameters.get("model") or default_model(settings, provider)
    request.app[ENGINE].create_provider(provider, model, config)
    return parameters


def twiml(stream_url: str, parameters: dict[str, str]) -> str:
    """``<Response><Connect><Stream url=…>`` with a ``<Parameter>`` per entry (escaped)."""
    response = ET.Element("Response")
    stream = ET.SubElement(ET.SubElement(response, "Connect"), "Stream", url=stream_url)
    for name, value in parameters.items():
        ET.SubElement(stream, "Parameter", name=name, value=value)
    return XML_DECLARATION + ET.tostring(response, encoding="unicode")


async def _form(request: web.Request, settings: Settings) -> list[tuple[str, str]]:
    """The POST parameters as Twilio signed them (an empty list for another body type)."""
    try:
        async with asyncio.timeout(settings.body_timeout):
            body = await request.read()
    except TimeoutError:
        raise BadRequest(
            f"the request body did not arrive within {settings.body_timeout:g} s",
            code="request_timeout",
            status=408,
        ) from None
    if request.content_type != FORM:
        return []
    return parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)

"""What the emulated Gemini Live server (Developer API) accepts, written from
``shared/protocols.md`` §2.2 to §2.6 and ``shared/protocols-2026.md`` §C.2, §C.5 and §C.9, not
from the bridge's own model table, so the tests judge the bridge against an independent
reading.

Messages are checked field by field after snake_case is turned into camelCase (the server
accepts both spellings); an unknown field anywhere closes the socket with 1007 and the
server's wording. Per-model rules refuse what each generation refuses.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

ANY: dict[str, Any] = {"*": None}  # any content (tool schemas, safety settings, …)
BLOB = {"mimeType": None, "data": None, "displayName": None}
PART = {
    "text": None,
    "inlineData": BLOB,
    "thought": None,
    "thoughtSignature": None,
    "functionCall": ANY,
    "functionResponse": ANY,
    "fileData": ANY,
}
CONTENT = {"role": None, "parts": [PART]}
TRANSCRIPTION = {
    "languageCodes": None,
    "customVocabulary": None,
    "wordTimestamp": None,
    "diarization": None,
    "mode": None,
}
GENERATION = {
    "responseModalities": None,
    "speechConfig": {
        "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": None}},
        "languageCode": None,
        "multiSpeakerVoiceConfig": ANY,
    },
    "temperature": None,
    "topP": None,
    "topK": None,
    "maxOutputTokens": None,
    "candidateCount": None,
    "presencePenalty": None,
    "frequencyPenalty": None,
    "seed": None,
    "mediaResolution": None,
    "thinkingConfig": {"thinkingBudget": None, "thinkingLevel": None, "includeThoughts": None},
    "enableAffectiveDialog": None,
    "translationConfig": ANY,
}
SETUP = {
    "model": None,
    "generationConfig": GENERATION,
    "systemInstruction": CONTENT,
    "tools": [ANY],
    "realtimeInputConfig": {
        "automaticActivityDetection": {
            "disabled": None,
            "startOfSpeechSensitivity": None,
            "endOfSpeechSensitivity": None,
            "prefixPaddingMs": None,
            "silenceDurationMs": None,
        },
        "activityHandling": None,
        "turnCoverage": None,
    },
    "inputAudioTranscription": TRANSCRIPTION,
    "outputAudioTranscription": TRANSCRIPTION,
    "sessionResumption": {"handle": None, "transparent": None},
    "contextWindowCompression": {"triggerTokens": None, "slidingWindow": {"targetTokens": None}},
    "proactivity": {"proactiveAudio": None, "proactiveVideo": None},
    "historyConfig": {"initialHistoryInClientContent": None},
    "safetySettings": [ANY],
    "explicitVadSignal": None,
    "avatarConfig": ANY,
    "labels": ANY,
}
MESSAGES = {
    "realtimeInput": {
        "audio": BLOB,
        "video": BLOB,
        "text": None,
        "activityStart": {},
        "activityEnd": {},
        "audioStreamEnd": None,
        "mediaChunks": [BLOB],
    },
    "clientContent": {"turns": [CONTENT], "turnComplete": None},
    "toolResponse": {
        "functionResponses": [
            {
                "id": None,
                "name": None,
                "response": ANY,
                "scheduling": None,
                "willContinue": None,
                "parts": [ANY],
            }
        ]
    },
    "contextUpdate": {"systemInstruction": CONTENT, "tools": {"tools": [ANY]}},
}


MAX_REASON_BYTES = 123  # what a WebSocket close frame can carry


class Refusal(Exception):
    """The server closes the socket with ``code`` and ``reason`` (cut to fit the frame)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        cut = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
        self.code, self.reason = code, cut


def invalid(reason: str = "Request contains an invalid argument.") -> Refusal:
    return Refusal(1007, reason)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def normalise(value: Any) -> Any:
    """proto3-JSON accepts snake_case too: turn every key into camelCase."""
    if isinstance(value, dict):
        return {camel(str(k)): normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def check_fields(schema: Any, value: Any, path: str) -> None:
    """Refuse any field ``schema`` does not name, at any depth (1007, the server's words)."""
    if schema is None or schema is ANY:
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise invalid(f"Invalid value at '{path}': expected a list.")
        for item in value:
            check_fields(schema[0], item, path)
        return
    if not isinstance(value, dict):
        raise invalid(f"Invalid value at '{path}': expected an object.")
    for key, item in value.items():
        if key not in schema:
            raise invalid(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{path}': "
                "Cannot find field."
            )
        check_fields(schema[key], item, f"{path}.{key}")


def decode_bytes(data: Any) -> bytes:
    """proto3-JSON bytes: the standard or the URL-safe base64 alphabet (google-genai sends
    the latter), padded or not."""
    if not isinstance(data, str):
        raise invalid("Invalid value at 'data': expected base64 bytes.")
    text = data.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"Invalid value at 'data' ({data[:16]!r}…): invalid base64.") from None


@dataclass(frozen=True, slots=True)
class ModelRules:
    """How one Live model generation answers (protocols-2026.md §C.2)."""

    text: bool  # takes responseModalities TEXT (half-cascade only)
    thinking: str | None  # "budget", "level", or None when thinkingConfig is refused
    proactive: str  # "opt_in", "always" (proactiveAudio:false refused) or "unsupported"
    affective: bool  # takes enableAffectiveDialog
    context_update: bool
    voice_activity: bool  # emits voiceActivity start/end
    interaction_status: bool  # answers in several utterances, IN_PROGRESS then IDLE
    bundles: bool  # several fields and parts in one serverContent


_3_8 = ModelRules(False, None, "always", False, True, True, False, True)
_3_8_THINKING = ModelRules(False, "level", "always", False, False, True, True, True)
_3_1 = ModelRules(False, "level", "unsupported", False, False, True, False, True)
_2_5_NATIVE = ModelRules(False, "budget", "opt_in", True, False, False, False, False)
_HALF_CASCADE = ModelRules(True, None, "unsupported", False, False, False, False, False)


def model_rules(name: str) -> ModelRules:
    if name.startswith("gemini-3.8-live-extended-thinking"):
        return _3_8_THINKING
    if name.startswith("gemini-3.8-live"):
        return _3_8
    if name.startswith("gemini-3"):
        return _3_1
    if "native-audio" in name:
        return _2_5_NATIVE
    return _HALF_CASCADE


_TEXT_REFUSED = (
    "The requested combination of response modalities (TEXT) is not supported by the model."
)


def check_setup_for_model(setup: dict[str, Any], rules: ModelRules) -> None:
    """Refuse what this model generation refuses (close codes unverified: 1007)."""
    generation = setup.get("generationConfig") or {}
    if "TEXT" in (generation.get("responseModalities") or []) and not rules.text:
        raise invalid(_TEXT_REFUSED)
    thinking = generation.get("thinkingConfig")
    if thinking is not None:
        if rules.thinking is None:
            raise invalid("thinking_config is not supported by this model.")
        other = "thinkingLevel" if rules.thinking == "budget" else "thinkingBudget"
        if other in thinking:
            raise invalid(f"{other} is not supported by this model.")
    if "enableAffectiveDialog" in generation and not rules.affective:
        raise invalid("enable_affective_dialog is not supported by this model.")
    proactivity = setup.get("proactivity")
    if proactivity is not None:
        if rules.proactive == "unsupported":
            raise invalid("proactivity is not supported by this model.")
        if rules.proactive == "always" and proactivity.get("proactiveAudio") is False:
            raise invalid("proactive_audio cannot be disabled for this model.")
    resumption = setup.get("sessionResumption")
    if resumption is not None:
        if "transparent" in resumption:
            raise invalid("transparent session resumption is not supported by the Gemini API.")
        if "handle" in resumption and not resumption["handle"]:
            raise Refusal(1008, "Requested entity was not found.")


_OFFSET = re.compile(r"^\d+(\.\d+)?s$")


def offset(ms: float) -> str:
    """A proto3 Duration string."""
    text = f"{ms / 1000:.3f}s"
    assert _OFFSET.match(text)
    return text

// @ts-check
// Shared JSDoc types of the demo page: the wire events the bridge sends on the "events" data
// channel (README, "Events channel"), the GET /sessions/{id} fields the page reads, and one call.

/**
 * @typedef {{type: 'open'}} OpenEvent The provider session is ready.
 * @typedef {{type: 'text', delta: string}} TextEvent A piece of the reply's text.
 * @typedef {{type: 'transcript', role: 'user' | 'assistant', text: string, final?: boolean}} TranscriptEvent
 * @typedef {{type: 'speechStarted'}} SpeechStartedEvent The user began speaking (barge-in).
 * @typedef {{type: 'speechStopped'}} SpeechStoppedEvent The user stopped speaking: a turn ends.
 * @typedef {{type: 'interrupted'}} InterruptedEvent The provider cut its reply short.
 * @typedef {{type: 'turnComplete'}} TurnCompleteEvent The reply is complete.
 * @typedef {{type: 'usage', usage: Record<string, unknown>, cost_usd?: number}} UsageEvent
 * @typedef {{type: 'error', error?: {code?: string, message?: string}}} WireErrorEvent
 * @typedef {{type: 'close', reason?: string}} WireCloseEvent The bridge ends the call.
 * @typedef {OpenEvent | TextEvent | TranscriptEvent | SpeechStartedEvent | SpeechStoppedEvent |
 *   InterruptedEvent | TurnCompleteEvent | UsageEvent | WireErrorEvent | WireCloseEvent} WireEvent
 */

/**
 * Connect stages in ms after the offer reached the bridge (stages not reached are absent).
 * @typedef {{answer?: number, ice?: number, dtls?: number, channel?: number,
 *   provider_open?: number, open_delivered?: number, first_audio?: number}} ConnectMs
 * @typedef {{id: string, connect_ms?: ConnectMs, last_turn_latency_ms?: number | null,
 *   cost_usd?: number}} SessionInfo The part of GET /sessions/{id} the page uses.
 */

/**
 * @typedef {{analyser: AnalyserNode, buf: Float32Array, level: number}} Meter
 */

/**
 * One call. `signal` is aborted when the call ends: every listener is registered with it,
 * every fetch of the call is cancelled by it, and async steps check `signal.aborted`.
 * @typedef {object} Call
 * @property {AbortController} controller
 * @property {AbortSignal} signal
 * @property {RTCPeerConnection | null} pc
 * @property {RTCDataChannel | null} dc
 * @property {MediaStream | null} stream
 * @property {AudioContext | null} ctx
 * @property {Meter | null} mic
 * @property {Meter | null} reply
 * @property {MediaStream | null} remoteStream
 * @property {string | null} sessionId
 * @property {number | null} lastEnergy
 * @property {boolean} everConnected
 * @property {boolean} deleteSent
 * @property {boolean} statsBusy
 * @property {number} [raf]
 * @property {ReturnType<typeof setInterval>} [statsTimer]
 * @property {ReturnType<typeof setTimeout>} [connectTimer]
 * @property {ReturnType<typeof setTimeout>} [disconnectTimer]
 */

export {};

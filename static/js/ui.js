// @ts-check
// The page's elements, the test hook, the error banner and the event log.

/** @typedef {import('./types.js').WireEvent} WireEvent */

const LOG_LIMIT = 500;

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
const $ = (id) => /** @type {T} */ (document.getElementById(id));

export const ui = {
  start: /** @type {HTMLButtonElement} */ ($('start')),
  state: $('state'),
  provider: /** @type {HTMLSelectElement} */ ($('provider')),
  voice: /** @type {HTMLSelectElement} */ ($('voice')),
  model: /** @type {HTMLSelectElement} */ ($('model')),
  instructions: /** @type {HTMLTextAreaElement} */ ($('instructions')),
  apply: /** @type {HTMLButtonElement} */ ($('apply')),
  applyStatus: $('apply-status'),
  transcript: $('transcript'),
  log: $('log'),
  logCount: $('log-count'),
  error: $('error'),
  micMeter: $('mic-meter'),
  micRow: $('mic-row'),
  replyMeter: $('reply-meter'),
  latencyLast: $('latency-last'),
  latencyAvg: $('latency-avg'),
  rtt: $('rtt'),
  latencyTurns: $('latency-turns'),
  connectStages: $('connect-stages'),
  usage: $('usage'),
  usageCost: $('usage-cost'),
  textForm: /** @type {HTMLFormElement} */ ($('text-form')),
  textInput: /** @type {HTMLInputElement} */ ($('text-input')),
  sendText: /** @type {HTMLButtonElement} */ ($('send-text')),
  remoteAudio: /** @type {HTMLAudioElement} */ ($('remote-audio')),
};

/**
 * Test hook: kept current by the call code. `events` is never replaced, only appended to.
 * @type {{pc: RTCPeerConnection | null, sessionId: string | null, state: string, events: WireEvent[]}}
 */
export const demo = { pc: null, sessionId: null, state: 'idle', events: [] };
/** @type {any} */ (window).bridgeDemo = demo;

/** Error whose message is already written for the user. */
export class UserError extends Error {}

/**
 * @param {string} message empty hides the banner
 * @param {'error' | 'notice'} [kind]
 */
export function showError(message, kind = 'error') {
  ui.error.textContent = message;
  ui.error.dataset.kind = kind;
  ui.error.hidden = !message;
}

export function clock() {
  const d = new Date();
  /** @param {number} n @param {number} [w] */
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

let logCount = 0;

/**
 * Add a line to the event log.
 * @param {'←' | '→' | '•'} dir received, sent, local note
 * @param {string} text
 * @param {'' | 'out' | 'warn' | 'err'} [cls]
 */
export function log(dir, text, cls = '') {
  const atBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 30;
  const li = document.createElement('li');
  if (cls) li.className = cls;
  const time = document.createElement('time');
  time.textContent = clock();
  li.append(time, `${dir} ${text}`);
  ui.log.append(li);
  while (ui.log.childElementCount > LOG_LIMIT) ui.log.firstElementChild?.remove();
  if (atBottom) ui.log.scrollTop = ui.log.scrollHeight;
  ui.logCount.textContent = String(++logCount);
}

/** @param {unknown} ms */
export const fmtMs = (ms) => (typeof ms === 'number' && Number.isFinite(ms) ? `${Math.round(ms)} ms` : '—');

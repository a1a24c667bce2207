// @ts-check
// Numbers about the call: reply latency per turn, network RTT, usage and its live cost, and
// the connect stages the bridge measured (GET /sessions/{id}).

import { fetchSession } from './api.js';
import { ui, fmtMs } from './ui.js';

/**
 * @typedef {import('./types.js').Call} Call
 * @typedef {import('./types.js').ConnectMs} ConnectMs
 * @typedef {import('./types.js').UsageEvent} UsageEvent
 * @typedef {'level' | 'stats'} LatencySource how the first reply audio was noticed
 */

const STATS_INTERVAL_MS = 150;
const LATENCY_TIMEOUT_MS = 20000;    // give up waiting for a reply to one turn
const REPLY_ENERGY_THRESHOLD = 1e-5; // totalAudioEnergy growth per poll that means audible audio

const SOURCE_TITLES = {
  level: 'From the end of your speech (speechStopped) to the first audible reply audio, ' +
    'heard by this page\'s level meter.',
  stats: 'From the end of your speech (speechStopped) to the first audible reply audio, ' +
    'seen in the browser\'s WebRTC statistics (audio energy).',
};

// ---------------------------------------------------------------- latency

/** @type {{pending: {t0: number} | null, samples: {ms: number | null, source: LatencySource | ''}[]}} */
const latency = { pending: null, samples: [] };

export function onSpeechStopped() {
  if (latency.pending) recordLatency(null);  // previous turn never got audible audio
  latency.pending = { t0: performance.now() };
}

/**
 * First audible reply audio after speechStopped closes the pending measurement.
 * @param {LatencySource} source
 */
export function noteReplyAudio(source) {
  if (!latency.pending) return;
  recordLatency(performance.now() - latency.pending.t0, source);
}

export function cancelPendingLatency() {
  latency.pending = null;
}

/** @param {number | null} ms @param {LatencySource | ''} [source] */
function recordLatency(ms, source = '') {
  latency.pending = null;
  latency.samples.push({ ms, source });
  if (latency.samples.length > 50) latency.samples.shift();
  renderLatency();
}

function renderLatency() {
  const s = latency.samples;
  ui.latencyLast.textContent = s.length ? fmtMs(s[s.length - 1].ms) : '—';
  const known = /** @type {number[]} */ (s.map((x) => x.ms).filter((ms) => ms !== null));
  ui.latencyAvg.textContent = known.length
    ? `${fmtMs(known.reduce((a, b) => a + b, 0) / known.length)} (${known.length})` : '—';
  ui.latencyTurns.replaceChildren(...s.slice(-5).map((x, i, arr) => {
    const li = document.createElement('li');
    li.value = s.length - arr.length + i + 1;
    if (x.ms === null) {
      li.textContent = 'No reply audio detected';
      li.title = `No audible reply within ${LATENCY_TIMEOUT_MS / 1000} s of the end of your speech.`;
    } else {
      li.textContent = `Reply latency ${fmtMs(x.ms)}`;
      if (x.source) li.title = SOURCE_TITLES[x.source];
    }
    return li;
  }));
}

// ---------------------------------------------------------------- usage and cost

/** @type {{totals: Record<string, number>, cost: number, costKnown: boolean}} */
let usage = { totals: {}, cost: 0, costKnown: false };

/** @param {number} usd */
export const fmtUsd = (usd) => `$${usd.toFixed(usd < 1 ? 4 : 2)}`;

// Providers report usage in their own shapes; show the headline numbers only (the full
// objects are in the event log): top-level counters, e.g. OpenAI's input/output tokens,
// Gemini's prompt/response token counts, the echo provider's audio seconds.
/** @param {UsageEvent} msg */
export function addUsage(msg) {
  for (const [key, value] of Object.entries(msg.usage || {})) {
    if (typeof value === 'number' && Number.isFinite(value) && !/^total/i.test(key)) {
      usage.totals[key] = (usage.totals[key] || 0) + value;
    }
  }
  if (typeof msg.cost_usd === 'number' && Number.isFinite(msg.cost_usd)) {
    usage.cost += msg.cost_usd;
    usage.costKnown = true;
  }
  renderUsage();
}

/** @param {string} key e.g. input_audio_seconds, promptTokenCount */
function usageLabel(key) {
  const words = key.replace(/_/g, ' ').replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function renderUsage() {
  ui.usageCost.textContent = usage.costKnown ? fmtUsd(usage.cost) : 'n/a';
  ui.usageCost.title = usage.costKnown ? `$${usage.cost} so far: the sum of this call's usage events` : '';
  const rows = Object.entries(usage.totals).map(([key, value]) => {
    const div = document.createElement('div');
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = usageLabel(key);
    dd.textContent = Number.isInteger(value) ? value.toLocaleString() : value.toFixed(3);
    div.append(dt, dd);
    return div;
  });
  ui.usage.replaceChildren(/** @type {HTMLElement} */ (ui.usageCost.parentElement), ...rows);
}

// ---------------------------------------------------------------- connect stages

/** @type {[keyof ConnectMs, string][]} */
const STAGE_NAMES = [
  ['ice', 'ICE'], ['dtls', 'DTLS'], ['provider_open', 'provider'],
];
/** @type {Record<keyof ConnectMs, string>} */
const STAGE_TITLES = {
  answer: 'answer sent', ice: 'ICE connected', dtls: 'DTLS done', channel: 'data channel open',
  provider_open: 'provider session open', open_delivered: '"open" delivered to this page',
  first_audio: 'first reply audio',
};

/** @param {number} ms */
const round = (ms) => String(Math.round(ms));

/**
 * One line for the connect stages, e.g. "Connected in 37 ms (ICE 24, DTLS 28, provider 7)";
 * null when the bridge measured none.
 * @param {ConnectMs | undefined} stages
 */
export function describeStages(stages) {
  if (!stages || typeof stages !== 'object') return null;
  const known = Object.entries(stages).filter(([, ms]) => typeof ms === 'number' && Number.isFinite(ms));
  if (!known.length) return null;
  const total = typeof stages.open_delivered === 'number' ? stages.open_delivered
    : Math.max(...known.filter(([k]) => k !== 'first_audio').map(([, ms]) => /** @type {number} */ (ms)), 0);
  const parts = STAGE_NAMES.filter(([key]) => typeof stages[key] === 'number')
    .map(([key, label]) => `${label} ${round(/** @type {number} */ (stages[key]))}`);
  const text = `Connected in ${round(total)} ms${parts.length ? ` (${parts.join(', ')})` : ''}`;
  const title = 'Measured by the bridge, in ms after your offer arrived: ' +
    known.map(([k, ms]) => `${STAGE_TITLES[/** @type {keyof ConnectMs} */ (k)] || k} ${round(/** @type {number} */ (ms))}`).join(', ');
  return { text, title };
}

/**
 * Once per call, after `open`: ask the bridge how long connecting took, stage by stage.
 * @param {Call} c
 */
export async function showConnectStages(c) {
  if (!c.sessionId || !ui.connectStages.hidden) return;  // shown already: once per call
  const info = await fetchSession(c.sessionId, c.signal);
  if (c.signal.aborted) return;
  const line = describeStages(info?.connect_ms);
  if (!line) return;
  ui.connectStages.textContent = line.text;
  ui.connectStages.title = line.title;
  ui.connectStages.hidden = false;
}

// ---------------------------------------------------------------- polling and reset

/**
 * Network RTT and reply audio energy from getStats(), until the call's signal aborts.
 * @param {Call} c
 */
export function startStatsPolling(c) {
  const { signal } = c;
  c.statsTimer = setInterval(async () => {
    if (signal.aborted || c.statsBusy || !c.pc) return;
    c.statsBusy = true;
    try {
      const report = await c.pc.getStats();
      if (signal.aborted) return;
      /** @type {string | null} */
      let selectedPair = null;
      /** @type {number | null} */
      let pairRtt = null, remoteRtt = null, energy = null;
      report.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) selectedPair = s.selectedCandidatePairId; });
      report.forEach((s) => {
        if (s.type === 'candidate-pair' && typeof s.currentRoundTripTime === 'number' &&
            (s.id === selectedPair || (!selectedPair && s.state === 'succeeded' && s.nominated))) pairRtt = s.currentRoundTripTime;
        else if (s.type === 'remote-inbound-rtp' && typeof s.roundTripTime === 'number') remoteRtt = s.roundTripTime;
        else if (s.type === 'inbound-rtp' && s.kind === 'audio' && typeof s.totalAudioEnergy === 'number') energy = s.totalAudioEnergy;
      });
      const rtt = pairRtt ?? remoteRtt;
      ui.rtt.textContent = rtt === null ? '—' : fmtMs(rtt * 1000);
      if (energy !== null) {
        if (c.lastEnergy !== null && energy - c.lastEnergy > REPLY_ENERGY_THRESHOLD) noteReplyAudio('stats');
        c.lastEnergy = energy;
      }
      if (latency.pending && performance.now() - latency.pending.t0 > LATENCY_TIMEOUT_MS) recordLatency(null);
    } catch {
      // getStats can reject while the pc is closing; the next tick (or teardown) sorts it out.
    } finally {
      c.statsBusy = false;
    }
  }, STATS_INTERVAL_MS);
  signal.addEventListener('abort', () => clearInterval(c.statsTimer), { once: true });
}

export function resetStats() {
  usage = { totals: {}, cost: 0, costKnown: false };
  renderUsage();
  latency.pending = null;
  latency.samples = [];
  renderLatency();
  ui.rtt.textContent = '—';
  ui.connectStages.textContent = '';
  ui.connectStages.removeAttribute('title');
  ui.connectStages.hidden = true;
}

// @ts-check
// The mic and reply level meters (Web Audio analysers, drawn once per animation frame).

import { ui } from './ui.js';
import { noteReplyAudio } from './stats.js';

/**
 * @typedef {import('./types.js').Call} Call
 * @typedef {import('./types.js').Meter} Meter
 */

const REPLY_RMS_THRESHOLD = 0.02;  // ~-34 dBFS: well above the silence the bridge sends

/**
 * @param {AudioContext} ctx
 * @param {MediaStream} stream
 * @returns {Meter}
 */
export function makeAnalyser(ctx, stream) {
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);  // not routed to speakers: metering only
  return { analyser, buf: new Float32Array(analyser.fftSize), level: 0 };
}

/** @param {Meter} meter */
function readRms({ analyser, buf }) {
  analyser.getFloatTimeDomainData(/** @type {Float32Array<ArrayBuffer>} */ (buf));
  let sum = 0;
  for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
  return Math.sqrt(sum / buf.length);
}

/** Map RMS onto a -60..0 dBFS scale so quiet speech still moves the bar. */
function rmsToFraction(/** @type {number} */ rms) {
  if (rms <= 0) return 0;
  return Math.min(1, Math.max(0, (20 * Math.log10(rms) + 60) / 60));
}

/** @param {HTMLElement} el @param {number} fraction */
function setMeter(el, fraction) {
  el.style.setProperty('--level', fraction.toFixed(3));
  el.setAttribute('aria-valuenow', String(Math.round(fraction * 100)));
}

/** @param {Meter} meter @param {HTMLElement} el */
function updateMeter(meter, el) {
  const rms = readRms(meter);
  const target = rmsToFraction(rms);
  // Fast attack, slow release: easier to read than raw per-frame values.
  meter.level = target > meter.level ? target : meter.level * 0.85 + target * 0.15;
  setMeter(el, meter.level);
  return rms;
}

/**
 * Draw both meters every frame until the call's signal aborts; loud reply audio also
 * closes a pending latency measurement.
 * @param {Call} c
 */
export function startMeters(c) {
  const frame = () => {
    if (c.signal.aborted) return;
    if (c.mic) updateMeter(c.mic, ui.micMeter);
    if (c.reply && updateMeter(c.reply, ui.replyMeter) > REPLY_RMS_THRESHOLD) noteReplyAudio('level');
    c.raf = requestAnimationFrame(frame);
  };
  c.raf = requestAnimationFrame(frame);
  c.signal.addEventListener('abort', () => cancelAnimationFrame(c.raf ?? 0), { once: true });
}

export function resetMeters() {
  setMeter(ui.micMeter, 0);
  setMeter(ui.replyMeter, 0);
  ui.micRow.classList.remove('speaking');
}

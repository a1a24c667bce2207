// @ts-check
// One WebRTC call to the bridge (mic up, reply audio down, a JSON "events" data channel):
// setup, offer/answer, connection watching and teardown. Each call has one AbortController;
// ending the call aborts it, which removes the call's listeners, cancels its fetches, stops
// its timers and makes any step still in flight give up (they check `signal.aborted`).

import { ui, demo, log, showError, UserError } from './ui.js';
import { iceServers, postOffer, deleteSession } from './api.js';
import { sessionConfig } from './providers.js';
import { onMessage } from './events.js';
import { closeAll } from './transcript.js';
import { makeAnalyser, startMeters, resetMeters } from './meters.js';
import { resetStats, startStatsPolling, cancelPendingLatency } from './stats.js';

/**
 * @typedef {import('./types.js').Call} Call
 * @typedef {import('./events.js').EndOptions} EndOptions
 */

const ICE_GATHER_TIMEOUT_MS = 2000;  // the bridge does not trickle ICE
const CONNECT_TIMEOUT_MS = 15000;
const DISCONNECT_GRACE_MS = 2000;    // "disconnected" can recover on a brief network blip

const MSG_LOST = 'The connection to the bridge was lost. Press Start to reconnect.';
const MSG_NO_MEDIA = 'Could not establish the audio connection to the bridge. If it runs on another ' +
  'machine, make sure UDP traffic between you and it is allowed, then press Start again.';

/** @type {Call | null} the current call */
let call = null;

/** @type {Promise<unknown>} */
let providersReady = Promise.resolve();

/** A click right after load must not send the "Loading…" placeholder as the provider. */
export function setProvidersReady(/** @type {Promise<unknown>} */ ready) {
  providersReady = ready;
}

export const inCall = () => call !== null;

/** @param {string} state */
export function setState(state) {
  demo.state = state;
  ui.state.textContent = state;
  ui.state.dataset.state = state;
  updateControls();
}

function updateControls() {
  const active = call !== null;
  ui.start.textContent = active ? 'Stop' : 'Start';
  ui.start.classList.toggle('active', active);
  ui.start.setAttribute('aria-pressed', String(active));
  ui.provider.disabled = active;  // a provider cannot be switched mid-call
  ui.model.disabled = active;
  const canSend = call?.dc?.readyState === 'open';
  ui.textInput.disabled = !canSend;
  ui.sendText.disabled = !canSend;
}

/**
 * Send a JSON event on the current call's data channel; false when there is none open.
 * @param {object} obj
 */
export function sendEvent(obj) {
  const dc = call?.dc;
  if (!dc || dc.readyState !== 'open') return false;
  const text = JSON.stringify(obj);
  dc.send(text);
  log('→', text, 'out');
  return true;
}

async function openMic() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new UserError('This page cannot use the microphone here. Open it over https:// or http://localhost ' +
      '(browsers only allow microphone access on secure origins).');
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    const e = /** @type {{name?: string, message?: string} | undefined} */ (err);
    switch (e?.name) {
      case 'NotAllowedError':
      case 'SecurityError':
        throw new UserError("Microphone access was denied.\nAllow microphone access in the browser's site settings and press Start again.");
      case 'NotFoundError':
      case 'OverconstrainedError':
        throw new UserError('No microphone was found.\nConnect a microphone (or enable it in system settings) and press Start again.');
      case 'NotReadableError':
      case 'AbortError':
        throw new UserError('The microphone could not be started; another application may be using it.\nClose it and press Start again.');
      default:
        throw new UserError(`Could not open the microphone (${e?.name || 'error'}: ${e?.message || err}).\nPress Start to try again.`);
    }
  }
}

/**
 * Resolves true when gathering completes, false on timeout or when the call ends.
 * @param {RTCPeerConnection} pc
 * @param {number} timeoutMs
 * @param {AbortSignal} callSignal
 * @returns {Promise<boolean>}
 */
function waitForIceGathering(pc, timeoutMs, callSignal) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = new AbortController();  // removes this wait's listeners, and only them
    const signal = done.signal;
    /** @param {boolean} complete */
    const finish = (complete) => {
      clearTimeout(timer);
      done.abort();
      resolve(complete);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') finish(true);
    }, { signal });
    pc.addEventListener('icecandidate', (e) => {
      if (!e.candidate) finish(true);  // null candidate = end of gathering
    }, { signal });
    callSignal.addEventListener('abort', () => finish(false), { signal });
  });
}

export async function startCall() {
  showError('');
  resetStats();
  closeAll(true);

  const controller = new AbortController();
  /** @type {Call} */
  const c = {
    controller, signal: controller.signal, pc: null, dc: null, stream: null, ctx: null, mic: null,
    reply: null, remoteStream: null, sessionId: null, lastEnergy: null, everConnected: false,
    deleteSent: false, statsBusy: false,
  };
  const { signal } = c;
  call = c;
  setState('connecting');
  log('•', `Starting call with provider "${ui.provider.value}"`);

  // Create the AudioContext inside the click handler: autoplay policy only lets it run after a user gesture.
  try { c.ctx = new AudioContext(); } catch { c.ctx = null; }

  try {
    await providersReady;
    c.stream = await openMic();
    if (signal.aborted) return teardown(c);
    if (c.ctx) c.mic = makeAnalyser(c.ctx, c.stream);
    startMeters(c);  // the mic meter is useful while connecting too

    const pc = new RTCPeerConnection({ iceServers: await iceServers(signal) });
    c.pc = pc;
    if (signal.aborted) return teardown(c);
    demo.pc = pc;
    pc.addTransceiver(c.stream.getAudioTracks()[0], { direction: 'sendrecv' });
    setupDataChannel(c, pc.createDataChannel('events'));  // must exist before the offer
    pc.addEventListener('track', (e) => onRemoteTrack(c, e), { signal });
    pc.addEventListener('connectionstatechange', () => onConnectionState(c, pc), { signal });

    await pc.setLocalDescription(await pc.createOffer());
    const complete = await waitForIceGathering(pc, ICE_GATHER_TIMEOUT_MS, signal);
    if (signal.aborted) return teardown(c);
    if (!complete) log('•', 'ICE gathering still running after 2 s; sending the candidates found so far', 'warn');

    const answer = await postOffer({
      sdp: pc.localDescription?.sdp, type: 'offer', provider: ui.provider.value,
      ...(ui.model.value ? { model: ui.model.value } : {}), session: sessionConfig(),
    });
    c.sessionId = answer.session_id ?? null;  // recorded even if cancelled, so teardown can DELETE it
    if (signal.aborted) return teardown(c);
    demo.sessionId = c.sessionId;
    log('•', `Session ${c.sessionId ?? '(no id)'} created`);

    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    if (signal.aborted) return teardown(c);
    startStatsPolling(c);
    c.connectTimer = setTimeout(() => { if (!c.everConnected) connectionLost(c); }, CONNECT_TIMEOUT_MS);
  } catch (err) {
    if (signal.aborted) return teardown(c);
    const message = err instanceof UserError ? err.message
      : `Could not start the call: ${err instanceof Error ? err.message : err}\nPress Start to try again.`;
    log('•', message.replace(/\n/g, ' '), 'err');
    endCall({ state: 'failed', error: message });
  }
}

/** @param {Call} c @param {RTCDataChannel} dc */
function setupDataChannel(c, dc) {
  const { signal } = c;
  c.dc = dc;
  dc.addEventListener('open', () => { log('•', 'Data channel open'); updateControls(); }, { signal });
  dc.addEventListener('close', () => { log('•', 'Data channel closed', 'warn'); connectionLost(c); }, { signal });
  dc.addEventListener('message', (e) => onMessage(c, e.data, endCall), { signal });
}

/** @param {Call} c @param {RTCTrackEvent} e */
function onRemoteTrack(c, e) {
  if (e.track.kind !== 'audio') return;
  c.remoteStream = e.streams[0] || new MediaStream([e.track]);
  ui.remoteAudio.srcObject = c.remoteStream;
  ui.remoteAudio.play().catch(() => { /* autoplay attribute retries once media arrives */ });
  if (c.ctx) c.reply = makeAnalyser(c.ctx, c.remoteStream);
  log('•', 'Receiving reply audio track');
}

/** @param {Call} c @param {RTCPeerConnection} pc */
function onConnectionState(c, pc) {
  const s = pc.connectionState;
  log('•', `Peer connection ${s}`);
  clearTimeout(c.disconnectTimer);
  if (s === 'connected') {
    c.everConnected = true;
    clearTimeout(c.connectTimer);
    setState('connected');
  } else if (s === 'failed' || s === 'closed') {
    connectionLost(c);
  } else if (s === 'disconnected') {
    c.disconnectTimer = setTimeout(() => {
      if (!c.signal.aborted && pc.connectionState !== 'connected') connectionLost(c);
    }, DISCONNECT_GRACE_MS);
  }
}

/** @param {Call} c */
function connectionLost(c) {
  if (c.signal.aborted) return;  // already ended
  endCall({ state: 'failed', error: c.everConnected ? MSG_LOST : MSG_NO_MEDIA });
}

/**
 * Release everything a call holds. Idempotent: also used for calls cancelled mid-setup,
 * whose later steps may have acquired more (a stream, a peer connection) after the abort.
 * @param {Call} c
 */
function teardown(c) {
  c.controller.abort();  // listeners, fetches, stats and meter loops of this call stop
  clearInterval(c.statsTimer);
  clearTimeout(c.connectTimer);
  clearTimeout(c.disconnectTimer);
  cancelAnimationFrame(c.raf ?? 0);
  if (c.sessionId && !c.deleteSent) {
    c.deleteSent = true;
    deleteSession(c.sessionId);
  }
  try { c.dc?.close(); } catch { /* already closed */ }
  try { c.pc?.close(); } catch { /* already closed */ }
  c.stream?.getTracks().forEach((t) => t.stop());
  if (c.ctx && c.ctx.state !== 'closed') c.ctx.close().catch(() => {});
  if (c.remoteStream && ui.remoteAudio.srcObject === c.remoteStream) ui.remoteAudio.srcObject = null;
}

/** @param {EndOptions} [options] */
export function endCall({ state = 'idle', error = '', notice = '' } = {}) {
  const c = call;
  if (!c) return;
  call = null;
  teardown(c);  // aborts first, so the close events teardown triggers are not heard
  demo.pc = null;
  demo.sessionId = null;
  closeAll();
  cancelPendingLatency();
  resetMeters();
  if (error) showError(error);
  else if (notice && ui.error.hidden) showError(notice, 'notice');  // never hide a real error behind a notice
  setState(state);
  log('•', `Call ended (${state})`);
}

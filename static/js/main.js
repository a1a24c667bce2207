// @ts-check
// rtc-bridge demo page: wiring. ES modules, no dependencies, no build step.
//   ui.js          elements, test hook (window.bridgeDemo), error banner, event log
//   api.js         the bridge's HTTP API (access token from /#token=…)
//   providers.js   provider and voice pickers
//   call.js        one call: peer connection, offer, teardown (one AbortController per call)
//   events.js      wire events from the data channel
//   transcript.js  transcript bubbles
//   meters.js      level meters
//   stats.js       reply latency, RTT, usage and live cost, connect stages

import { ui, showError } from './ui.js';
import { loadProviders, renderVoices, sessionConfig } from './providers.js';
import { inCall, startCall, endCall, sendEvent, setState, setProvidersReady } from './call.js';
import { addTurn, closeTurn } from './transcript.js';
import { resetStats } from './stats.js';

const DEFAULT_INSTRUCTIONS = 'You are a helpful voice assistant.';

ui.start.addEventListener('click', () => {
  if (inCall()) endCall({ state: 'idle' });
  else startCall();
});

ui.provider.addEventListener('change', renderVoices);

/** @type {ReturnType<typeof setTimeout> | undefined} */
let applyStatusTimer;
ui.apply.addEventListener('click', () => {
  const applied = sendEvent({ type: 'session.update', session: sessionConfig() });
  ui.applyStatus.textContent = applied ? 'Applied to the current call.' : 'Will be used when you press Start.';
  clearTimeout(applyStatusTimer);
  applyStatusTimer = setTimeout(() => { ui.applyStatus.textContent = ''; }, 3000);
});

ui.textForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = ui.textInput.value.trim();
  if (!text) return;
  if (!sendEvent({ type: 'text', text })) {
    showError('Not connected: press Start before sending a message.');
    return;
  }
  closeTurn('user');
  addTurn('user', text, 'typed').dataset.final = '1';  // never overwritten by a voice transcript
  ui.textInput.value = '';
});

// pagehide (not unload) also fires for bfcache navigations and on mobile.
window.addEventListener('pagehide', () => endCall({ state: 'idle' }));

if (!ui.instructions.value.trim()) ui.instructions.value = DEFAULT_INSTRUCTIONS;
if (!window.RTCPeerConnection) {
  ui.start.disabled = true;
  showError('This browser does not support WebRTC. Use a recent Chromium, Firefox or Safari.');
}
setState('idle');
resetStats();
setProvidersReady(loadProviders());

// rtc-bridge demo: one WebRTC call to the bridge (mic up, reply audio down)
// plus a JSON "events" data channel. No dependencies, no build step.

const ICE_GATHER_TIMEOUT_MS = 2000;  // the bridge does not trickle ICE
const CONNECT_TIMEOUT_MS = 15000;
const DISCONNECT_GRACE_MS = 2000;    // "disconnected" can recover on a brief network blip
const STATS_INTERVAL_MS = 150;
const LATENCY_TIMEOUT_MS = 20000;    // give up waiting for a reply to one turn
const LOG_LIMIT = 500;
const REPLY_RMS_THRESHOLD = 0.02;    // ~-34 dBFS: well above the silence the bridge sends
const REPLY_ENERGY_THRESHOLD = 1e-5; // totalAudioEnergy growth per poll that means audible audio
const DEFAULT_INSTRUCTIONS = 'You are a helpful voice assistant.';

const MSG_LOST = 'The connection to the bridge was lost. Press Start to reconnect.';
const MSG_NO_MEDIA = 'Could not establish the audio connection to the bridge. If it runs on another ' +
  'machine, make sure UDP traffic between you and it is allowed, then press Start again.';

const $ = (id) => document.getElementById(id);
const ui = {
  start: $('start'), state: $('state'), provider: $('provider'), voice: $('voice'),
  instructions: $('instructions'), apply: $('apply'), applyStatus: $('apply-status'),
  transcript: $('transcript'), log: $('log'), logCount: $('log-count'), error: $('error'),
  micMeter: $('mic-meter'), micRow: $('mic-row'), replyMeter: $('reply-meter'),
  latencyLast: $('latency-last'), latencyAvg: $('latency-avg'), rtt: $('rtt'),
  latencyTurns: $('latency-turns'), usage: $('usage'), usageCost: $('usage-cost'),
  textForm: $('text-form'), textInput: $('text-input'), sendText: $('send-text'),
  remoteAudio: $('remote-audio'),
};

// Test hook: kept current by the code below. `events` is never replaced, only appended to.
const demo = { pc: null, sessionId: null, state: 'idle', events: [] };
window.bridgeDemo = demo;

/** Error whose message is already written for the user. */
class UserError extends Error {}

let providers = [];
let call = null;   // the current call; every async step checks it is still current
let callSeq = 0;
let logCount = 0;

// ---------------------------------------------------------------- UI helpers

function setState(state) {
  demo.state = state;
  ui.state.textContent = state;
  ui.state.dataset.state = state;
  updateControls();
}

function updateControls() {
  const inCall = call !== null;
  ui.start.textContent = inCall ? 'Stop' : 'Start';
  ui.start.classList.toggle('active', inCall);
  ui.start.setAttribute('aria-pressed', String(inCall));
  ui.provider.disabled = inCall;  // a provider cannot be switched mid-call
  const canSend = call?.dc?.readyState === 'open';
  ui.textInput.disabled = !canSend;
  ui.sendText.disabled = !canSend;
}

function showError(message, kind = 'error') {
  ui.error.textContent = message;
  ui.error.dataset.kind = kind;
  ui.error.hidden = !message;
}

function clock() {
  const d = new Date();
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** dir: "←" received, "→" sent, "•" local note. */
function log(dir, text, cls = '') {
  const atBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 30;
  const li = document.createElement('li');
  if (cls) li.className = cls;
  const time = document.createElement('time');
  time.textContent = clock();
  li.append(time, `${dir} ${text}`);
  ui.log.append(li);
  while (ui.log.childElementCount > LOG_LIMIT) ui.log.firstElementChild.remove();
  if (atBottom) ui.log.scrollTop = ui.log.scrollHeight;
  ui.logCount.textContent = String(++logCount);
}

const fmtMs = (ms) => (typeof ms === 'number' && Number.isFinite(ms) ? `${Math.round(ms)} ms` : '—');

// ---------------------------------------------------------------- providers

async function loadProviders() {
  try {
    const res = await fetch('/providers', { headers: { Accept: 'application/json' } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const data = await res.json();
    if (!Array.isArray(data?.providers) || data.providers.length === 0) throw new Error('empty provider list');
    providers = data.providers;
  } catch (err) {
    providers = [{ name: 'echo', available: true, default: true, voices: [] }];
    log('•', `Could not load /providers (${err.message}); offering "echo" only`, 'warn');
  }
  renderProviders();
}

function renderProviders() {
  ui.provider.replaceChildren(...providers.map((p) => {
    const unavailable = p.available === false;
    const opt = new Option(unavailable ? `${p.name} (${p.reason || 'unavailable'})` : p.name, p.name);
    opt.disabled = unavailable;
    if (p.reason) opt.title = p.reason;
    return opt;
  }));
  const usable = providers.filter((p) => p.available !== false);
  const pick = usable.find((p) => p.default) || usable[0] || providers[0];
  ui.provider.value = pick.name;
  renderVoices();
}

function renderVoices() {
  const p = providers.find((x) => x.name === ui.provider.value);
  const voices = Array.isArray(p?.voices) ? p.voices : [];
  const previous = ui.voice.value;
  if (voices.length === 0) {
    ui.voice.replaceChildren(new Option('Default voice', ''));
    return;
  }
  ui.voice.replaceChildren(...voices.map((v) => new Option(v, v)));
  ui.voice.value = voices.includes(previous) ? previous : (p.default_voice && voices.includes(p.default_voice) ? p.default_voice : voices[0]);
}

function sessionConfig() {
  const session = {};
  const instructions = ui.instructions.value.trim();
  if (instructions) session.instructions = instructions;
  if (ui.voice.value) session.voice = ui.voice.value;
  return session;
}

// Why a call ended, in plain words with what to do (the code is in the event log).
const CLOSE_REASONS = {
  peer_closed: 'The call ended.',
  peer_failed: 'The network connection to the bridge broke off.',
  connect_timeout: 'The call could not connect in time: the bridge may not be reachable from this device (its --ice-addresses, or TURN).',
  inactive: 'No sound reached the bridge for a while, so it ended the call. Check the microphone.',
  provider_error: 'The voice provider reported an error (shown above).',
  provider_closed: 'The voice provider ended the session.',
  deleted: 'The call was ended on the server.',
  server_shutdown: 'The bridge is shutting down.',
  max_duration: 'The call reached its maximum length.',
  budget_exceeded: 'The call reached its spending limit.',
  client_too_slow: 'This page could not keep up with the bridge.',
  bad_offer: 'The browser\'s call setup was refused by the bridge.',
  internal_error: 'The bridge ran into an internal error. Its log says more.',
};

// ---------------------------------------------------------------- transcript

const openTurns = { user: null, assistant: null };
// Last closed turn per role: a late final transcript (after turnComplete or a barge-in)
// replaces that turn's text instead of duplicating it.
const lastClosed = { user: null, assistant: null };

function addTurn(role, text = '', extraClass = '') {
  const el = document.createElement('div');
  el.className = `turn ${role} ${extraClass}`.trim();
  el.dataset.role = role;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = role === 'user' ? 'You' : 'Assistant';
  const p = document.createElement('p');
  p.className = 'text';
  p.textContent = text;
  el.append(who, p);
  appendToTranscript(el);
  return el;
}

function appendToTranscript(el) {
  const t = ui.transcript;
  const atBottom = t.scrollHeight - t.scrollTop - t.clientHeight < 40;
  t.append(el);
  if (atBottom) t.scrollTop = t.scrollHeight;
}

// Keep the newest text in view while the reader is at the bottom: decided before the text
// grows (after it, a long delta would look like the reader had scrolled up), applied after.
function keepInView(change) {
  const t = ui.transcript;
  const atBottom = t.scrollHeight - t.scrollTop - t.clientHeight < 40;
  change();
  if (atBottom) t.scrollTop = t.scrollHeight;
}

function appendTurnText(role, delta) {
  if (!delta) return;
  keepInView(() => {
    const turn = openTurns[role] || (openTurns[role] = addTurn(role, '', 'live'));
    turn.querySelector('.text').textContent += delta;
  });
}

function finalizeTurn(role, text) {
  keepInView(() => {
    const late = lastClosed[role]?.isConnected && !lastClosed[role].dataset.final ? lastClosed[role] : null;
    const turn = openTurns[role] || late || addTurn(role);
    if (typeof text === 'string') turn.querySelector('.text').textContent = text;
    turn.dataset.final = '1';
    closeTurn(role, turn);
  });
}

function closeTurn(role, turn = openTurns[role]) {
  turn?.classList.remove('live');
  // Drop a turn that never received text (e.g. only an empty delta arrived).
  if (turn && !turn.querySelector('.text').textContent) turn.remove();
  if (turn?.isConnected) lastClosed[role] = turn;
  if (openTurns[role] === turn) openTurns[role] = null;
}

// ---------------------------------------------------------------- usage

let usage = { totals: {}, cost: 0, costKnown: false };

// Providers report usage in their own shapes; show the headline numbers only (the full
// objects are in the event log): top-level counters, e.g. OpenAI's input/output tokens,
// Gemini's prompt/response token counts, the echo provider's audio seconds.
function addUsage(obj) {
  for (const [key, value] of Object.entries(obj || {})) {
    if (typeof value === 'number' && Number.isFinite(value) && !/^total/i.test(key)) {
      usage.totals[key] = (usage.totals[key] || 0) + value;
    }
  }
}

function renderUsage() {
  ui.usageCost.textContent = usage.costKnown ? `$${usage.cost.toFixed(usage.cost < 1 ? 4 : 2)}` : 'n/a';
  const rows = Object.entries(usage.totals).map(([key, value]) => {
    const div = document.createElement('div');
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = key.replace(/_/g, ' ').replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
    dd.textContent = Number.isInteger(value) ? value.toLocaleString() : value.toFixed(3);
    div.append(dt, dd);
    return div;
  });
  ui.usage.replaceChildren(ui.usageCost.parentElement, ...rows);
}

// ---------------------------------------------------------------- latency

const latency = { pending: null, samples: [] };

function onSpeechStopped() {
  if (latency.pending) recordLatency(null);  // previous turn never got audible audio
  latency.pending = { t0: performance.now() };
}

/** First audible reply audio after speechStopped closes the pending measurement. */
function noteReplyAudio(source) {
  if (!latency.pending) return;
  recordLatency(performance.now() - latency.pending.t0, source);
}

function recordLatency(ms, source = '') {
  latency.pending = null;
  latency.samples.push({ ms, source });
  if (latency.samples.length > 50) latency.samples.shift();
  renderLatency();
}

function renderLatency() {
  const s = latency.samples;
  ui.latencyLast.textContent = s.length ? fmtMs(s[s.length - 1].ms) : '—';
  const known = s.filter((x) => x.ms !== null).map((x) => x.ms);
  ui.latencyAvg.textContent = known.length
    ? `${fmtMs(known.reduce((a, b) => a + b, 0) / known.length)} (${known.length})` : '—';
  ui.latencyTurns.replaceChildren(...s.slice(-5).map((x, i, arr) => {
    const li = document.createElement('li');
    li.value = s.length - arr.length + i + 1;
    li.textContent = x.ms === null ? 'no reply audio detected' : `${fmtMs(x.ms)} (${x.source})`;
    return li;
  }));
}

function resetStats() {
  usage = { totals: {}, cost: 0, costKnown: false };
  renderUsage();
  latency.pending = null;
  latency.samples = [];
  renderLatency();
  ui.rtt.textContent = '—';
}

// ---------------------------------------------------------------- meters

function makeAnalyser(ctx, stream) {
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);  // not routed to speakers: metering only
  return { analyser, buf: new Float32Array(analyser.fftSize), level: 0 };
}

function readRms({ analyser, buf }) {
  analyser.getFloatTimeDomainData(buf);
  let sum = 0;
  for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
  return Math.sqrt(sum / buf.length);
}

/** Map RMS onto a -60..0 dBFS scale so quiet speech still moves the bar. */
function rmsToFraction(rms) {
  if (rms <= 0) return 0;
  return Math.min(1, Math.max(0, (20 * Math.log10(rms) + 60) / 60));
}

function setMeter(el, fraction) {
  el.style.setProperty('--level', fraction.toFixed(3));
  el.setAttribute('aria-valuenow', String(Math.round(fraction * 100)));
}

function updateMeter(meter, el) {
  const rms = readRms(meter);
  const target = rmsToFraction(rms);
  // Fast attack, slow release: easier to read than raw per-frame values.
  meter.level = target > meter.level ? target : meter.level * 0.85 + target * 0.15;
  setMeter(el, meter.level);
  return rms;
}

function meterLoop(c) {
  if (call !== c) return;
  if (c.mic) updateMeter(c.mic, ui.micMeter);
  if (c.reply && updateMeter(c.reply, ui.replyMeter) > REPLY_RMS_THRESHOLD) noteReplyAudio('level');
  c.raf = requestAnimationFrame(() => meterLoop(c));
}

function resetMeters() {
  setMeter(ui.micMeter, 0);
  setMeter(ui.replyMeter, 0);
  ui.micRow.classList.remove('speaking');
}

// ---------------------------------------------------------------- stats polling

function startStatsPolling(c) {
  c.statsTimer = setInterval(async () => {
    if (call !== c || c.statsBusy) return;
    c.statsBusy = true;
    try {
      const report = await c.pc.getStats();
      if (call !== c) return;
      let selectedPair = null, pairRtt = null, remoteRtt = null, energy = null;
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
}

// ---------------------------------------------------------------- signalling

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
    switch (err?.name) {
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
        throw new UserError(`Could not open the microphone (${err?.name || 'error'}: ${err?.message || err}).\nPress Start to try again.`);
    }
  }
}

function waitForIceGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve(true);
  return new Promise((resolve) => {
    const finish = (complete) => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', onState);
      pc.removeEventListener('icecandidate', onCandidate);
      resolve(complete);
    };
    const onState = () => { if (pc.iceGatheringState === 'complete') finish(true); };
    const onCandidate = (e) => { if (!e.candidate) finish(true); };  // null candidate = end of gathering
    const timer = setTimeout(() => finish(false), timeoutMs);
    pc.addEventListener('icegatheringstatechange', onState);
    pc.addEventListener('icecandidate', onCandidate);
  });
}

// An access token, when the bridge wants one: open the page as /#token=… (a fragment is
// never sent to the server, so it stays out of access logs), then it goes as a bearer header.
const accessToken = new URLSearchParams(location.hash.slice(1)).get('token') || '';
function authHeaders(headers = {}) {
  return accessToken ? { ...headers, Authorization: `Bearer ${accessToken}` } : headers;
}

// STUN/TURN servers (TURN credentials are minted per request); none when the bridge has none.
async function iceServers() {
  try {
    const res = await fetch('/ice-servers', { headers: authHeaders({ Accept: 'application/json' }) });
    if (!res.ok) return [];
    const data = await res.json();
    return Array.isArray(data?.iceServers) ? data.iceServers : [];
  } catch {
    return [];
  }
}

async function postOffer(body) {
  let res;
  try {
    res = await fetch('/offer', {
      method: 'POST',
      headers: authHeaders({ 'Content-Type': 'application/json', Accept: 'application/json' }),
      body: JSON.stringify(body),
    });
  } catch {
    throw new UserError(`Cannot reach the bridge at ${location.origin}. Is the bridge running?\nStart it and press Start again.`);
  }
  let data = null;
  try { data = await res.json(); } catch { /* non-JSON body: handled below */ }
  if (!res.ok) {
    const message = data?.error?.message || res.statusText || 'Unknown error';
    const code = data?.error?.code ? ` ${data.error.code}` : '';
    const hint = res.status >= 500 ? 'Check the bridge logs, then press Start again.'
      : res.status === 401 ? 'This bridge needs an access token: open the page as /#token=<token> (bridge token mints one).'
      : 'Check the provider and settings, then press Start again.';
    throw new UserError(`The bridge refused the call (HTTP ${res.status}${code}): ${message}\n${hint}`);
  }
  if (typeof data?.sdp !== 'string') throw new UserError('The bridge sent an invalid answer (no SDP). Check the bridge logs.');
  return data;
}

function deleteSession(id) {
  // keepalive lets the request outlive the page on pagehide.
  fetch(`/sessions/${encodeURIComponent(id)}`, { method: 'DELETE', keepalive: true, headers: authHeaders() })
    .then((res) => { if (!res.ok && res.status !== 404) log('•', `DELETE session answered HTTP ${res.status}`, 'warn'); })
    .catch(() => { /* bridge already gone: nothing left to end */ });
}

function sendEvent(obj) {
  const dc = call?.dc;
  if (!dc || dc.readyState !== 'open') return false;
  const text = JSON.stringify(obj);
  dc.send(text);
  log('→', text, 'out');
  return true;
}

// ---------------------------------------------------------------- call lifecycle

async function startCall() {
  showError('');
  resetStats();
  closeTurn('user');
  closeTurn('assistant');
  lastClosed.user = lastClosed.assistant = null;  // late finals of an old call must not edit its turns
  if (ui.transcript.childElementCount) {
    const divider = document.createElement('div');
    divider.className = 'divider';
    divider.textContent = `New call · ${clock().slice(0, 8)}`;
    appendToTranscript(divider);
  }

  const c = { id: ++callSeq, pc: null, dc: null, stream: null, ctx: null, mic: null, reply: null,
    remoteStream: null, sessionId: null, lastEnergy: null, everConnected: false };
  call = c;
  setState('connecting');
  log('•', `Starting call with provider "${ui.provider.value}"`);

  // Create the AudioContext inside the click handler: autoplay policy only lets it run after a user gesture.
  try { c.ctx = new AudioContext(); } catch { c.ctx = null; }

  try {
    await providersReady;  // a click right after load must not send the "Loading…" placeholder
    c.stream = await openMic();
    if (call !== c) return teardown(c);
    if (c.ctx) c.mic = makeAnalyser(c.ctx, c.stream);
    c.raf = requestAnimationFrame(() => meterLoop(c));  // mic meter is useful while connecting too

    const pc = new RTCPeerConnection({ iceServers: await iceServers() });
    if (call !== c) { pc.close(); return teardown(c); }
    c.pc = demo.pc = pc;
    pc.addTransceiver(c.stream.getAudioTracks()[0], { direction: 'sendrecv' });
    setupDataChannel(c, pc.createDataChannel('events'));  // must exist before the offer
    pc.ontrack = (e) => onRemoteTrack(c, e);
    pc.onconnectionstatechange = () => onConnectionState(c);

    await pc.setLocalDescription(await pc.createOffer());
    const complete = await waitForIceGathering(pc, ICE_GATHER_TIMEOUT_MS);
    if (call !== c) return teardown(c);
    if (!complete) log('•', 'ICE gathering still running after 2 s; sending the candidates found so far', 'warn');

    const answer = await postOffer({
      sdp: pc.localDescription.sdp, type: 'offer', provider: ui.provider.value, session: sessionConfig(),
    });
    c.sessionId = answer.session_id ?? null;  // recorded even if cancelled, so teardown can DELETE it
    if (call !== c) return teardown(c);
    demo.sessionId = c.sessionId;
    log('•', `Session ${c.sessionId ?? '(no id)'} created`);

    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    if (call !== c) return teardown(c);
    startStatsPolling(c);
    c.connectTimer = setTimeout(() => { if (call === c && !c.everConnected) connectionLost(c); }, CONNECT_TIMEOUT_MS);
  } catch (err) {
    if (call !== c) return teardown(c);
    const message = err instanceof UserError ? err.message : `Could not start the call: ${err?.message || err}\nPress Start to try again.`;
    log('•', message.replace(/\n/g, ' '), 'err');
    endCall({ state: 'failed', error: message });
  }
}

function setupDataChannel(c, dc) {
  c.dc = dc;
  dc.onopen = () => { if (call === c) { log('•', 'Data channel open'); updateControls(); } };
  dc.onclose = () => { if (call === c) { log('•', 'Data channel closed', 'warn'); connectionLost(c); } };
  dc.onmessage = (e) => {
    if (call !== c) return;
    let msg;
    try { msg = JSON.parse(e.data); } catch { msg = null; }
    if (!msg || typeof msg !== 'object') {
      log('←', `(not a JSON object) ${String(e.data).slice(0, 200)}`, 'warn');
      return;
    }
    handleEvent(c, msg);
  };
}

function onRemoteTrack(c, e) {
  if (call !== c || e.track.kind !== 'audio') return;
  c.remoteStream = e.streams[0] || new MediaStream([e.track]);
  ui.remoteAudio.srcObject = c.remoteStream;
  ui.remoteAudio.play().catch(() => { /* autoplay attribute retries once media arrives */ });
  if (c.ctx) c.reply = makeAnalyser(c.ctx, c.remoteStream);
  log('•', 'Receiving reply audio track');
}

function onConnectionState(c) {
  if (call !== c) return;
  const s = c.pc.connectionState;
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
      if (call === c && c.pc.connectionState !== 'connected') connectionLost(c);
    }, DISCONNECT_GRACE_MS);
  }
}

function connectionLost(c) {
  if (call !== c) return;
  endCall({ state: 'failed', error: c.everConnected ? MSG_LOST : MSG_NO_MEDIA });
}

function handleEvent(c, msg) {
  demo.events.push(msg);
  log('←', JSON.stringify(msg), msg.type === 'error' ? 'err' : '');
  switch (msg.type) {
    case 'open':
      log('•', 'Provider session ready');
      break;
    case 'text':
      appendTurnText('assistant', typeof msg.delta === 'string' ? msg.delta : '');
      break;
    case 'transcript': {
      const role = msg.role === 'user' ? 'user' : 'assistant';
      if (msg.final) finalizeTurn(role, typeof msg.text === 'string' ? msg.text : undefined);
      else appendTurnText(role, typeof msg.text === 'string' ? msg.text : '');
      break;
    }
    case 'speechStarted':
      ui.micRow.classList.add('speaking');
      closeTurn('assistant');  // barge-in: the next reply starts a new turn
      break;
    case 'speechStopped':
      ui.micRow.classList.remove('speaking');
      lastClosed.assistant = null;  // a final transcript from now on belongs to a new reply
      onSpeechStopped();
      break;
    case 'interrupted':  // the provider cut its reply (Gemini): the next reply is a new turn
    case 'turnComplete':
      closeTurn('assistant');
      break;
    case 'usage':
      addUsage(msg.usage);
      if (typeof msg.cost_usd === 'number' && Number.isFinite(msg.cost_usd)) {
        usage.cost += msg.cost_usd;
        usage.costKnown = true;
      }
      renderUsage();
      break;
    case 'error': {
      const err = msg.error || {};
      const code = err.code ? ` (${err.code})` : '';
      showError(`Provider error${code}: ${err.message || 'unknown error'}`);
      break;
    }
    case 'close': {
      const why = CLOSE_REASONS[msg.reason] || (msg.reason ? `The bridge ended the call (${msg.reason}).` : 'The bridge ended the call.');
      endCall({ state: 'closed', notice: `${why}\nPress Start to begin a new call.` });
      break;
    }
    default:
      break;  // unknown events are still logged and recorded above
  }
}

/** Release everything a call holds. Idempotent: also used for calls cancelled mid-setup. */
function teardown(c) {
  clearInterval(c.statsTimer);
  clearTimeout(c.connectTimer);
  clearTimeout(c.disconnectTimer);
  cancelAnimationFrame(c.raf);
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

function endCall({ state = 'idle', error = '', notice = '' } = {}) {
  const c = call;
  if (!c) return;
  call = null;  // first, so the close events teardown triggers are ignored
  teardown(c);
  demo.pc = null;
  demo.sessionId = null;
  closeTurn('user');
  closeTurn('assistant');
  latency.pending = null;
  resetMeters();
  if (error) showError(error);
  else if (notice && ui.error.hidden) showError(notice, 'notice');  // never hide a real error behind a notice
  setState(state);
  log('•', `Call ended (${state})`);
}

// ---------------------------------------------------------------- wiring

ui.start.addEventListener('click', () => {
  if (call) endCall({ state: 'idle' });
  else startCall();
});

ui.provider.addEventListener('change', renderVoices);

ui.apply.addEventListener('click', () => {
  const applied = sendEvent({ type: 'session.update', session: sessionConfig() });
  ui.applyStatus.textContent = applied ? 'Applied to the current call.' : 'Will be used when you press Start.';
  clearTimeout(ui.applyStatus.timer);
  ui.applyStatus.timer = setTimeout(() => { ui.applyStatus.textContent = ''; }, 3000);
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
const providersReady = loadProviders();

// @ts-check
// The provider and voice pickers, and the session settings sent with the offer.

import { fetchProviders } from './api.js';
import { ui, log } from './ui.js';

/** @typedef {import('./api.js').Provider} Provider */

/** @type {Provider[]} */
let providers = [];

export async function loadProviders() {
  try {
    providers = await fetchProviders();
  } catch (err) {
    providers = [{ name: 'echo', available: true, default: true, voices: [] }];
    log('•', `Could not load /providers (${err instanceof Error ? err.message : err}); offering "echo" only`, 'warn');
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

/** The provider's models (retired ones listed but not selectable), its default first. */
export function renderModels() {
  const p = providers.find((x) => x.name === ui.provider.value);
  const models = Array.isArray(p?.models) ? p.models : [];
  if (!p || models.length === 0) {
    ui.model.replaceChildren(new Option('Default model', ''));
    return;
  }
  ui.model.replaceChildren(...models.map((m) => {
    const retired = m.status === 'retired';
    const opt = new Option(retired ? `${m.id} (retired)` : m.id, m.id);
    opt.disabled = retired;
    if (m.warning) opt.title = m.warning;
    return opt;
  }));
  const usable = models.filter((m) => m.status !== 'retired').map((m) => m.id);
  ui.model.value = p.default_model && usable.includes(p.default_model) ? p.default_model : (usable[0] || '');
}

export function renderVoices() {
  renderModels();
  const p = providers.find((x) => x.name === ui.provider.value);
  const voices = Array.isArray(p?.voices) ? p.voices : [];
  const previous = ui.voice.value;
  if (!p || voices.length === 0) {
    ui.voice.replaceChildren(new Option('Default voice', ''));
    return;
  }
  ui.voice.replaceChildren(...voices.map((v) => new Option(v, v)));
  ui.voice.value = voices.includes(previous) ? previous
    : (p.default_voice && voices.includes(p.default_voice) ? p.default_voice : voices[0]);
}

/** @returns {{instructions?: string, voice?: string}} */
export function sessionConfig() {
  /** @type {{instructions?: string, voice?: string}} */
  const session = {};
  const instructions = ui.instructions.value.trim();
  if (instructions) session.instructions = instructions;
  if (ui.voice.value) session.voice = ui.voice.value;
  return session;
}

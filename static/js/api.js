// @ts-check
// The bridge's HTTP API: /providers, /ice-servers, POST /offer, GET and DELETE /sessions/{id}.

import { UserError, log } from './ui.js';

/** @typedef {import('./types.js').SessionInfo} SessionInfo */
/**
 * @typedef {{name: string, available?: boolean, default?: boolean, reason?: string,
 *   voices?: string[], default_voice?: string, default_model?: string,
 *   models?: {id: string, status?: string, warning?: string | null}[]}} Provider
 *   An entry of GET /providers.
 */

// An access token, when the bridge wants one: open the page as /#token=… (a fragment is
// never sent to the server, so it stays out of access logs), then it goes as a bearer header.
const accessToken = new URLSearchParams(location.hash.slice(1)).get('token') || '';

/**
 * @param {Record<string, string>} [headers]
 * @returns {Record<string, string>}
 */
export function authHeaders(headers = {}) {
  return accessToken ? { ...headers, Authorization: `Bearer ${accessToken}` } : headers;
}

/** @returns {Promise<Provider[]>} throws when the list cannot be had */
export async function fetchProviders() {
  const res = await fetch('/providers', { headers: { Accept: 'application/json' } });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const data = await res.json();
  if (!Array.isArray(data?.providers) || data.providers.length === 0) throw new Error('empty provider list');
  return data.providers;
}

/**
 * STUN/TURN servers (TURN credentials are minted per request); none when the bridge has none.
 * @param {AbortSignal} signal
 * @returns {Promise<RTCIceServer[]>}
 */
export async function iceServers(signal) {
  try {
    const res = await fetch('/ice-servers', { headers: authHeaders({ Accept: 'application/json' }), signal });
    if (!res.ok) return [];
    const data = await res.json();
    return Array.isArray(data?.iceServers) ? data.iceServers : [];
  } catch {
    return [];
  }
}

/**
 * Not cancelled with the call: the answer's session id is needed to DELETE the session.
 * @param {object} body
 * @returns {Promise<{sdp: string, session_id?: string}>}
 */
export async function postOffer(body) {
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

/**
 * GET /sessions/{id}; null when it cannot be had (ended, another bridge, no permission).
 * @param {string} id
 * @param {AbortSignal} signal
 * @returns {Promise<SessionInfo | null>}
 */
export async function fetchSession(id, signal) {
  try {
    const res = await fetch(`/sessions/${encodeURIComponent(id)}`, {
      headers: authHeaders({ Accept: 'application/json' }), signal,
    });
    if (!res.ok) return null;
    const data = await res.json();
    return data && typeof data === 'object' ? data : null;
  } catch {
    return null;
  }
}

/** @param {string} id */
export function deleteSession(id) {
  // keepalive lets the request outlive the page on pagehide.
  fetch(`/sessions/${encodeURIComponent(id)}`, { method: 'DELETE', keepalive: true, headers: authHeaders() })
    .then((res) => { if (!res.ok && res.status !== 404) log('•', `DELETE session answered HTTP ${res.status}`, 'warn'); })
    .catch(() => { /* bridge already gone: nothing left to end */ });
}

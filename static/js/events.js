// @ts-check
// What each wire event from the bridge's "events" data channel does to the page.

import { ui, demo, log, showError } from './ui.js';
import { appendTurnText, finalizeTurn, closeTurn, forgetClosed } from './transcript.js';
import { addUsage, onSpeechStopped, showConnectStages } from './stats.js';

/**
 * @typedef {import('./types.js').Call} Call
 * @typedef {import('./types.js').WireEvent} WireEvent
 * @typedef {{state?: string, error?: string, notice?: string}} EndOptions
 * @typedef {(options: EndOptions) => void} EndCall
 */

// Why a call ended, in plain words with what to do (the code is in the event log).
/** @type {Record<string, string>} */
export const CLOSE_REASONS = {
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

/**
 * A data channel message: parsed, recorded for the tests, logged, then handled.
 * @param {Call} c
 * @param {unknown} data
 * @param {EndCall} endCall
 */
export function onMessage(c, data, endCall) {
  let msg;
  try { msg = JSON.parse(String(data)); } catch { msg = null; }
  if (!msg || typeof msg !== 'object') {
    log('←', `(not a JSON object) ${String(data).slice(0, 200)}`, 'warn');
    return;
  }
  handleEvent(c, /** @type {WireEvent} */ (msg), endCall);
}

/**
 * @param {Call} c
 * @param {WireEvent} msg
 * @param {EndCall} endCall
 */
function handleEvent(c, msg, endCall) {
  demo.events.push(msg);
  log('←', JSON.stringify(msg), msg.type === 'error' ? 'err' : '');
  switch (msg.type) {
    case 'open':
      log('•', 'Provider session ready');
      showConnectStages(c);
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
      forgetClosed('assistant');  // a final transcript from now on belongs to a new reply
      onSpeechStopped();
      break;
    case 'interrupted':  // the provider cut its reply (Gemini): the next reply is a new turn
    case 'turnComplete':
      closeTurn('assistant');
      break;
    case 'usage':
      addUsage(msg);
      break;
    case 'error': {
      const err = msg.error || {};
      const code = err.code ? ` (${err.code})` : '';
      showError(`Provider error${code}: ${err.message || 'unknown error'}`);
      break;
    }
    case 'close': {
      const why = (msg.reason && CLOSE_REASONS[msg.reason]) ||
        (msg.reason ? `The bridge ended the call (${msg.reason}).` : 'The bridge ended the call.');
      endCall({ state: 'closed', notice: `${why}\nPress Start to begin a new call.` });
      break;
    }
    default:
      break;  // unknown events are still logged and recorded above
  }
}

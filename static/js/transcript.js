// @ts-check
// The transcript: one bubble per turn, live text while it streams, late finals folded in.

import { ui, clock } from './ui.js';

/** @typedef {'user' | 'assistant'} Role */

/** @type {Record<Role, HTMLElement | null>} */
const openTurns = { user: null, assistant: null };
// Last closed turn per role: a late final transcript (after turnComplete or a barge-in)
// replaces that turn's text instead of duplicating it.
/** @type {Record<Role, HTMLElement | null>} */
const lastClosed = { user: null, assistant: null };

/** @param {HTMLElement} turn */
const textOf = (turn) => /** @type {HTMLElement} */ (turn.querySelector('.text'));

/**
 * @param {Role} role
 * @param {string} [text]
 * @param {string} [extraClass]
 */
export function addTurn(role, text = '', extraClass = '') {
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

/** @param {HTMLElement} el */
function appendToTranscript(el) {
  keepInView(() => ui.transcript.append(el));
}

// Keep the newest text in view while the reader is at the bottom: decided before the text
// grows (after it, a long delta would look like the reader had scrolled up), applied after.
/** @param {() => void} change */
function keepInView(change) {
  const t = ui.transcript;
  const atBottom = t.scrollHeight - t.scrollTop - t.clientHeight < 40;
  change();
  if (atBottom) t.scrollTop = t.scrollHeight;
}

/** @param {Role} role @param {string} delta */
export function appendTurnText(role, delta) {
  if (!delta) return;
  keepInView(() => {
    const turn = openTurns[role] || (openTurns[role] = addTurn(role, '', 'live'));
    textOf(turn).textContent += delta;
  });
}

/** @param {Role} role @param {string | undefined} text */
export function finalizeTurn(role, text) {
  keepInView(() => {
    const last = lastClosed[role];
    const late = last?.isConnected && !last.dataset.final ? last : null;
    const turn = openTurns[role] || late || addTurn(role);
    if (typeof text === 'string') textOf(turn).textContent = text;
    turn.dataset.final = '1';
    closeTurn(role, turn);
  });
}

/** @param {Role} role @param {HTMLElement | null} [turn] */
export function closeTurn(role, turn = openTurns[role]) {
  turn?.classList.remove('live');
  // Drop a turn that never received text (e.g. only an empty delta arrived).
  if (turn && !textOf(turn).textContent) turn.remove();
  if (turn?.isConnected) lastClosed[role] = turn;
  if (openTurns[role] === turn) openTurns[role] = null;
}

/** A final transcript from now on belongs to a new turn of this role. */
export function forgetClosed(/** @type {Role} */ role) {
  lastClosed[role] = null;
}

/** Close what is open; with `newCall`, also mark where a new call begins. */
export function closeAll(newCall = false) {
  closeTurn('user');
  closeTurn('assistant');
  if (!newCall) return;
  lastClosed.user = lastClosed.assistant = null;  // late finals of an old call must not edit its turns
  if (ui.transcript.childElementCount) {
    const divider = document.createElement('div');
    divider.className = 'divider';
    divider.textContent = `New call · ${clock().slice(0, 8)}`;
    appendToTranscript(divider);
  }
}

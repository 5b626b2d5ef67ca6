// What the user sees while requests run and when they fail: errors are always shown, never swallowed.

import { $, el } from './dom.js';

export function showError(err, statusBox) {
  const title = err.error || err.name || 'Error';
  const details = err.details ?? err.message ?? String(err);
  const where = err.request ? ` (${err.request}${err.status ? ` → ${err.status}` : ''})` : '';
  const banner = el('div', { class: 'error' },
    el('strong', {}, title), ' ', el('span', { class: 'error-details' }, details), el('span', { class: 'muted' }, where),
    el('button', { type: 'button', class: 'close', 'aria-label': 'Dismiss', onclick: () => banner.remove() }, '×'));
  $('#errors').prepend(banner);
  if (statusBox) statusBox.replaceChildren(el('div', { class: 'error inline' }, `${title}: ${details}`));
  if (err.status === 401) $('#api-key-form').hidden = false;
  console.error(err);
}

// Run `work()` with the view's buttons disabled and a progress bar with elapsed time.
export async function busy(view, label, work) {
  const status = view.querySelector('[data-status]');
  const buttons = [...view.querySelectorAll('button')];
  const started = performance.now();
  const text = el('span', {}, `${label}…`);
  const bar = el('div', { class: 'progress', role: 'progressbar', 'aria-label': label }, el('div', { class: 'progress-fill' }));
  status.replaceChildren(bar, text);
  const timer = setInterval(() => { text.textContent = `${label}… ${((performance.now() - started) / 1000).toFixed(0)} s`; }, 500);
  buttons.forEach((b) => { b.disabled = true; });
  view.classList.add('busy');
  try {
    const result = await work();
    status.replaceChildren(el('span', { class: 'ok' }, `${label}: done in ${((performance.now() - started) / 1000).toFixed(1)} s`));
    return result;
  } catch (err) {
    showError(err, status);
    return undefined;
  } finally {
    clearInterval(timer);
    buttons.forEach((b) => { b.disabled = false; });
    view.classList.remove('busy');
  }
}

// Wait for every task. Every failure is shown; the first one also fails the caller.
export async function settled(tasks) {
  const failures = (await Promise.allSettled(tasks)).filter((r) => r.status === 'rejected').map((r) => r.reason);
  failures.slice(1).forEach((err) => showError(err));
  if (failures.length) throw failures[0];
}

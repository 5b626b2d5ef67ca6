// What the user sees while requests run and when they fail: errors are always shown, never swallowed.

import { $, el } from './dom.js';

// One banner per distinct message: the same error again (parallel requests of one view failing
// alike) replaces its banner instead of stacking another. Banners are cleared when the view changes,
// and those of a view's failed action (`view`) when a later action of that view succeeds.
export function showError(err, statusBox, view) {
  const title = err.error || err.name || 'Error';
  const details = err.details ?? err.message ?? String(err);
  const where = err.request ? ` (${err.request}${err.status ? ` → ${err.status}` : ''})` : '';
  const key = `${title}\u0000${details}`;
  const banner = el('div', { class: 'error', dataset: view ? { key, view: view.id } : { key } },
    el('strong', {}, title), ' ', el('span', { class: 'error-details' }, details), el('span', { class: 'muted' }, where),
    el('button', { type: 'button', class: 'close', 'aria-label': 'Dismiss', onclick: () => banner.remove() }, '×'));
  [...$('#errors').children].filter((b) => b.dataset.key === key).forEach((b) => b.remove());
  $('#errors').prepend(banner);
  if (statusBox) statusBox.replaceChildren(el('div', { class: 'error inline' }, `${title}: ${details}`));
  if (err.status === 401) $('#api-key-form').hidden = false;
  console.error(err);
}

export function clearErrors() {
  $('#errors').replaceChildren();
}

// Run `work(progress)` with the view's buttons disabled and a progress bar with elapsed time.
// `progress(fraction, step)` (a job's report) turns the bar from indeterminate into a real one.
export async function busy(view, label, work) {
  const status = view.querySelector('[data-status]');
  const buttons = [...view.querySelectorAll('button')];
  const started = performance.now();
  const elapsed = () => ((performance.now() - started) / 1000);
  const text = el('span', {}, `${label}…`);
  const fill = el('div', { class: 'progress-fill' });
  const bar = el('div', { class: 'progress', role: 'progressbar', 'aria-label': label }, fill);
  let step = '';
  const progress = (fraction, what) => {
    bar.classList.add('determinate');
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', '1');
    bar.setAttribute('aria-valuenow', String(fraction));
    fill.style.width = `${(100 * fraction).toFixed(1)}%`;
    step = ` ${Math.round(100 * fraction)} %${what ? ` · ${overallStep(what)}` : ''}`;
  };
  status.replaceChildren(bar, text);
  const timer = setInterval(() => { text.textContent = `${label}… ${elapsed().toFixed(0)} s${step}`; }, 500);
  buttons.forEach((b) => { b.disabled = true; });
  view.classList.add('busy');
  try {
    const result = await work(progress);
    const done = el('span', { class: 'ok' }, `${label}: done in ${elapsed().toFixed(1)} s`);
    [...$('#errors').children].filter((b) => b.dataset.view === view.id).forEach((b) => b.remove());
    status.replaceChildren(...(bar.classList.contains('determinate') ? [bar, done] : [done]));
    return result;
  } catch (err) {
    showError(err, status, view);
    return undefined;
  } finally {
    clearInterval(timer);
    buttons.forEach((b) => { b.disabled = false; });
    view.classList.remove('busy');
  }
}

// A job's step without the counters of its current chunk ("text 1/2: 256/768 ablations" restarts
// with each chunk, while the percentage is the job's overall progress).
function overallStep(step) {
  return step.replace(/:?\s*\d[\d,]*\/\d[\d,]* ablations/, '').replace(/^text \d+\/\d+$/, 'ablating');
}

// Wait for every task. Every failure is shown; the first one also fails the caller.
export async function settled(tasks) {
  const failures = (await Promise.allSettled(tasks)).filter((r) => r.status === 'rejected').map((r) => r.reason);
  failures.slice(1).forEach((err) => showError(err)); // identical messages share one banner
  if (failures.length) throw failures[0];
}

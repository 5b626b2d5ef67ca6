// Downloads of what a view shows: the API's JSON as it came, and a CSV of its table built from that
// JSON in the browser (the API answers JSON only). Nothing is sent anywhere: a Blob saved by the browser.

import { el } from './dom.js';

// One CSV field: quoted when it holds a comma, quote or line break.
function field(value) {
  const text = value === undefined || value === null ? '' : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

// rows: objects; columns: their keys in order (the CSV header).
function toCsv(columns, rows) {
  return [columns, ...rows.map((row) => columns.map((c) => row[c]))].map((r) => r.map(field).join(',')).join('\r\n') + '\r\n';
}

function save(filename, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = el('a', { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// "Download CSV · JSON" links for `target`: `get()` returns {name, json, columns, rows} at click time.
export function downloads(target, what, get) {
  const button = (label, action) => el('button', {
    type: 'button', class: 'secondary small', 'data-download': label.toLowerCase(),
    'aria-label': `Download ${what} as ${label}`, onclick: action,
  }, label);
  target.replaceChildren(el('span', { class: 'muted' }, `Download ${what}: `),
    button('CSV', () => { const d = get(); save(`${d.name}.csv`, 'text/csv', toCsv(d.columns, d.rows)); }),
    button('JSON', () => { const d = get(); save(`${d.name}.json`, 'application/json', JSON.stringify(d.json, null, 2)); }));
}

export function clearDownloads(target) {
  target.replaceChildren();
}

// Calls to the JSON API. Every failure becomes an ApiError carrying the server's {error, details}.

export class ApiError extends Error {
  constructor(status, error, details, request) {
    super(details ? `${error}: ${details}` : error);
    this.status = status;
    this.error = error;
    this.details = details;
    this.request = request;
  }
}

// A server started with NEURONSCOPE_API_KEY wants the key in every API request; the page keeps
// it for the browser tab only.
const KEY_STORAGE = 'neuronscope-api-key';

export function setApiKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

// With `onProgress(fraction, step)` the call runs as a background job (`?async=true`, 202): its
// progress is followed until it ends, and the job's result is returned (or its error thrown).
export async function api(path, { method = 'GET', body, params, onProgress } = {}) {
  if (onProgress) return runJob(path, { method, body, params }, onProgress);
  const query = params ? '?' + new URLSearchParams(dropEmpty(params)) : '';
  const request = `${method} /api/${path}${query}`;
  const init = { method, headers: { Accept: 'application/json' } };
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) init.headers['X-API-Key'] = key;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`api/${path}${query}`, init);
  } catch (err) {
    throw new ApiError(0, 'Server unreachable', err.message, request);
  }
  const data = await parseJson(response, request);
  if (!response.ok) {
    throw new ApiError(response.status, data?.error || `HTTP ${response.status}`, data?.details || '', request);
  }
  return data;
}

async function parseJson(response, request) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(response.status, `HTTP ${response.status}`, 'the server did not answer with JSON', request);
  }
}

function dropEmpty(params) {
  return Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ''));
}

async function runJob(path, options, onProgress) {
  const request = `${options.method} /api/${path}`;
  const accepted = await api(path, { ...options, params: { ...options.params, async: 'true' } });
  const job = await followJob(accepted.job_id, onProgress);
  if (job.status === 'done') return job.result;
  const error = job.error || { error: `Job ${job.status}`, details: job.step || '', status: 0 };
  throw new ApiError(error.status, error.error, error.details, `${request} (job ${job.job_id})`);
}

// The job's final state. Server-Sent Events when the browser can send them (no API key: an
// EventSource cannot set headers), polling `GET /api/jobs/{id}` otherwise or if the stream fails.
function followJob(id, onProgress) {
  const report = (job) => onProgress(job.progress ?? 0, job.step || job.status);
  if (sessionStorage.getItem(KEY_STORAGE) || typeof EventSource === 'undefined') return pollJob(id, report);
  return new Promise((resolve, reject) => {
    const source = new EventSource(`api/jobs/${encodeURIComponent(id)}/events`);
    source.onmessage = (event) => {
      const job = JSON.parse(event.data);
      report(job);
      if (FINAL.has(job.status)) {
        source.close();
        resolve(job);
      }
    };
    source.onerror = () => {
      source.close();
      pollJob(id, report).then(resolve, reject);
    };
  });
}

const FINAL = new Set(['done', 'failed', 'cancelled']);
const POLL_MS = 300;

async function pollJob(id, report) {
  for (;;) {
    const job = await api(`jobs/${encodeURIComponent(id)}`);
    report(job);
    if (FINAL.has(job.status)) return job;
    await new Promise((resolve) => { setTimeout(resolve, POLL_MS); });
  }
}

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

export async function api(path, { method = 'GET', body, params } = {}) {
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

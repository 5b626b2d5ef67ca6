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

export async function api(path, { method = 'GET', body, params } = {}) {
  const query = params ? '?' + new URLSearchParams(dropEmpty(params)) : '';
  const request = `${method} /api/${path}${query}`;
  const init = { method, headers: { Accept: 'application/json' } };
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

// One way to call the gateway: JSON in, {ok, status, data, error} out. Never throws for an HTTP error: every panel
// shows `describe(result)` to the person.
import { getToken, setToken } from './session.js';

/**
 * @param {string} method
 * @param {string} path  a same-origin path; secrets never go here (bodies only)
 * @param {{ body?: unknown, auth?: boolean }} [options]
 */
export async function call(method, path, options = {}) {
  const headers = { accept: 'application/json' };
  const token = getToken();
  if (options.auth !== false && token) headers.authorization = `Bearer ${token}`;
  let body;
  if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
  } catch (err) {
    return {
      ok: false,
      status: 0,
      data: null,
      error: { code: 'NETWORK', message: `Could not reach the gateway (${err?.message ?? err}).` },
    };
  }
  // The gateway renews a session's token when it extends the session: keep the newest.
  const renewed = response.headers.get('x-auth-token');
  if (renewed && token && options.auth !== false) setToken(renewed);

  const type = response.headers.get('content-type') ?? '';
  let data = null;
  if (type.includes('json')) data = await response.json().catch(() => null);
  else if (type.startsWith('image/svg') || type.startsWith('text/')) data = await response.text();

  if (response.ok) return { ok: true, status: response.status, data, error: null, headers: response.headers };
  const error =
    data && typeof data === 'object' && data.error && typeof data.error === 'object'
      ? {
          code: String(data.error.code ?? 'ERROR'),
          message: String(data.error.message ?? 'The request failed.'),
          field: data.error.field,
        }
      : { code: `HTTP_${response.status}`, message: data?.message ?? `The gateway answered ${response.status}.` };
  // A token that no longer works (logout elsewhere, revocation, expiry): this tab is signed out.
  if (response.status === 401 && error.code === 'INVALID_TOKEN' && options.auth !== false && token) setToken(null);
  return { ok: false, status: response.status, data, error, headers: response.headers };
}

/** True when the route does not exist on this gateway (the feature is not installed). */
export function isAbsent(result) {
  return result.status === 404 && result.error?.code === 'NOT_FOUND' && /^No route\b/.test(result.error.message ?? '');
}

/** The words shown to the person for a failed call. */
export function describe(result, feature = 'This feature') {
  if (isAbsent(result)) return `${feature} is not available on this server.`;
  if (!result.error) return 'The request failed.';
  if (result.error.code === 'INVALID_TOKEN' || result.error.code === 'AUTH_REQUIRED') {
    return `${result.error.message} Sign in again.`;
  }
  return result.error.message;
}

/** The first array in a response body: list routes answer {success, sessions: [...]}, {items: [...]} and so on. */
export function listIn(data, preferred = []) {
  if (Array.isArray(data)) return data;
  if (!data || typeof data !== 'object') return [];
  for (const key of preferred) if (Array.isArray(data[key])) return data[key];
  for (const value of Object.values(data)) if (Array.isArray(value)) return value;
  return [];
}

/** The first value of an object under any of these names. */
export function pick(object, names) {
  if (!object || typeof object !== 'object') return undefined;
  for (const name of names) if (object[name] !== undefined && object[name] !== null) return object[name];
  return undefined;
}

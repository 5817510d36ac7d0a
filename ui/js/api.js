// Talking to the server: the admin API (/v1/admin/*), the stats API (/v1/stats/*) and /health,
// from the same origin that served the page.
//
// The token the user typed is kept in this tab's sessionStorage only (CONTRACT §9): it is gone
// when the tab closes, never written to localStorage or a cookie, and sent only in the
// Authorization header of these calls.

const TOKEN_KEY = 'sluice.token';

export const session = {
  get token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null;  // storage disabled: the user signs in again on each load
    }
  },
  set(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

// An error answer of the API ({"error": {"code", "message", "details"}}), or status 0 when the
// server could not be reached at all.
export class ApiError extends Error {
  constructor(status, code, message, details = [], body = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = Array.isArray(details) ? details : [];
    this.body = body;
  }

  get network() { return this.status === 0; }
  get forbidden() { return this.status === 403 && this.code === 'FORBIDDEN'; }
  get databaseDown() { return this.status === 503 && this.code === 'DATABASE_UNAVAILABLE'; }
  get adminDisabled() { return this.status === 403 && this.code === 'ADMIN_DISABLED'; }
}

// Listeners the app sets: what every call reports, so that one place decides what to show.
export const hooks = {
  onUnauthorized: () => {},  // a 401 on a call made with the session's token
  onReachable: (reachable) => {},  // the server answered (true) or could not be reached (false)
};

// One call. Resolves to {status, data, etag, headers}; rejects with an ApiError for any status
// >= 400 or a network failure. `ifMatch` sends If-Match; `token` overrides the session's.
export async function call(method, path, {body, ifMatch, token, signal} = {}) {
  const headers = {Accept: 'application/json'};
  const bearer = token ?? session.token;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (ifMatch) headers['If-Match'] = ifMatch;
  let res;
  try {
    res = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                             cache: 'no-store', credentials: 'omit', signal});
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    hooks.onReachable(false);
    throw new ApiError(0, 'NETWORK', 'The Sluice server cannot be reached.');
  }
  hooks.onReachable(true);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (res.status >= 400) {
    const err = (data && typeof data === 'object' && data.error) || {};
    const e = new ApiError(res.status, err.code || `HTTP_${res.status}`,
                           err.message || `${res.status} ${res.statusText}`, err.details, data);
    if (res.status === 401 && token === undefined) hooks.onUnauthorized(e);
    throw e;
  }
  return {status: res.status, data, etag: res.headers.get('ETag'), headers: res.headers};
}

const enc = encodeURIComponent;

export const admin = {
  rules: () => call('GET', '/v1/admin/rules'),
  rule: (id) => call('GET', `/v1/admin/rules/${enc(id)}`),
  createRule: (rule) => call('POST', '/v1/admin/rules', {body: rule}),
  replaceRule: (id, rule, ifMatch) => call('PUT', `/v1/admin/rules/${enc(id)}`, {body: rule, ifMatch}),
  deleteRule: (id, ifMatch) => call('DELETE', `/v1/admin/rules/${enc(id)}`, {ifMatch}),
  validateRule: (rule) => call('POST', '/v1/admin/rules:validate', {body: rule}),
  list: (kind) => call('GET', `/v1/admin/lists/${kind}`),
  addEntry: (kind, entry) => call('POST', `/v1/admin/lists/${kind}`, {body: entry}),
  deleteEntry: (kind, id) => call('DELETE', `/v1/admin/lists/${kind}/${enc(id)}`),
  tiers: () => call('GET', '/v1/admin/tiers'),
  setTier: (user, tier) => call('PUT', `/v1/admin/tiers/${enc(user)}`, {body: {tier}}),
  deleteTier: (user) => call('DELETE', `/v1/admin/tiers/${enc(user)}`),
  audit: (limit = 100) => call('GET', `/v1/admin/audit?limit=${limit}`),
  versions: (limit = 100) => call('GET', `/v1/admin/versions?limit=${limit}`),
  restore: (version) => call('POST', `/v1/admin/versions/${enc(version)}/restore`),
};

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : '';
}

export const stats = {
  global: ({window, scope}) => call('GET', `/v1/stats/global${query({window, scope})}`),
  timeline: ({window, scope}) => call('GET', `/v1/stats/timeline${query({window, scope})}`),
  top: ({by, ruleId, window, limit, scope}) =>
    call('GET', `/v1/stats/top${query({by, rule_id: ruleId, window, limit, scope})}`),
  user: (user) => call('GET', `/v1/stats/users/${enc(user)}`),
};

// GET /health: its body whether healthy (200) or not (503); null when unreachable.
export async function health() {
  try {
    const res = await fetch('/health', {cache: 'no-store', credentials: 'omit'});
    hooks.onReachable(true);
    return {status: res.status, data: await res.json()};
  } catch {
    hooks.onReachable(false);
    return null;
  }
}

// What the token may do, asked of the server without changing anything: the admin API checks
// the role before it routes a call (CONTRACT §8), so a write call that names no object — DELETE
// /v1/admin/rules/ with an empty id — is refused 403 FORBIDDEN for a read token and 404 for a
// write token, and never reaches the database. Resolves to 'write' or 'read'; rejects with the
// ApiError of a token that is not accepted (401, 403 ADMIN_DISABLED) or a server that cannot be
// reached.
export async function probeRole(token) {
  try {
    await call('GET', '/v1/admin/rules', {token});
  } catch (e) {
    // A database that is down still checked the token first: the token is good.
    if (!(e instanceof ApiError) || !e.databaseDown) throw e;
  }
  try {
    await call('DELETE', '/v1/admin/rules/', {token});
    return 'write';
  } catch (e) {
    if (e instanceof ApiError && e.forbidden) return 'read';
    if (e instanceof ApiError && !e.network && e.status !== 401) return 'write';
    throw e;
  }
}

// The daemon's API, with the token the user signed in with. The token lives in this tab's
// sessionStorage only: never in a URL sent to the server, never in a cookie.

const TOKEN_KEY = "evercron-token";

export const session = {
  token: null,
  access: "full", // "read-only" with the viewer token: the page hides what it cannot do
  timezone: "UTC", // the daemon's zone: jobs without a timezone fire in it
};

export class Unauthorized extends Error {}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function canChange() {
  return session.access === "full";
}

export function savedToken() {
  // `evercron web` prints a link ending in #token=...: the fragment never reaches a server.
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(history.state, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function keepToken(token) {
  session.token = token;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authorization(extra = {}) {
  return { Authorization: `Bearer ${session.token}`, ...extra };
}

// A fetch with the token; throws Unauthorized on 401 and ApiError with the daemon's
// one-sentence reason on any other failure.
export async function request(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authorization(options.headers) });
  if (response.status === 401) throw new Unauthorized((await errorOf(response)) || "wrong token");
  if (!response.ok) {
    throw new ApiError(response.status, (await errorOf(response)) || `HTTP ${response.status}`);
  }
  return response;
}

// A JSON call: the decoded answer (null for 204).
export async function api(method, path, body = null, signal = undefined) {
  const headers = { Accept: "application/json" };
  if (body !== null) headers["Content-Type"] = "application/json";
  const response = await request(path, {
    method,
    headers,
    signal,
    body: body === null ? undefined : JSON.stringify(body),
  });
  return response.status === 204 ? null : response.json();
}

async function errorOf(response) {
  try {
    return (await response.json()).error;
  } catch {
    return "";
  }
}

export function quoted(name) {
  return encodeURIComponent(name);
}

// Run `action` on each item, a few at a time; the items whose action failed, with why.
export async function eachLimited(items, action, limit = 6) {
  const failures = [];
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const item = items[next++];
      try {
        await action(item);
      } catch (error) {
        if (error instanceof Unauthorized) throw error;
        failures.push([item, error.message]);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return failures;
}

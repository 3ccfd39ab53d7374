// api.js — the engine's HTTP APIs, with the signed-in user's bearer token.
//
// The token lives in sessionStorage (this tab only, gone when it closes; never a
// cookie). A 401 ends the session and sends the user to the login view; other
// errors become an ApiError with the server's message (OperationOutcome or
// {"error","message"}). Network failures become an ApiError with status 0, so a
// view can say "the engine is not answering" and retry later.

const KEY = "holovitals.session";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export const session = {
  get() {
    try { return JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch { return null; }
  },
  set(s) { sessionStorage.setItem(KEY, JSON.stringify(s)); },
  clear() { sessionStorage.removeItem(KEY); },
};

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

function messageOf(status, body) {
  if (body && typeof body === "object") {
    if (body.resourceType === "OperationOutcome" && body.issue && body.issue.length)
      return body.issue.map(i => i.diagnostics || i.code).join("; ");
    if (body.message) return body.message;
    if (body.error_description) return body.error_description;
    if (body.error) return String(body.error);
  }
  return "HTTP " + status;
}

export async function request(method, path, { body, headers, raw } = {}) {
  const s = session.get();
  const h = Object.assign({}, headers || {});
  if (s && s.token) h["Authorization"] = "Bearer " + s.token;
  let payload = body;
  if (body !== undefined && typeof body !== "string" && !(body instanceof Blob)) {
    payload = JSON.stringify(body);
    if (!h["Content-Type"]) h["Content-Type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers: h, body: payload, cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, "the engine is not answering (" + e.message + ")");
  }
  if (resp.status === 401 && s && !path.startsWith("/auth/login")) {
    session.clear();
    onUnauthorized("Your session has ended; please sign in again.");
    throw new ApiError(401, "session ended");
  }
  if (raw) return resp;
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!resp.ok) throw new ApiError(resp.status, messageOf(resp.status, data), data);
  return data;
}

export const get = (p, o) => request("GET", p, o);
export const post = (p, body, o) => request("POST", p, Object.assign({ body }, o || {}));
export const put = (p, body, o) => request("PUT", p, Object.assign({ body }, o || {}));

export async function login(username, password) {
  const r = await request("POST", "/auth/login", { body: { username, password } });
  session.set({ token: r.access_token, refresh: r.refresh_token, role: r.role || "", user: username,
                expires: Date.now() + (r.expires_in || 900) * 1000 });
  return r;
}

export async function logout() {
  try { await request("POST", "/auth/logout"); } catch { /* the session ends here anyway */ }
  session.clear();
}

// Refreshes the access token a minute before it expires (rotation: the server
// gives a new refresh token each time).
export async function keepAlive() {
  const s = session.get();
  if (!s || !s.refresh || Date.now() < s.expires - 60000) return;
  try {
    const r = await request("POST", "/auth/refresh", { body: { refresh_token: s.refresh } });
    session.set(Object.assign(s, { token: r.access_token, refresh: r.refresh_token || s.refresh,
                                   expires: Date.now() + (r.expires_in || 900) * 1000 }));
  } catch { /* the next call answers 401 and the login view opens */ }
}

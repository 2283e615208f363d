// The REST client every page uses: the same /api as any other client, with the
// browser tab's token (sessionStorage: gone when the tab closes) as a bearer.

const TOKEN_KEY = "zerg.token";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }

  // The 422 messages by field name ("schedule"), and the ones no field owns.
  fieldErrors() {
    const byField = {};
    const other = [];
    for (const error of this.problem.errors || []) {
      const [where, field] = error.loc || [];
      if (where === "body" && typeof field === "string") {
        (byField[field] ||= []).push(error.msg);
      } else {
        other.push(error.msg);
      }
    }
    return { byField, other };
  }
}

// Thrown after a 401: the token prompt is showing, the page should stop.
export class AuthRequired extends Error {}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function askForToken() {
  const dialog = document.getElementById("token-dialog");
  if (dialog.open) return;
  const message = document.getElementById("token-message");
  if (token()) {
    message.textContent = "The server refused the token this tab had. Enter the API token again.";
    sessionStorage.removeItem(TOKEN_KEY);
  }
  const form = document.getElementById("token-form");
  form.addEventListener("submit", () => {
    const value = form.elements.token.value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    location.reload();
  });
  dialog.addEventListener("cancel", (event) => event.preventDefault());
  const status = document.getElementById("live-status");
  status.dataset.state = "offline";
  status.textContent = "Signed out";
  dialog.showModal();
}

export async function request(method, path, body, extraHeaders = {}) {
  const headers = { Accept: "application/json", ...extraHeaders };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    askForToken();
    throw new AuthRequired("the API asked for a token");
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const api = {
  get: (path, query) => request("GET", withQuery(path, query)),
  post: (path, body, headers) => request("POST", path, body, headers),
  patch: (path, body) => request("PATCH", path, body),
  delete: (path) => request("DELETE", path),
};

// A fresh Idempotency-Key. Not crypto.randomUUID: that needs a secure context,
// and a server on a LAN address over plain HTTP is not one.
export function newKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// Only the parameters that have a value: the API refuses unknown or empty ones.
export function withQuery(path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, value);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

// Talking to the server: one place adds the session's token and turns error bodies into messages.

const TOKEN_KEY = "dada-token";

/** An error answer of the server: its JSON body names the status, message and parameter. */
export class ServerError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/** A URL for what cannot send headers (EventSource): the token goes as ?token=. */
export function withToken(url) {
  const t = token();
  if (!t) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(t);
}

async function askToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-button").hidden = false;
  input.value = "";
  dialog.showModal();
  const answer = await new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true }));
  if (answer === "ok" && input.value) {
    sessionStorage.setItem(TOKEN_KEY, input.value);
    return true;
  }
  return false;
}

export function initToken() {
  document.getElementById("token-button").addEventListener("click", askToken);
}

/** fetch with the token; a 401 asks the user for a token once and retries. Non-2xx throws ServerError. */
export async function request(url, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const resp = await fetch(url, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
    if (resp.ok) return resp;
    if (resp.status === 401 && attempt === 0 && (await askToken())) continue;
    let body;
    try {
      body = await resp.json();
    } catch {
      body = { message: `HTTP ${resp.status}` };
    }
    throw new ServerError(resp.status, body);
  }
}

export async function getJSON(url, options) {
  return (await request(url, options)).json();
}

// The page's HTTP surface on `parley serve`: config, ephemeral secrets, SDP exchange.
import { BUSY_CODES, ParleyError, busyError } from "./realtime/errors.js";

const params = new URLSearchParams(location.search);

// `?token=…` in the page URL when the server requires an access token.
export function accessToken() {
  return params.get("token") || "";
}

export function pageParam(name) {
  return params.get(name);
}

function headers(extra = {}) {
  const token = accessToken();
  return token ? { ...extra, "X-Parley-Access-Token": token } : extra;
}

async function errorFrom(res, context) {
  let message = `${context} failed (HTTP ${res.status}).`;
  let code = null;
  try {
    const body = await res.json();
    if (body && body.error) {
      message = body.error.message || message;
      code = body.error.code || null;
    }
  } catch {
    /* not JSON */
  }
  const retry = Number(res.headers.get("Retry-After"));
  return { message, code, status: res.status, retryAfter: Number.isFinite(retry) && retry > 0 ? retry : null };
}

function classify(status, code, message, { accessTokenRequired }) {
  const tokenish = /access.?token/i.test(`${code || ""} ${message}`);
  if ((status === 401 || status === 403) && (tokenish || (accessTokenRequired && !accessToken()))) {
    return "access-token";
  }
  if (status === 401 || status === 403 || /auth|api_key|credential/i.test(code || "")) return "auth";
  if (status === 429) return "rate-limit";
  if (status === 502 || status === 503 || status === 504) return "upstream";
  return null;
}

async function request(url, init, context, fallbackKind, cfg = {}) {
  let res;
  try {
    res = await fetch(url, init);
  } catch (cause) {
    throw new ParleyError("network", `Could not reach the Parley server (${context}).`, { cause });
  }
  if (!res.ok) {
    const { message, code, status, retryAfter } = await errorFrom(res, context);
    if (status === 503 && (BUSY_CODES.has(code) || retryAfter)) throw busyError(message, { status, code, retryAfter });
    const kind = classify(status, code, message, cfg) || fallbackKind;
    throw new ParleyError(kind, message, { status, code });
  }
  return res;
}

export async function fetchConfig() {
  const res = await request("/api/config", { headers: headers() }, "Loading the configuration", "server");
  return res.json();
}

// Mint an ephemeral `ek_…` secret carrying the session config.
// `scenario` (a name from /api/config, or "none") makes the server run that scenario for the call.
export async function mintSecret(session, cfg, scenario = undefined) {
  const body = scenario === undefined ? { session } : { session, scenario };
  const res = await request(
    "/api/session",
    { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) },
    "Creating a session",
    "server",
    cfg,
  );
  return res.json();
}

// POST the SDP offer; returns {sdp, callId}.
export async function exchangeSdp(offerSdp, secret, { metrics, ...cfg }) {
  const url = `/api/realtime/calls${metrics ? "?parley_metrics=1" : ""}`;
  const res = await request(
    url,
    {
      method: "POST",
      headers: headers({ "Content-Type": "application/sdp", Authorization: `Bearer ${secret}` }),
      body: offerSdp,
    },
    "The WebRTC handshake",
    "handshake",
    cfg,
  );
  const callId = (res.headers.get("Location") || "").split("/").pop() || null;
  return { sdp: await res.text(), callId };
}

export function websocketUrl({ model, metrics, scenario }) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const q = new URLSearchParams();
  if (model) q.set("model", model);
  if (metrics) q.set("parley_metrics", "1");
  if (scenario !== undefined) q.set("scenario", scenario);
  q.set("parley_events", "1"); // the server's own events (handoffs, guardrails): this page reads them
  const qs = q.toString();
  return `${scheme}://${location.host}/api/realtime/ws${qs ? `?${qs}` : ""}`;
}

export function websocketProtocols() {
  const token = accessToken();
  return token ? ["realtime", `parley-access-token.${token}`] : ["realtime"];
}

// A WebRTC call's parley.* events (handoffs, guardrail trips): the server cannot add them to the
// data channel, so it streams them as JSON lines. Runs until the call ends or `signal` aborts.
export async function followCallEvents(callId, onEvent, signal) {
  let res;
  try {
    res = await fetch(`/api/realtime/calls/${encodeURIComponent(callId)}/events`, { headers: headers(), signal });
  } catch {
    return;
  }
  if (!res.ok || !res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += value;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!line) continue;
        try {
          onEvent(JSON.parse(line));
        } catch {
          /* a line that is not an event */
        }
      }
    }
  } catch {
    /* aborted or the call ended */
  }
}

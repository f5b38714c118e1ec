// Errors the page can explain: each kind maps to a title, a plain message,
// what to do about it, and the actions the banner offers.

export class ParleyError extends Error {
  constructor(kind, message, { status = null, code = null, cause = null, retryAfter = null } = {}) {
    super(message);
    this.name = "ParleyError";
    this.kind = kind;
    this.status = status;
    this.code = code;
    this.cause = cause;
    this.retryAfter = retryAfter; // seconds, when the server said when to come back
  }
}

// A server at capacity (or shutting down) refuses a new session at once and says when to come back:
// HTTP 503 with Retry-After, or an error event before a WebSocket close 1013 "busy, retry in N s".
export const BUSY_CODES = new Set(["session_limit_reached", "server_draining", "upstream_busy"]);

export function retryAfterFrom(text) {
  const m = /retry in (\d+) s/i.exec(text || "");
  return m ? Number(m[1]) : null;
}

export function busyError(message, { status = null, code = null, retryAfter = null } = {}) {
  const wait = retryAfter ?? retryAfterFrom(message) ?? 5;
  return new ParleyError("busy", message, { status, code, retryAfter: wait });
}

const TEXT = {
  "mic-denied": {
    title: "Microphone access is blocked",
    hint: "Allow the microphone for this site (the camera/mic icon in the address bar), then connect again — or continue with text only.",
    actions: ["retry", "text-only"],
  },
  "mic-absent": {
    title: "No microphone found",
    hint: "Plug in a microphone or pick an input device in your system settings, then connect again — or continue with text only.",
    actions: ["retry", "text-only"],
  },
  "mic-busy": {
    title: "The microphone is in use",
    hint: "Another application is holding the microphone. Close it and connect again.",
    actions: ["retry", "text-only"],
  },
  "mic-insecure": {
    title: "Microphone needs a secure page",
    hint: "Browsers only allow the microphone on https:// or http://localhost. Open Parley through one of those.",
    actions: ["text-only"],
  },
  "access-token": {
    title: "Access token required",
    hint: "This server is protected. Open the link you were given, which ends in ?token=…",
    actions: [],
  },
  auth: {
    title: "The voice service refused the server's credentials",
    hint: "The server's API key for its realtime upstream was rejected. Check OPENAI_API_KEY (or --upstream-key) where `parley serve` runs.",
    actions: ["retry"],
  },
  "rate-limit": {
    title: "Too many sessions right now",
    hint: "Wait a moment and try again.",
    actions: ["retry"],
  },
  busy: {
    title: "The server is busy",
    hint: "Every session slot is taken. Parley tries again by itself.",
    actions: ["retry"],
  },
  upstream: {
    title: "The voice service is unavailable",
    hint: "The server could not reach its realtime upstream. Check that it is running and reachable from the server.",
    actions: ["retry"],
  },
  handshake: {
    title: "Could not set up the audio connection",
    hint: "The WebRTC handshake failed. Try again, or switch to the WebSocket transport.",
    actions: ["retry", "websocket"],
  },
  network: {
    title: "Cannot reach the Parley server",
    hint: "Check that `parley serve` is still running and that this page's address is right.",
    actions: ["retry"],
  },
  "connection-lost": {
    title: "Connection lost",
    hint: "The voice session ended unexpectedly. Reconnect to start a new session; the transcript so far is kept.",
    actions: ["reconnect"],
  },
  "session-expired": {
    title: "The session has ended",
    hint: "The session reached its time limit. Reconnect to start a new one.",
    actions: ["reconnect"],
  },
  server: {
    title: "Something went wrong",
    hint: "The server reported an error.",
    actions: ["retry"],
  },
  audio: {
    title: "Audio could not start",
    hint: "The browser refused to start audio processing. Reload the page and try again.",
    actions: ["retry"],
  },
};

export function describe(err) {
  const kind = err instanceof ParleyError ? err.kind : "server";
  const base = TEXT[kind] || TEXT.server;
  return { kind, title: base.title, message: err.message || "", hint: base.hint, actions: base.actions };
}

// getUserMedia failures → ParleyError.
export function micError(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
    return new ParleyError("mic-denied", "The browser did not allow this page to use the microphone.", { cause: err });
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return new ParleyError("mic-absent", "No audio input device is available.", { cause: err });
  }
  if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
    return new ParleyError("mic-busy", "The microphone could not be started.", { cause: err });
  }
  return new ParleyError("mic-denied", `The microphone could not be opened: ${err && err.message}`, { cause: err });
}

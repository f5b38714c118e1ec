// Parley web app: wires the realtime client, the conversation model and the UI.
import { $, $$, h } from "./util/dom.js";
import { fetchConfig, pageParam } from "./api.js";
import { ParleyError } from "./realtime/errors.js";
import { RealtimeClient } from "./realtime/client.js";
import { fullSession, sessionDiff } from "./realtime/session-config.js";
import { AudioGraph } from "./audio/graph.js";
import { Recording } from "./audio/recorder.js";
import { Conversation } from "./conversation.js";
import { TurnMetrics } from "./turns.js";
import { DEFAULT_SETTINGS, serverDefaults } from "./defaults.js";
import { download } from "./download.js";
import { TranscriptView } from "./ui/transcript.js";
import { EventsPanel } from "./ui/events.js";
import { MetricsPanel } from "./ui/metrics.js";
import { SettingsPanel, loadSettings } from "./ui/settings.js";
import { Banner, toast } from "./ui/banner.js";
import { setupTabs } from "./ui/tabs.js";
import { ScenarioUi } from "./ui/scenario.js";

const SESSION_KEYS = new Set(["voice", "speed", "instructions", "turn", "threshold", "silenceMs", "prefixMs", "eagerness", "interrupt", "transcription"]);
const MIC_KEYS = new Set(["echoCancellation", "noiseSuppression", "autoGainControl"]);
const QUIET_ERRORS = new Set(["response_cancel_not_active", "conversation_already_has_active_response"]);
const MAX_AUTO_RECONNECTS = 3;

const app = {
  cfg: null,
  settings: { ...DEFAULT_SETTINGS },
  defaults: { ...DEFAULT_SETTINGS },
  conversation: new Conversation(),
  turns: new TurnMetrics(),
  recording: new Recording(),
  graph: null,
  client: null,
  session: null,
  connectedAt: null,
  connectStartedAt: null,
  sessions: 0,
  reconnects: 0,
  lastError: null,
  pendingUpdate: null,
};
window.parley = app; // for tests, benchmarks and curious developers

const el = {
  status: $("#status-pill"),
  statusText: $("#status-text"),
  connect: $("#connect-btn"),
  presence: $("#presence"),
  mute: $("#mute-btn"),
  ptt: $("#ptt-btn"),
  stop: $("#stop-btn"),
  input: $("#composer-input"),
  send: $("#send-btn"),
  modeChip: $("#mode-chip"),
  micMeter: $("#mic-meter"),
  outMeter: $("#out-meter"),
  audio: $("#remote-audio"),
};

const banner = new Banner({
  retry: () => connect(),
  reconnect: () => connect({ reconnect: true }),
  websocket: () => {
    app.settingsPanel.update("transport", "websocket");
    connect();
  },
  "text-only": () => connect({ textOnly: true }),
});

// ------------------------------------------------------------------ status

function setStatus(state, text, detail = "") {
  el.status.dataset.state = state;
  el.statusText.replaceChildren(text, detail ? h("span", { class: "status-detail" }, ` · ${detail}`) : "");
}

function setPresence(state, text) {
  el.presence.dataset.state = state;
  el.presence.textContent = text;
}

function idlePresence() {
  const c = app.client;
  if (!c || !c.connected) return setPresence("off", "Not connected");
  if (c.assistantSpeaking) {
    const how = app.settings.turn === "push_to_talk" ? "hold to interrupt" : "talk to interrupt";
    return setPresence("speaking", `Parley is speaking — ${how}`);
  }
  if (c.activeResponse) return setPresence("thinking", "Thinking…");
  if (c.textOnly) return setPresence("listening", "Text only — type a message");
  if (c.userMuted) return setPresence("muted", "Microphone muted");
  if (app.settings.turn === "push_to_talk") return setPresence("listening", c.ptt ? "Listening… release to send" : "Hold to talk");
  return setPresence("listening", "Listening");
}

function refreshControls() {
  const state = app.client ? app.client.state : "idle";
  const connected = state === "connected";
  const label = el.connect.querySelector(".label");
  el.connect.classList.toggle("btn-primary", state === "idle");
  el.connect.classList.toggle("btn-danger", state !== "idle");
  label.textContent = state === "idle" ? (app.sessions ? "Reconnect" : "Connect") : state === "connecting" ? "Cancel" : "Disconnect";
  el.connect.setAttribute("aria-label", label.textContent);
  const ptt = app.settings.turn === "push_to_talk";
  const hasMic = connected && !app.client.textOnly;
  el.mute.disabled = !hasMic;
  el.ptt.hidden = !ptt;
  el.ptt.disabled = !hasMic || (app.client && app.client.userMuted);
  el.input.disabled = !connected;
  el.send.disabled = !connected;
  el.input.placeholder = connected ? "Type a message…" : "Connect to send a message";
  el.modeChip.textContent = { server_vad: "Hands-free", semantic_vad: "Hands-free · semantic", push_to_talk: "Push to talk" }[app.settings.turn];
  el.stop.disabled = !(connected && (app.client.assistantSpeaking || app.client.activeResponse));
  if (connected) {
    $("#empty-title").textContent = "Say something";
    $("#empty-text").textContent = app.client.textOnly
      ? "Type a message below to start the conversation."
      : ptt
        ? "Hold the talk button (or the space bar) while you speak, then let go. You can also type below."
        : "Parley is listening. Ask anything — or type a message below. Talk over Parley any time to interrupt.";
  }
  if (state === "idle" && el.status.dataset.state !== "error") setStatus("idle", "Disconnected");
  if (state === "connecting") setStatus("connecting", "Connecting…");
  if (connected && app.client.transport) setStatus("connected", "Connected", app.client.transport.kind === "webrtc" ? "WebRTC" : "WebSocket");
  if (app.scenario) app.scenario.setConnected(state !== "idle");
  idlePresence();
}

// ------------------------------------------------------------------ connect

async function connect({ textOnly = false, reconnect = false } = {}) {
  if (app.client && app.client.state !== "idle") return;
  banner.hide();
  clearTimeout(app.reconnectTimer);
  if (!app.cfg) {
    try {
      await loadConfig();
    } catch (err) {
      showError(err);
      return;
    }
  }
  app.connectStartedAt = performance.now();
  if (app.sessions === 0) app.events.setOrigin(app.connectStartedAt); // event times count from the first connect
  setStatus("connecting", "Connecting…");
  try {
    if (!app.graph) app.graph = (await app.graphReady) || (await AudioGraph.create(app.recording));
    if (!app.client) createClient();
    app.client.textOnly = textOnly;
    refreshControls();
    const s = app.settings;
    await app.client.connect({
      transport: s.transport,
      session: fullSession(s, app.cfg),
      processing: { echoCancellation: s.echoCancellation, noiseSuppression: s.noiseSuppression, autoGainControl: s.autoGainControl },
      textOnly,
      cfg: app.cfg,
      scenario: app.scenario.chosen,
    });
  } catch (err) {
    if (err instanceof ParleyError && err.kind === "cancelled") {
      setStatus("idle", "Disconnected");
      refreshControls();
      return;
    }
    console.warn("connect failed", err);
    showError(err);
    refreshControls();
    if (err instanceof ParleyError && err.kind === "busy") retryWhenFree(err.retryAfter);
    return;
  }
  app.connectedAt = performance.now();
  if (app.sessions > 0 || reconnect) app.conversation.divider(`New session · ${new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`);
  app.sessions++;
  app.reconnects = 0;
  app.settingsPanel.setApplied("ok", "In effect");
  refreshControls();
  if (!textOnly && app.settings.turn !== "push_to_talk") el.input.blur();
}

function disconnect() {
  clearTimeout(app.reconnectTimer);
  banner.hide();
  if (app.client) app.client.disconnect();
}

function showError(err) {
  const kind = err instanceof ParleyError ? err.kind : "server";
  const label = kind.startsWith("mic") ? "Microphone unavailable" : kind === "connection-lost" ? "Connection lost" : kind === "busy" ? "Busy" : "Couldn't connect";
  setStatus("error", label);
  banner.error(err);
}

// The server is full (or this node is shutting down): "busy, retry in N s", counted down, then
// one more try; after a few in a row the banner's button is left to the user.
function retryWhenFree(seconds) {
  const wait = Math.max(1, Math.round(seconds || 5));
  if (app.reconnects >= MAX_AUTO_RECONNECTS) {
    banner.countdown(0, () => {}, () => `Busy. Try again in a while.`);
    return;
  }
  app.reconnects++;
  banner.countdown(wait, () => connect({ reconnect: true }), (left) => `Busy, retry in ${left} s…`);
}

function createClient() {
  const c = (app.client = new RealtimeClient({ graph: app.graph, audioElement: el.audio }));
  c.on("state", refreshControls);
  c.on("log", (entry) => app.events.add(entry));
  c.on("session", (session) => {
    app.session = session;
    if (app.pendingUpdate) {
      app.pendingUpdate = null;
      app.settingsPanel.setApplied("ok", "Applied");
    }
  });
  c.on("server", onServerEvent);
  c.on("assistant-audio", ({ itemId, responseId, t, approx }) => {
    const rid = responseId || app.conversation.responseOf(itemId);
    app.turns.firstAudio(rid, t, approx);
  });
  c.on("assistant-speaking", refreshControls);
  c.on("barge-in", ({ t, via }) => app.turns.bargeInStarted(t, via));
  c.on("silenced", ({ t }) => app.turns.silenced(t));
  c.on("ptt", ({ active, tooShort }) => {
    el.ptt.dataset.active = String(active);
    el.ptt.querySelector(".ptt-label").textContent = active ? "Listening…" : "Hold to talk";
    if (tooShort) toast("Hold the button (or Space) while you speak");
    idlePresence();
  });
  c.on("ptt-commit", ({ t }) => app.turns.pushToTalkReleased(t));
  c.on("autoplay-blocked", () => {
    toast("Click anywhere to hear Parley", 6000);
    const unlock = () => {
      el.audio.play().catch(() => {});
      if (app.graph) app.graph.resume();
    };
    document.addEventListener("pointerdown", unlock, { once: true });
    document.addEventListener("keydown", unlock, { once: true });
  });
  c.on("closed", ({ unexpected, reason, code }) => {
    refreshControls();
    if (!unexpected) {
      setStatus("idle", "Disconnected");
      return;
    }
    const recent = app.lastError && performance.now() - app.lastError.t < 3000 ? app.lastError.error : null;
    if ((recent && recent.code === "session_expired") || code === 1001) {
      // "Going away": the session ran its course; a new one starts at once, as openai-python does.
      showError(new ParleyError("session-expired", recent ? recent.message : reason || "The session ended."));
      banner.countdown(1, () => connect({ reconnect: true }));
      return;
    }
    showError(new ParleyError("connection-lost", recent ? recent.message : reason || "The connection to the server closed."));
    // A policy (1008) or size (1009) close would only happen again.
    if (code === 1008 || code === 1009) return;
    if (app.reconnects < MAX_AUTO_RECONNECTS) {
      const wait = 2 ** app.reconnects * 3;
      app.reconnects++;
      banner.countdown(wait, () => connect({ reconnect: true }));
    }
  });
}

function onServerEvent(ev) {
  const t = performance.now();
  app.conversation.handle(ev);
  switch (ev.type) {
    case "input_audio_buffer.speech_started":
      setPresence("user", "You're speaking…");
      break;
    case "input_audio_buffer.speech_stopped": {
      const td = app.session && app.session.audio && app.session.audio.input.turn_detection;
      const wait = td && td.type === "server_vad" ? Number(td.silence_duration_ms) || 0 : 0;
      app.turns.speechStopped(ev.item_id, t, wait);
      setPresence("thinking", "Thinking…");
      break;
    }
    case "response.created":
      app.turns.responseCreated(ev.response.id, t);
      if (!app.client.assistantSpeaking) setPresence("thinking", "Thinking…");
      refreshControls();
      break;
    case "response.done":
      app.turns.responseDone(ev.response.id, ev.response.status);
      refreshControls();
      if (!app.client.assistantSpeaking) idlePresence();
      break;
    case "parley.metrics":
      app.turns.stageMetrics(ev);
      break;
    case "parley.agent":
    case "parley.handoff":
    case "parley.supervisor":
    case "parley.guardrail":
      app.scenario.handle(ev);
      break;
    case "error": {
      const err = ev.error || {};
      app.lastError = { t, error: err };
      if (app.pendingUpdate && err.event_id && err.event_id === app.pendingUpdate) {
        app.pendingUpdate = null;
        app.settingsPanel.setApplied("error", err.message || "Not applied");
      } else if (!QUIET_ERRORS.has(err.code)) {
        toast(err.message || "The server reported an error", 4000);
      }
      break;
    }
    default:
      break;
  }
}

// ------------------------------------------------------------------ settings

function onSettingsChange({ settings, prev, key }) {
  app.settings = settings;
  const c = app.client;
  if (SESSION_KEYS.has(key) && c && c.connected) {
    const diff = sessionDiff(prev, settings, app.cfg);
    if (diff) {
      app.pendingUpdate = c.update(diff);
      app.settingsPanel.setApplied("pending", "Applying…");
    }
  }
  if (MIC_KEYS.has(key) && c && c.mic && c.connected) {
    c.reopenMic(settings).then(
      () => toast("Microphone restarted with the new setting"),
      (err) => showError(err),
    );
  }
  if (key === "transport" && c && c.state !== "idle") toast("The new transport is used the next time you connect");
  refreshControls();
}

// ------------------------------------------------------------------ controls

function bindControls() {
  el.connect.addEventListener("click", () => {
    if (!app.client || app.client.state === "idle") connect({ reconnect: app.sessions > 0 });
    else disconnect();
  });
  el.mute.addEventListener("click", () => {
    const c = app.client;
    if (!c) return;
    c.setMuted(!c.userMuted);
    el.mute.setAttribute("aria-pressed", String(c.userMuted));
    el.mute.setAttribute("aria-label", c.userMuted ? "Unmute microphone" : "Mute microphone");
    el.mute.title = c.userMuted ? "Unmute microphone" : "Mute microphone";
    refreshControls();
  });
  el.stop.addEventListener("click", () => app.client && app.client.interrupt("stop button"));

  const pttDown = (e) => {
    if (el.ptt.disabled || !app.client) return;
    e.preventDefault();
    if (e.pointerId !== undefined) el.ptt.setPointerCapture(e.pointerId);
    app.client.pttStart();
  };
  const pttUp = () => app.client && app.client.pttEnd();
  el.ptt.addEventListener("pointerdown", pttDown);
  el.ptt.addEventListener("pointerup", pttUp);
  el.ptt.addEventListener("pointercancel", pttUp);
  el.ptt.addEventListener("lostpointercapture", pttUp);
  const typing = (t) => t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  document.addEventListener("keydown", (e) => {
    if (e.code !== "Space" || e.repeat || typing(e.target)) return;
    if (app.settings.turn !== "push_to_talk" || el.ptt.disabled) return;
    e.preventDefault();
    app.client.pttStart();
  });
  document.addEventListener("keydown", (e) => {
    // Escape stops the assistant (when no menu is open).
    if (e.key === "Escape" && $("#download-menu").hidden && app.client && !el.stop.disabled) app.client.interrupt("escape key");
  });
  document.addEventListener("keyup", (e) => {
    if (e.code !== "Space" || typing(e.target)) return;
    if (app.client && app.client.ptt) {
      e.preventDefault();
      app.client.pttEnd();
    }
  });

  $("#composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = el.input.value.trim();
    if (!text || !app.client) return;
    const t = performance.now();
    if (app.client.sendText(text)) {
      app.turns.textSent(t);
      el.input.value = "";
    }
  });

  const menuBtn = $("#download-btn");
  const menu = $("#download-menu");
  const closeMenu = () => {
    menu.hidden = true;
    menuBtn.setAttribute("aria-expanded", "false");
  };
  menuBtn.addEventListener("click", () => {
    menu.hidden = !menu.hidden;
    menuBtn.setAttribute("aria-expanded", String(!menu.hidden));
    if (!menu.hidden) menu.querySelector("button").focus();
  });
  menu.addEventListener("keydown", (e) => {
    const items = $$("button", menu);
    const i = items.indexOf(document.activeElement);
    if (e.key === "Escape") {
      closeMenu();
      menuBtn.focus();
    } else if (e.key === "ArrowDown") {
      e.preventDefault();
      items[(i + 1) % items.length].focus();
    } else if (e.key === "ArrowUp") {
      e.preventDefault();
      items[(i - 1 + items.length) % items.length].focus();
    }
  });
  document.addEventListener("click", (e) => {
    if (!menu.hidden && !e.target.closest(".menu")) closeMenu();
  });
  menu.addEventListener("click", async (e) => {
    const b = e.target.closest("[data-download]");
    if (!b) return;
    closeMenu();
    const kind = b.dataset.download;
    if (kind === "wav") {
      if (app.graph) {
        app.graph.flushRecording();
        await new Promise((r) => setTimeout(r, 150));
      }
      if (app.recording.empty) {
        toast("Nothing recorded yet");
        return;
      }
    }
    download(kind, {
      conversation: app.conversation,
      turns: app.turns,
      session: app.session,
      upstream: app.cfg && app.cfg.upstream,
      settings: app.settings,
      recording: app.recording,
    });
  });

  $("#clear-btn").addEventListener("click", () => {
    app.conversation.clear();
    app.turns.clear();
    app.recording.clear();
    toast("Conversation cleared");
  });
}

// Level meters: one animation loop for both.
function meterLoop() {
  let frame = 0;
  const micBar = el.micMeter.firstElementChild;
  const outBar = el.outMeter.firstElementChild;
  const tick = () => {
    const g = app.graph;
    const live = app.client && app.client.state === "connected";
    const mic = g && live ? g.micMeter.level() : 0;
    const out = g && live ? g.outMeter.level() : 0;
    micBar.style.transform = `scaleX(${mic.toFixed(3)})`;
    outBar.style.transform = `scaleX(${out.toFixed(3)})`;
    el.mute.style.setProperty("--level", mic.toFixed(3));
    if (++frame % 15 === 0) {
      el.micMeter.setAttribute("aria-valuenow", String(Math.round(mic * 100)));
      el.outMeter.setAttribute("aria-valuenow", String(Math.round(out * 100)));
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

// ------------------------------------------------------------------ start

async function loadConfig() {
  app.cfg = await fetchConfig();
  const up = app.cfg.upstream || {};
  const chip = $("#upstream-chip");
  chip.textContent = [up.label || up.kind, app.cfg.model].filter(Boolean).join(" · ");
  chip.title = up.kind === "local" ? "Running on this machine with local models" : `Realtime upstream: ${up.label || up.kind}`;
  app.metrics.setStageMetrics(Boolean(app.cfg.features && app.cfg.features.stage_metrics));
  app.scenario.load(app.cfg);
}

async function main() {
  // Load the audio worklets while the page sets up; the context resumes on Connect.
  app.graphReady = AudioGraph.create(app.recording).catch(() => null);
  app.transcript = new TranscriptView($("#transcript"), app.conversation, app.turns, {
    transcriptionOn: () => Boolean(app.session ? app.session.audio && app.session.audio.input.transcription : app.settings.transcription),
  });
  app.scenario = new ScenarioUi({ select: $("#scenario-select"), chip: $("#agent-chip"), conversation: app.conversation });
  app.events = new EventsPanel($("#panel-events"), { onCount: (n) => ($("#events-count").textContent = n > 9999 ? `${Math.floor(n / 1000)}k` : String(n)) });
  app.metrics = new MetricsPanel($("#panel-metrics"), app.turns);
  setupTabs($(".tabs"));
  bindControls();
  meterLoop();

  let cfgError = null;
  try {
    await loadConfig();
  } catch (err) {
    cfgError = err;
    $("#upstream-chip").textContent = "offline";
  }
  app.defaults = serverDefaults(app.cfg);
  app.settings = loadSettings(app.defaults);
  app.settingsPanel = new SettingsPanel($("#panel-settings"), { settings: app.settings, defaults: app.defaults, voices: app.cfg && app.cfg.voices });
  app.settingsPanel.on("change", onSettingsChange);
  refreshControls();
  app.readyAt = performance.now();
  if (cfgError) showError(cfgError);
  else if (pageParam("connect") === "1") connect();
  document.body.dataset.ready = "true";
}

main();

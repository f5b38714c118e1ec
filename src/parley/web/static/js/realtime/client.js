// One voice session: a transport (WebRTC or WebSocket), the microphone, the
// assistant's audio, and the client-side duties of the protocol:
//   * session.update on connect, waiting for session.updated;
//   * over WebSocket: mic → input_audio_buffer.append, output_audio.delta → player,
//   * barge-in (by voice or by hand): the duties of barge-in.js — stop playback at once,
//     conversation.item.truncate(played ms) over WebSocket, response.cancel (with its id) and
//     output_audio_buffer.clear (WebRTC) when the server does not stop the response itself;
//   * push-to-talk: clear on press, commit + response.create on release.
import { Emitter } from "../util/emitter.js";
import { fetchConfig, followCallEvents, mintSecret } from "../api.js";
import { BUSY_CODES, ParleyError, busyError } from "./errors.js";
import { WebRtcTransport } from "./webrtc.js";
import { WebSocketTransport } from "./websocket.js";
import { ActivityDetector } from "../audio/activity.js";
import { bargeInDuties, serverInterrupts } from "./barge-in.js";
import { openMicrophone, setMuted, stopStream } from "../audio/mic.js";

const UPDATE_TIMEOUT_MS = 5000;
const PTT_MIN_MS = 250;
const AUTH_HINT = /api[\s_-]?key|authenticat|unauthori[sz]ed|401|forbidden|credential/i;

let seq = 0;
const eventId = () => `evt_p${(++seq).toString(36)}${Math.random().toString(36).slice(2, 8)}`;

function b64encode(buf) {
  const bytes = new Uint8Array(buf);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function b64decodeInt16(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length & ~1);
  for (let i = 0; i < bytes.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Int16Array(bytes.buffer);
}

export class RealtimeClient extends Emitter {
  constructor({ graph, audioElement }) {
    super();
    this.graph = graph;
    this.audioEl = audioElement;
    this.transport = null;
    this.state = "idle";
    this.mic = null;
    this.session = null; // effective session (session.created / session.updated)
    this.activeResponse = null;
    this.lastResponse = null;
    this.userMuted = false;
    this.ptt = null;
    this.pushToTalk = false;
    this.assistantSpeaking = false;
    this.outputBuffer = false; // WebRTC: between output_audio_buffer.started and stopped/cleared
    this.cutItems = new Set();
    this.heardResponses = new Set();
    this.activity = null;
    this.updateWaiters = [];
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
  }

  get connected() {
    return this.state === "connected";
  }

  // ------------------------------------------------------------------ connect

  async connect({ transport, session, processing, textOnly = false, cfg, scenario = undefined }) {
    this.setState("connecting");
    const mark = (name) => (this.timeline[name] = performance.now());
    // Disconnect (Cancel) while connecting ends the attempt at its next step.
    const alive = () => {
      if (this.state !== "connecting") throw new ParleyError("cancelled", "Connecting was cancelled.");
    };
    this.timeline = {};
    mark("start");
    this.pushToTalk = session.audio.input.turn_detection === null;
    const metrics = Boolean(cfg.features && cfg.features.stage_metrics);
    // Mint the WebRTC secret while the microphone opens.
    const minting =
      transport === "websocket" ? null : mintSecret(session, { accessTokenRequired: cfg.access_token_required }, scenario);
    minting?.catch(() => {}); // awaited below; avoid an unhandled rejection if the mic fails first
    try {
      await this.graph.resume();
      if (this.graph.ctx.state !== "running") this.emit("autoplay-blocked");
      if (!textOnly) {
        this.mic = await openMicrophone(processing);
        this.micOpenedAt = mark("mic");
        alive();
        this.graph.attachMic(this.mic);
        this.applyMute();
      }
      if (transport === "websocket") await this.connectWebSocket({ session, cfg, metrics, scenario });
      else await this.connectWebRtc({ minting, cfg, metrics });
      alive();
      mark("open");
      const updated = this.waitUpdated();
      this.send({ type: "session.update", session });
      await updated;
      mark("updated");
      if (this.transport.kind === "websocket" && this.mic) {
        this.graph.startCapture((msg) => this.onCapture(msg));
      }
      this.setState("connected");
    } catch (err) {
      const cancelled = this.state !== "connecting"; // disconnect() was called meanwhile
      this.teardown();
      this.setState("idle");
      throw cancelled ? new ParleyError("cancelled", "Connecting was cancelled.") : err;
    }
  }

  async connectWebRtc({ minting, cfg, metrics }) {
    const minted = await minting;
    this.timeline.secret = performance.now();
    const secret = minted.value || (minted.client_secret && minted.client_secret.value);
    if (!secret) throw new ParleyError("server", "The server did not return a session secret.");
    const t = (this.transport = new WebRtcTransport());
    t.on("message", (ev) => this.onServerEvent(ev));
    t.on("closed", (info) => this.onLost(info));
    t.on("track", (stream) => {
      this.audioEl.srcObject = stream;
      this.audioEl.play().catch((err) => {
        // Autoplay blocked (e.g. ?connect=1 without a click): resume on the first gesture.
        if (err && err.name === "NotAllowedError") this.emit("autoplay-blocked");
      });
      this.graph.attachRemote(stream);
      this.startActivity();
    });
    await t.connect({ micStream: this.mic, secret, metrics, cfg: { accessTokenRequired: cfg.access_token_required } });
    if (minted.scenario && t.callId) {
      // The call's scenario runs on the server; its handoffs and guardrail trips come from there.
      this.callEvents = new AbortController();
      followCallEvents(t.callId, (ev) => this.onServerEvent(ev), this.callEvents.signal);
    }
  }

  async connectWebSocket({ session, cfg, metrics, scenario }) {
    const t = (this.transport = new WebSocketTransport());
    t.on("message", (ev) => this.onServerEvent(ev));
    t.on("closed", (info) => this.onLost(info));
    const player = this.graph.createPlayer();
    player.on("started", ({ id, t: at }) => {
      if (this.cutItems.has(id)) return;
      this.setAssistantSpeaking(true);
      this.emit("assistant-audio", { itemId: id, t: at, approx: false });
    });
    player.on("idle", () => this.setAssistantSpeaking(false));
    this.startActivity();
    try {
      await t.connect({ model: cfg.model, metrics, scenario });
    } catch (err) {
      throw await this.diagnose(err, cfg);
    }
  }

  // A refused WebSocket tells the page nothing; ask the HTTP API what is wrong.
  async diagnose(err, cfg) {
    try {
      const fresh = await fetchConfig();
      await mintSecret({ type: "realtime" }, { accessTokenRequired: fresh.access_token_required });
    } catch (e) {
      if (e instanceof ParleyError) return e;
    }
    if (cfg.access_token_required) return new ParleyError("access-token", err.message);
    return err;
  }

  waitUpdated() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.updateWaiters = this.updateWaiters.filter((w) => w.resolve !== resolve);
        resolve(null); // proceed anyway, like the official SDK
      }, UPDATE_TIMEOUT_MS);
      this.updateWaiters.push({
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  startActivity() {
    if (this.activity) this.activity.stop();
    this.activity = new ActivityDetector(this.graph.outMeter);
    this.activity.on("audible", ({ t }) => {
      if (this.transport && this.transport.kind === "webrtc") {
        this.setAssistantSpeaking(true);
        const rid = this.activeResponse || this.lastResponse;
        if (rid && !this.heardResponses.has(rid)) {
          this.heardResponses.add(rid);
          this.emit("assistant-audio", { responseId: rid, t, approx: false });
        }
      }
    });
    this.activity.on("silent", ({ t }) => {
      this.emit("assistant-silent", { t });
      if (this.transport && this.transport.kind === "webrtc") this.setAssistantSpeaking(false);
    });
  }

  setAssistantSpeaking(on) {
    if (this.assistantSpeaking === on) return;
    this.assistantSpeaking = on;
    this.emit("assistant-speaking", on);
  }

  // ------------------------------------------------------------------ events

  send(event) {
    if (!this.transport) return null;
    const ev = event.event_id ? event : { event_id: eventId(), ...event };
    if (this.transport.send(ev)) {
      this.emit("log", { dir: "out", event: ev, t: performance.now() });
      return ev.event_id;
    }
    return null;
  }

  onCapture(msg) {
    if (msg.flushed && this.flushWaiter) {
      this.flushWaiter();
      this.flushWaiter = null;
    }
    if (!msg.pcm || !msg.pcm.byteLength || !this.connected) return;
    this.send({ type: "input_audio_buffer.append", audio: b64encode(msg.pcm) });
  }

  onServerEvent(ev) {
    const t = performance.now();
    this.emit("log", { dir: "in", event: ev, t });
    switch (ev.type) {
      case "session.created":
        this.session = ev.session;
        this.emit("session", ev.session);
        break;
      case "session.updated": {
        this.session = ev.session;
        this.emit("session", ev.session);
        const w = this.updateWaiters.shift();
        if (w) w.resolve(ev.session);
        break;
      }
      case "error": {
        const err = ev.error || {};
        if (this.state === "connecting" && this.updateWaiters.length) {
          const waiter = this.updateWaiters.shift();
          // A full or draining server: an error event, then close 1013 "busy, retry in N s".
          if (BUSY_CODES.has(err.code)) waiter.reject(busyError(err.message || "Busy.", { code: err.code }));
          else {
            const kind = AUTH_HINT.test(`${err.code || ""} ${err.message || ""}`) ? "auth" : "server";
            waiter.reject(new ParleyError(kind, err.message || "The session was refused.", { code: err.code }));
          }
        }
        break;
      }
      case "response.created":
        this.activeResponse = ev.response.id;
        this.lastResponse = ev.response.id;
        break;
      case "response.done":
        if (this.activeResponse === ev.response.id) this.activeResponse = null;
        break;
      case "response.output_audio.delta":
        if (this.graph.player && !this.cutItems.has(ev.item_id)) {
          this.graph.player.push(ev.item_id, b64decodeInt16(ev.delta));
        }
        break;
      case "input_audio_buffer.speech_started":
        this.onSpeechStarted(t);
        break;
      case "output_audio_buffer.started":
        this.outputBuffer = true;
        if (ev.response_id && !this.heardResponses.has(ev.response_id)) {
          // Fallback if the analyser never hears it (e.g. muted output): approximate.
          const rid = ev.response_id;
          setTimeout(() => {
            if (!this.heardResponses.has(rid) && this.connected) {
              this.heardResponses.add(rid);
              this.emit("assistant-audio", { responseId: rid, t, approx: true });
            }
          }, 2000);
        }
        break;
      case "output_audio_buffer.stopped":
      case "output_audio_buffer.cleared":
        this.outputBuffer = false;
        break;
      case "conversation.item.truncated":
        // Ask what the user heard: the server trims the transcript to the played audio.
        this.send({ type: "conversation.item.retrieve", item_id: ev.item_id });
        break;
      default:
        break;
    }
    this.emit("server", ev);
  }

  assistantAudible() {
    if (!this.transport) return false;
    if (this.transport.kind === "websocket") return Boolean(this.graph.player && this.graph.player.playing);
    return this.assistantSpeaking || this.outputBuffer;
  }

  bargeInDuties(voice, audible) {
    return bargeInDuties({
      voice,
      serverInterrupts: serverInterrupts(this.session),
      overWebRtc: this.transport.kind !== "websocket",
      audible,
      active: Boolean(this.activeResponse),
    });
  }

  // What the barge-in table asks of us, after local playback stopped (or not).
  async performDuties(todo) {
    if (todo.cancel) this.send({ type: "response.cancel", response_id: this.activeResponse });
    if (todo.truncate) await this.stopPlaybackAndTruncate();
    if (todo.clear) this.send({ type: "output_audio_buffer.clear" });
  }

  // The assistant stopped being audible after a barge-in at t (WebRTC: measured on its audio).
  watchSilence(t) {
    if (!this.activity || this.transport.kind !== "webrtc") return;
    this.activity.watchSilence(t).then((end) => end !== null && this.emit("silenced", { t: end }));
  }

  onSpeechStarted(t) {
    const audible = this.assistantAudible();
    if (audible) {
      this.emit("barge-in", { t, via: "voice" });
      this.watchSilence(t);
    }
    // WebSocket: the server cannot know what was played, so we truncate. WebRTC with a server
    // that interrupts: it flushes its output and truncates by itself (output_audio_buffer.cleared).
    this.performDuties(this.bargeInDuties(true, audible));
  }

  async stopPlaybackAndTruncate() {
    const player = this.graph.player;
    if (!player) return;
    const r = await player.flush();
    this.setAssistantSpeaking(false);
    this.emit("silenced", { t: r.t });
    if (r.id) {
      this.cutItems.add(r.id);
      const played = Math.min(r.playedMs, Math.floor(player.receivedMs(r.id)));
      this.send({ type: "conversation.item.truncate", item_id: r.id, content_index: 0, audio_end_ms: played });
    }
  }

  // Stop the assistant now (push-to-talk press, or the Stop button).
  async interrupt(via = "manual") {
    if (!this.connected) return;
    const t = performance.now();
    const audible = this.assistantAudible();
    if (audible) {
      this.emit("barge-in", { t, via });
      this.watchSilence(t);
    }
    await this.performDuties(this.bargeInDuties(false, audible));
  }

  // ------------------------------------------------------------------ controls

  applyMute() {
    const pttClosed = this.pushToTalk && !this.ptt;
    setMuted(this.mic, this.userMuted || pttClosed);
  }

  // New echo cancellation / noise suppression / gain settings: browsers apply these
  // when the device opens, so open it again and swap the track in place.
  async reopenMic(processing) {
    if (!this.mic || !this.connected) return false;
    const fresh = await openMicrophone(processing);
    const track = fresh.getAudioTracks()[0];
    if (this.transport.kind === "webrtc") {
      const sender = this.transport.pc.getSenders().find((s) => s.track && s.track.kind === "audio");
      if (sender) await sender.replaceTrack(track);
    }
    const old = this.mic;
    this.mic = fresh;
    this.graph.attachMic(fresh);
    this.applyMute();
    stopStream(old);
    return true;
  }

  setMuted(muted) {
    this.userMuted = muted;
    this.applyMute();
  }

  setPushToTalk(on) {
    this.pushToTalk = on;
    this.applyMute();
  }

  async pttStart() {
    if (!this.connected || this.ptt) return;
    this.ptt = { t: performance.now() };
    this.applyMute();
    this.emit("ptt", { active: true });
    await this.interrupt("push-to-talk");
    this.send({ type: "input_audio_buffer.clear" });
  }

  async pttEnd() {
    const ptt = this.ptt;
    if (!ptt) return;
    const t = performance.now();
    const held = t - ptt.t;
    if (held < PTT_MIN_MS) {
      this.ptt = null;
      this.applyMute();
      this.send({ type: "input_audio_buffer.clear" });
      this.emit("ptt", { active: false, tooShort: true });
      return;
    }
    this.emit("ptt", { active: false, committing: true });
    if (this.transport.kind === "websocket" && this.graph.capture) {
      // Send the last partial chunk before committing.
      await new Promise((resolve) => {
        this.flushWaiter = resolve;
        this.graph.capture.port.postMessage({ type: "flush" });
        setTimeout(resolve, 150);
      });
    } else {
      await new Promise((r) => setTimeout(r, 200)); // the last RTP packets are still in flight
    }
    this.ptt = null;
    this.applyMute();
    if (!this.connected) return;
    this.send({ type: "input_audio_buffer.commit" });
    this.send({ type: "response.create" });
    this.emit("ptt-commit", { t });
  }

  sendText(text) {
    if (!this.connected || !text.trim()) return false;
    if (this.assistantAudible() || this.activeResponse) this.interrupt("text");
    this.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
    });
    this.send({ type: "response.create" });
    return true;
  }

  update(session) {
    if (!this.connected) return null;
    if (session.audio && session.audio.input && "turn_detection" in session.audio.input) {
      this.setPushToTalk(session.audio.input.turn_detection === null);
    }
    return this.send({ type: "session.update", session });
  }

  async stats() {
    const base = this.transport ? await this.transport.stats() : null;
    return {
      transport: this.transport ? this.transport.kind : null,
      state: this.state,
      ...base,
      assistantPeakRms: this.activity ? this.activity.peak : 0,
      assistantRms: this.activity ? this.activity.lastRms : 0,
      micRms: this.graph.micMeter.rms(),
      assistantSpeaking: this.assistantSpeaking,
    };
  }

  // ------------------------------------------------------------------ teardown

  onLost(info) {
    if (this.state === "idle") return;
    if (this.state === "connecting") {
      this.teardown(info.reason, "handshake"); // connect() rejects and cleans up
      return;
    }
    this.teardown(info.reason);
    this.setState("idle");
    this.emit("closed", { unexpected: true, reason: info.reason, code: info.code });
  }

  disconnect() {
    if (this.state === "idle") return;
    const connecting = this.state === "connecting";
    this.setState("idle"); // a pending connect() sees this and reports "cancelled"
    this.teardown("Connecting was cancelled.", "cancelled");
    if (!connecting) this.emit("closed", { unexpected: false });
  }

  teardown(reason, kind = "connection-lost") {
    if (this.callEvents) {
      this.callEvents.abort();
      this.callEvents = null;
    }
    for (const w of this.updateWaiters) w.reject(new ParleyError(kind, reason || "The connection closed."));
    this.updateWaiters = [];
    if (this.transport) {
      this.transport.close();
      this.transport = null;
    }
    if (this.activity) {
      this.activity.stop();
      this.activity = null;
    }
    this.graph.detachAll();
    stopStream(this.mic);
    this.mic = null;
    if (this.audioEl) this.audioEl.srcObject = null;
    this.activeResponse = null;
    this.ptt = null;
    this.outputBuffer = false;
    this.setAssistantSpeaking(false);
  }
}

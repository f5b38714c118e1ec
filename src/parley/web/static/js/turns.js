// Per-turn latency, measured in the page (performance.now() ms):
//   response latency = end of the user's speech → first assistant audio heard
//   barge-in         = user starts talking over the assistant → assistant silent
// plus, from the local engine, where the time went (`parley.metrics`).
import { Emitter } from "./util/emitter.js";

export class TurnMetrics extends Emitter {
  constructor() {
    super();
    this.turns = [];
    this.byResponse = new Map();
    this.pending = null; // a turn waiting for its response
    this.bargeIn = null; // an open barge-in measurement
  }

  add(turn) {
    const t = {
      index: this.turns.length + 1,
      origin: "voice",
      userItemId: null,
      endAt: null, // when the user's turn ended (speech end / release / send)
      vadWaitMs: 0, // silence the VAD waited before deciding (server_vad), included in latency
      responseId: null,
      createdAt: null,
      firstAudioAt: null,
      latencyMs: null,
      approx: false,
      bargeInMs: null,
      stages: null,
      status: "waiting",
      ...turn,
    };
    this.turns.push(t);
    this.emit("changed", t);
    return t;
  }

  // A voice turn ended: speech_stopped arrived (VAD already waited `vadWaitMs` of silence).
  speechStopped(itemId, t, vadWaitMs) {
    this.pending = this.add({ origin: "voice", userItemId: itemId, endAt: t - vadWaitMs, detectedAt: t, vadWaitMs });
  }

  pushToTalkReleased(t) {
    this.pending = this.add({ origin: "push-to-talk", endAt: t, detectedAt: t });
  }

  textSent(t) {
    this.pending = this.add({ origin: "text", endAt: t, detectedAt: t });
  }

  responseCreated(responseId, t) {
    let turn = this.pending;
    if (!turn || turn.responseId) turn = this.add({ origin: "follow-up", endAt: t, detectedAt: t });
    turn.responseId = responseId;
    turn.createdAt = t;
    turn.status = "responding";
    this.pending = null;
    this.byResponse.set(responseId, turn);
    this.emit("changed", turn);
  }

  // First audible assistant audio of a response. `approx` when only the server's
  // output_audio_buffer.started was seen, not the audio itself.
  firstAudio(responseId, t, approx = false) {
    const turn = responseId ? this.byResponse.get(responseId) : this.lastResponding();
    if (!turn || turn.firstAudioAt !== null || turn.endAt === null) return;
    turn.firstAudioAt = t;
    turn.latencyMs = t - turn.endAt;
    turn.approx = approx;
    if (turn.status === "responding") turn.status = "speaking";
    this.emit("changed", turn);
  }

  lastResponding() {
    for (let i = this.turns.length - 1; i >= 0; i--) {
      const t = this.turns[i];
      if (t.responseId && t.firstAudioAt === null) return t;
    }
    return null;
  }

  responseDone(responseId, status) {
    const turn = this.byResponse.get(responseId);
    if (!turn) return;
    turn.status = status === "completed" ? "done" : status;
    this.emit("changed", turn);
  }

  stageMetrics(ev) {
    const turn = this.byResponse.get(ev.response_id);
    if (!turn) return;
    turn.stages = ev;
    this.emit("changed", turn);
  }

  // The user started talking over the assistant at `t`.
  bargeInStarted(t, via) {
    let turn = null;
    for (let i = this.turns.length - 1; i >= 0 && !turn; i--) if (this.turns[i].firstAudioAt !== null) turn = this.turns[i];
    this.bargeIn = { t, via, turn };
  }

  // The assistant's audio stopped at `t` (after a barge-in).
  silenced(t) {
    const b = this.bargeIn;
    if (!b) return;
    this.bargeIn = null;
    const ms = Math.max(0, t - b.t);
    if (b.turn) {
      b.turn.bargeInMs = ms;
      b.turn.bargeVia = b.via;
      b.turn.status = "interrupted";
      this.emit("changed", b.turn);
    }
    this.emit("barge-in", { ms, turn: b.turn });
  }

  clear() {
    this.turns = [];
    this.byResponse.clear();
    this.pending = null;
    this.bargeIn = null;
    this.emit("cleared");
  }
}

// Main-thread side of playback-worklet.js: queue assistant audio per item,
// flush it instantly on barge-in, and know how many ms of each item were played.
import { Emitter } from "../util/emitter.js";

export class Player extends Emitter {
  constructor(ctx) {
    super();
    this.ctx = ctx;
    this.node = new AudioWorkletNode(ctx, "parley-playback", { numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1] });
    this.playedSamples = new Map(); // item id → 24 kHz samples played (last report)
    this.queuedSamples = new Map(); // item id → samples received
    this.current = null;
    this.pending = 0; // samples queued but not yet played (approximate)
    this.flushes = new Map();
    this.seq = 0;
    this.node.port.onmessage = (e) => this.onMessage(e.data);
  }

  get playing() {
    return this.current !== null;
  }

  onMessage(msg) {
    const now = performance.now();
    if (msg.type === "started") {
      this.current = msg.id;
      this.emit("started", { id: msg.id, t: now });
    } else if (msg.type === "progress") {
      this.playedSamples.set(msg.id, msg.played);
    } else if (msg.type === "idle") {
      this.playedSamples.set(msg.id, msg.played);
      this.current = null;
      this.emit("idle", { id: msg.id, t: now });
    } else if (msg.type === "flushed") {
      // Queued but not started yet: the item was heard for 0 ms.
      const id = msg.id || this.current;
      const played = msg.id ? msg.played : 0;
      if (id) this.playedSamples.set(id, played);
      this.current = null;
      const resolve = this.flushes.get(msg.seq);
      this.flushes.delete(msg.seq);
      resolve && resolve({ id, playedMs: Math.floor(played / 24), dropped: msg.dropped, t: now });
    }
  }

  push(itemId, int16) {
    this.queuedSamples.set(itemId, (this.queuedSamples.get(itemId) || 0) + int16.length);
    const buf = int16.buffer.byteLength === int16.byteLength ? int16.buffer : int16.slice().buffer;
    this.node.port.postMessage({ type: "push", id: itemId, pcm: buf }, [buf]);
    if (this.current === null) this.current = itemId; // about to start
  }

  // Stop at once; resolves with the item that was playing and how much of it was heard.
  flush() {
    const seq = ++this.seq;
    return new Promise((resolve) => {
      this.flushes.set(seq, resolve);
      this.node.port.postMessage({ type: "flush", seq });
      setTimeout(() => {
        if (!this.flushes.has(seq)) return;
        this.flushes.delete(seq);
        const id = this.current;
        resolve({ id, playedMs: id ? Math.floor((this.playedSamples.get(id) || 0) / 24) : 0, dropped: 0, t: performance.now() });
      }, 250);
    });
  }

  receivedMs(itemId) {
    return (this.queuedSamples.get(itemId) || 0) / 24;
  }

  playedMs(itemId) {
    return Math.floor((this.playedSamples.get(itemId) || 0) / 24);
  }

  dispose() {
    this.node.port.onmessage = null;
    this.node.disconnect();
  }
}

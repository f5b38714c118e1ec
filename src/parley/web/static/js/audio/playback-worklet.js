// AudioWorklet: plays queued 24 kHz PCM16 assistant audio, flushable at once.
//
// In:  {type:"push", id, pcm: ArrayBuffer(Int16 @ 24 kHz)}   queue audio of item `id`
//      {type:"flush", seq}                                     drop everything queued now
// Out: {type:"started", id, frame}        first sample of an item reached the output
//      {type:"progress", id, played}      samples (24 kHz) of item `id` played so far
//      {type:"flushed", seq, id, played, dropped}
//      {type:"idle", id, played}          the queue ran dry
//
// `played` counts source samples actually rendered, which is what
// conversation.item.truncate's audio_end_ms needs (played / 24).

const SOURCE_RATE = 24000;

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = []; // {id, data: Float32Array, off}
    this.step = SOURCE_RATE / sampleRate;
    this.frac = 0;
    this.current = null; // id being played
    this.played = new Map(); // id → samples played
    this.playing = false;
    this.sinceReport = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === "push") {
      const pcm = new Int16Array(msg.pcm);
      const data = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
      this.queue.push({ id: msg.id, data, off: 0 });
    } else if (msg.type === "flush") {
      let dropped = 0;
      for (const seg of this.queue) dropped += seg.data.length - seg.off;
      const id = this.current;
      this.queue = [];
      this.frac = 0;
      this.playing = false;
      this.port.postMessage({ type: "flushed", seq: msg.seq, id, played: id ? this.played.get(id) || 0 : 0, dropped });
    } else if (msg.type === "forget") {
      this.played.delete(msg.id);
    }
  }

  // The sample at the read head (k = 0) or just after it (k = 1), across segments.
  peek(k) {
    const seg = this.queue[0];
    if (seg.off + k < seg.data.length) return seg.data[seg.off + k];
    const next = this.queue[1];
    return next ? next.data[next.off] : null;
  }

  advance() {
    const seg = this.queue[0];
    seg.off++;
    if (seg.id !== this.current) {
      this.current = seg.id;
      this.port.postMessage({ type: "started", id: seg.id, frame: currentFrame });
    }
    this.played.set(seg.id, (this.played.get(seg.id) || 0) + 1);
    if (seg.off >= seg.data.length) this.queue.shift();
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (!out) return true;
    let i = 0;
    for (; i < out.length && this.queue.length; i++) {
      const a = this.peek(0);
      const b = this.peek(1);
      out[i] = b === null ? a : a + (b - a) * this.frac;
      this.frac += this.step;
      while (this.frac >= 1 && this.queue.length) {
        this.frac -= 1;
        this.advance();
      }
    }
    for (; i < out.length; i++) out[i] = 0;
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    const active = this.queue.length > 0;
    this.sinceReport += out.length;
    if (this.current && (this.sinceReport >= sampleRate / 20 || (!active && this.playing))) {
      this.sinceReport = 0;
      this.port.postMessage({ type: "progress", id: this.current, played: this.played.get(this.current) || 0 });
    }
    if (!active && this.playing) {
      this.port.postMessage({ type: "idle", id: this.current, played: this.played.get(this.current) || 0 });
      this.current = null;
    }
    this.playing = active;
    return true;
  }
}

registerProcessor("parley-playback", PlaybackProcessor);

// AudioWorklet: microphone → 24 kHz PCM16 chunks (for the WebSocket transport).
// Runs on the audio thread. Posts {pcm: ArrayBuffer} of `chunkMs` each; a
// {type: "flush"} message posts whatever is buffered right away.

const TARGET_RATE = 24000;

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.chunk = Math.round((TARGET_RATE * (opts.chunkMs || 20)) / 1000);
    this.ratio = sampleRate / TARGET_RATE;
    this.integer = Math.abs(this.ratio - Math.round(this.ratio)) < 1e-6;
    this.out = new Int16Array(this.chunk);
    this.n = 0;
    this.pos = 0; // fractional read position for non-integer ratios
    this.prev = 0; // last raw sample of the previous block (non-integer path)
    this.last = 0; // last smoothed sample
    this.acc = 0; // box-filter accumulator (integer path)
    this.accN = 0;
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === "flush") this.emit(true);
    };
  }

  push(v) {
    const s = v < -1 ? -1 : v > 1 ? 1 : v;
    this.out[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.n === this.chunk) this.emit(false);
  }

  emit(partial) {
    if (this.n === 0) {
      if (partial) this.port.postMessage({ pcm: new ArrayBuffer(0), flushed: true });
      return;
    }
    const buf = this.out.slice(0, this.n).buffer;
    this.port.postMessage({ pcm: buf, flushed: partial }, [buf]);
    this.n = 0;
  }

  process(inputs) {
    const input = inputs[0];
    const ch = input && input[0];
    if (!ch) return true;
    if (this.integer) {
      // Box filter + decimate: a cheap anti-alias for 48k/24k (ratio 2 or 1).
      const r = Math.round(this.ratio);
      for (let i = 0; i < ch.length; i++) {
        this.acc += ch[i];
        if (++this.accN === r) {
          this.push(this.acc / r);
          this.acc = 0;
          this.accN = 0;
        }
      }
    } else {
      // 3-tap smoothing, then linear interpolation at the target rate.
      for (let i = 0; i < ch.length; i++) {
        const cur = 0.25 * (i > 0 ? ch[i - 1] : this.prev) + 0.5 * ch[i] + 0.25 * (i + 1 < ch.length ? ch[i + 1] : ch[i]);
        // `pos` is the next output position between the previous smoothed sample (0) and this one (1).
        while (this.pos <= 1) {
          this.push(this.last + (cur - this.last) * this.pos);
          this.pos += this.ratio;
        }
        this.pos -= 1;
        this.last = cur;
      }
      this.prev = ch[ch.length - 1];
    }
    return true;
  }
}

registerProcessor("parley-capture", CaptureProcessor);

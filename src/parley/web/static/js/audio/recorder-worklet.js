// AudioWorklet: records two mono inputs (0 = microphone, 1 = assistant) as
// interleaved stereo PCM16 at 24 kHz. Posts {pcm: ArrayBuffer} about every
// half second, and on {type:"flush"}.

const RATE = 24000;

class RecorderProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / RATE;
    this.pos = 0;
    this.sum = [0, 0];
    this.cnt = 0;
    this.buf = new Int16Array(RATE); // 0.5 s stereo
    this.n = 0;
    this.recording = true;
    this.port.onmessage = (e) => {
      if (e.data.type === "flush") this.emit();
      if (e.data.type === "pause") this.recording = false;
      if (e.data.type === "resume") this.recording = true;
    };
  }

  emit() {
    if (!this.n) return;
    const out = this.buf.slice(0, this.n).buffer;
    this.port.postMessage({ pcm: out }, [out]);
    this.n = 0;
  }

  process(inputs) {
    if (!this.recording) return true;
    const a = inputs[0] && inputs[0][0];
    const b = inputs[1] && inputs[1][0];
    const len = (a && a.length) || (b && b.length) || 128;
    for (let i = 0; i < len; i++) {
      this.sum[0] += a ? a[i] : 0;
      this.sum[1] += b ? b[i] : 0;
      this.cnt++;
      this.pos += 1;
      if (this.pos >= this.ratio) {
        this.pos -= this.ratio;
        for (let c = 0; c < 2; c++) {
          let v = this.sum[c] / this.cnt;
          v = v < -1 ? -1 : v > 1 ? 1 : v;
          this.buf[this.n++] = v < 0 ? v * 0x8000 : v * 0x7fff;
          this.sum[c] = 0;
        }
        this.cnt = 0;
        if (this.n >= this.buf.length) this.emit();
      }
    }
    return true;
  }
}

registerProcessor("parley-recorder", RecorderProcessor);

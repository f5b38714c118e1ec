// Audio levels from an AnalyserNode: RMS, dBFS and a 0..1 display level.

export class LevelMeter {
  constructor(analyser) {
    this.analyser = analyser;
    this.buf = new Float32Array(analyser.fftSize);
    this.display = 0;
  }

  rms() {
    this.analyser.getFloatTimeDomainData(this.buf);
    let sum = 0;
    for (let i = 0; i < this.buf.length; i++) sum += this.buf[i] * this.buf[i];
    return Math.sqrt(sum / this.buf.length);
  }

  // 0..1 for display: -60 dBFS → 0, -6 dBFS → 1, fast attack and slow release.
  level() {
    const db = 20 * Math.log10(this.rms() + 1e-9);
    const target = Math.min(1, Math.max(0, (db + 60) / 54));
    this.display = target > this.display ? target : this.display * 0.85 + target * 0.15;
    return this.display;
  }
}

// Detects when the assistant becomes audible and when it falls silent, from an
// analyser on its audio, with millisecond timestamps (performance.now()).
// Used over WebRTC, where the page only sees the audio itself.
import { Emitter } from "../util/emitter.js";

const ON_RMS = 0.004; // about -48 dBFS
const OFF_RMS = 0.002;
const HOLD_MS = 60; // quiet this long = silent; the silence starts at the first quiet sample

export class ActivityDetector extends Emitter {
  constructor(meter, intervalMs = 5) {
    super();
    this.meter = meter;
    this.active = false;
    this.quietSince = null;
    this.lastRms = 0;
    this.peak = 0;
    this.timer = setInterval(() => this.tick(), intervalMs);
  }

  tick() {
    const now = performance.now();
    const rms = this.meter.rms();
    this.lastRms = rms;
    if (rms > this.peak) this.peak = rms;
    if (!this.active) {
      if (rms > ON_RMS) {
        this.active = true;
        this.quietSince = null;
        this.emit("audible", { t: now, rms });
      }
      return;
    }
    if (rms < OFF_RMS) {
      if (this.quietSince === null) this.quietSince = now;
      if (now - this.quietSince >= HOLD_MS) {
        this.active = false;
        this.emit("silent", { t: this.quietSince });
        this.quietSince = null;
      }
    } else {
      this.quietSince = null;
    }
  }

  stop() {
    clearInterval(this.timer);
  }
}

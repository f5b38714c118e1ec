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
    this.lastLoudAt = null;
    this.watch = null;
    this.timer = setInterval(() => this.tick(), intervalMs);
  }

  tick() {
    const now = performance.now();
    const rms = this.meter.rms();
    this.lastRms = rms;
    if (rms > this.peak) this.peak = rms;
    if (rms > ON_RMS) this.lastLoudAt = now;
    if (this.watch && now - Math.max(this.watch.t0, this.lastLoudAt || 0) >= this.watch.quietMs) {
      const { t0, resolve } = this.watch;
      this.watch = null;
      resolve(Math.max(t0, this.lastLoudAt || 0));
    }
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

  // After a barge-in at t0: resolves with the time the audio was last audible
  // (t0 if it already was silent) once it has stayed quiet for `quietMs`.
  watchSilence(t0, quietMs = 400, timeoutMs = 5000) {
    if (this.watch) this.watch.resolve(null);
    return new Promise((resolve) => {
      this.watch = { t0, quietMs, resolve };
      setTimeout(() => {
        if (this.watch && this.watch.resolve === resolve) {
          this.watch = null;
          resolve(null); // never went quiet
        }
      }, timeoutMs);
    });
  }

  stop() {
    if (this.watch) this.watch.resolve(null);
    this.watch = null;
    clearInterval(this.timer);
  }
}

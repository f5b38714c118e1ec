// The conversation recording: stereo PCM16 at 24 kHz (left = you, right = assistant),
// fed by recorder-worklet.js, kept across reconnects, exported as WAV.
import { encodeWav } from "./wav.js";

export const RECORDING_RATE = 24000;
const MAX_SECONDS = 60 * 60; // an hour of stereo 24 kHz PCM16 is ~330 MB; stop before that

export class Recording {
  constructor() {
    this.chunks = [];
    this.samples = 0; // per channel
  }

  add(int16Stereo) {
    if (this.samples >= MAX_SECONDS * RECORDING_RATE) return;
    this.chunks.push(int16Stereo);
    this.samples += int16Stereo.length / 2;
  }

  get seconds() {
    return this.samples / RECORDING_RATE;
  }

  get empty() {
    return this.samples === 0;
  }

  toWav() {
    return encodeWav(this.chunks, { sampleRate: RECORDING_RATE, channels: 2 });
  }

  clear() {
    this.chunks = [];
    this.samples = 0;
  }
}

// The page's audio graph: one AudioContext for the page's lifetime.
//
//   mic stream ──► micAnalyser (meter)
//              └─► capture worklet ──► PCM16 chunks (WebSocket transport)
//              └─► recorder input 0
//   assistant  ──► outAnalyser (meter, activity)     assistant = remote WebRTC stream
//              └─► recorder input 1                   or the playback worklet (WebSocket)
//              └─► speakers (playback worklet only; WebRTC plays through <audio>)
import { LevelMeter } from "./meters.js";
import { Player } from "./player.js";
import { ParleyError } from "../realtime/errors.js";

const base = new URL(".", import.meta.url);

export class AudioGraph {
  static async create(recording) {
    let ctx;
    try {
      ctx = new AudioContext({ latencyHint: "interactive" });
      await Promise.race([ctx.resume(), new Promise((r) => setTimeout(r, 1500))]);
      await Promise.all(
        ["capture-worklet.js", "playback-worklet.js", "recorder-worklet.js"].map((f) =>
          ctx.audioWorklet.addModule(new URL(f, base).href),
        ),
      );
    } catch (cause) {
      throw new ParleyError("audio", `Audio processing could not start: ${cause.message}`, { cause });
    }
    return new AudioGraph(ctx, recording);
  }

  constructor(ctx, recording) {
    this.ctx = ctx;
    this.recording = recording;
    this.micAnalyser = this.analyser();
    this.outAnalyser = this.analyser();
    this.micMeter = new LevelMeter(this.micAnalyser);
    this.outMeter = new LevelMeter(this.outAnalyser);
    this.recorder = new AudioWorkletNode(ctx, "parley-recorder", {
      numberOfInputs: 2,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      channelCount: 1,
      channelCountMode: "explicit",
    });
    this.recorder.port.onmessage = (e) => e.data.pcm && this.recording.add(new Int16Array(e.data.pcm));
    // Worklets only run when pulled by the destination: a silent sink keeps the recorder alive.
    this.sink = ctx.createGain();
    this.sink.gain.value = 0;
    this.recorder.connect(this.sink).connect(ctx.destination);
    this.micSource = null;
    this.remoteSource = null;
    this.capture = null;
    this.player = null;
  }

  analyser() {
    const a = this.ctx.createAnalyser();
    a.fftSize = 512;
    a.smoothingTimeConstant = 0;
    return a;
  }

  async resume() {
    if (this.ctx.state !== "running") await Promise.race([this.ctx.resume(), new Promise((r) => setTimeout(r, 1500))]);
  }

  // (Re)attach a microphone stream; a running capture keeps going from the new one.
  attachMic(stream) {
    if (this.micSource) this.micSource.disconnect();
    this.micSource = this.ctx.createMediaStreamSource(stream);
    this.micSource.connect(this.micAnalyser);
    this.micSource.connect(this.recorder, 0, 0);
    if (this.capture) this.micSource.connect(this.capture);
  }

  detachMic() {
    if (this.capture) {
      this.capture.port.onmessage = null;
      this.capture.disconnect();
      this.capture = null;
    }
    if (this.micSource) this.micSource.disconnect();
    this.micSource = null;
  }

  // WebSocket transport: 24 kHz PCM16 chunks of the microphone.
  startCapture(onChunk, chunkMs = 20) {
    this.capture = new AudioWorkletNode(this.ctx, "parley-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
      channelCountMode: "explicit",
      processorOptions: { chunkMs },
    });
    this.capture.port.onmessage = (e) => onChunk(e.data);
    if (this.micSource) this.micSource.connect(this.capture);
    this.capture.connect(this.sink);
    return this.capture;
  }

  // WebRTC: the remote stream plays through an <audio> element; the graph only listens.
  attachRemote(stream) {
    this.detachRemote();
    this.remoteSource = this.ctx.createMediaStreamSource(stream);
    this.remoteSource.connect(this.outAnalyser);
    this.remoteSource.connect(this.recorder, 0, 1);
  }

  // WebSocket transport: a flushable player that counts what it played.
  createPlayer() {
    this.detachRemote();
    this.player = new Player(this.ctx);
    this.player.node.connect(this.ctx.destination);
    this.player.node.connect(this.outAnalyser);
    this.player.node.connect(this.recorder, 0, 1);
    return this.player;
  }

  detachRemote() {
    if (this.remoteSource) this.remoteSource.disconnect();
    this.remoteSource = null;
    if (this.player) this.player.dispose();
    this.player = null;
  }

  flushRecording() {
    this.recorder.port.postMessage({ type: "flush" });
  }

  detachAll() {
    this.flushRecording();
    this.detachMic();
    this.detachRemote();
  }
}

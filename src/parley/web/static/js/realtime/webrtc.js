// WebRTC transport: mic track out, assistant audio in over RTP, JSON events on
// the `oai-events` data channel. The offer is POSTed at once (no trickle ICE).
import { Emitter } from "../util/emitter.js";
import { exchangeSdp } from "../api.js";
import { ParleyError } from "./errors.js";

const OPEN_TIMEOUT_MS = 15000;

export class WebRtcTransport extends Emitter {
  constructor() {
    super();
    this.kind = "webrtc";
    this.pc = null;
    this.dc = null;
    this.remoteStream = null;
    this.callId = null;
    this.opened = false;
    this.closing = false;
  }

  async connect({ micStream, secret, metrics, cfg }) {
    const pc = (this.pc = new RTCPeerConnection({ iceServers: [] }));
    const dc = (this.dc = pc.createDataChannel("oai-events"));
    const track = micStream && micStream.getAudioTracks()[0];
    if (track) pc.addTrack(track, micStream);
    else pc.addTransceiver("audio", { direction: "recvonly" });

    pc.ontrack = (e) => {
      this.remoteStream = e.streams[0] || new MediaStream([e.track]);
      this.emit("track", this.remoteStream);
    };
    dc.onmessage = (e) => {
      let event;
      try {
        event = JSON.parse(e.data);
      } catch {
        return;
      }
      this.emit("message", event);
    };

    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (this.closing) throw new ParleyError("handshake", "Cancelled.");
    this.offeredAt = performance.now();
    const answer = await exchangeSdp(offer.sdp, secret, { metrics, ...cfg });
    this.answeredAt = performance.now();
    this.callId = answer.callId;
    try {
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    } catch (cause) {
      throw new ParleyError("handshake", `The server's SDP answer was rejected by the browser: ${cause.message}`, { cause });
    }
    await this.waitOpen();
    this.opened = true;
    dc.onclose = () => this.lost("The event channel closed.");
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") this.lost("The media connection failed.");
      else if (pc.connectionState === "closed") this.lost("The media connection closed.");
    };
  }

  waitOpen() {
    const { pc, dc } = this;
    return new Promise((resolve, reject) => {
      if (dc.readyState === "open") return resolve();
      const timer = setTimeout(
        () => fail("The connection did not open within 15 s (ICE/DTLS could not complete)."),
        OPEN_TIMEOUT_MS,
      );
      const fail = (msg) => {
        clearTimeout(timer);
        reject(new ParleyError("handshake", msg));
      };
      dc.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
      dc.onclose = () => fail("The event channel closed before it opened.");
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "failed") fail("ICE connectivity failed: no network path to the server's media port.");
      };
    });
  }

  lost(reason) {
    if (this.closing) return;
    this.closing = true;
    this.emit("closed", { unexpected: true, reason });
    this.teardown();
  }

  send(event) {
    if (!this.dc || this.dc.readyState !== "open") return false;
    this.dc.send(JSON.stringify(event));
    return true;
  }

  async stats() {
    if (!this.pc) return null;
    const out = { inbound: null, outbound: null, rttMs: null, codec: null };
    const report = await this.pc.getStats();
    const codecs = new Map();
    report.forEach((s) => {
      if (s.type === "codec") codecs.set(s.id, s.mimeType);
    });
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        out.inbound = {
          packets: s.packetsReceived,
          bytes: s.bytesReceived,
          lost: s.packetsLost,
          jitterMs: s.jitter * 1000,
          energy: s.totalAudioEnergy,
          samples: s.totalSamplesReceived,
          concealed: s.concealedSamples,
        };
        out.codec = codecs.get(s.codecId) || null;
      }
      if (s.type === "outbound-rtp" && s.kind === "audio") out.outbound = { packets: s.packetsSent, bytes: s.bytesSent };
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
        out.rttMs = s.currentRoundTripTime * 1000;
      }
    });
    return out;
  }

  close() {
    this.closing = true;
    this.teardown();
  }

  teardown() {
    if (this.dc) {
      this.dc.onmessage = this.dc.onclose = null;
      try {
        this.dc.close();
      } catch {
        /* already closed */
      }
    }
    if (this.pc) {
      this.pc.onconnectionstatechange = this.pc.ontrack = null;
      this.pc.close();
    }
  }
}

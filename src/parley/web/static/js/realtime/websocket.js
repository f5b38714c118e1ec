// WebSocket transport: JSON events both ways; audio travels inside them
// (input_audio_buffer.append / response.output_audio.delta, base64 PCM16 24 kHz).
import { Emitter } from "../util/emitter.js";
import { websocketProtocols, websocketUrl } from "../api.js";
import { ParleyError } from "./errors.js";

const OPEN_TIMEOUT_MS = 15000;

export class WebSocketTransport extends Emitter {
  constructor() {
    super();
    this.kind = "websocket";
    this.ws = null;
    this.closing = false;
  }

  connect({ model, metrics, scenario }) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = this.ws = new WebSocket(websocketUrl({ model, metrics, scenario }), websocketProtocols());
      } catch (cause) {
        reject(new ParleyError("handshake", `The WebSocket could not be created: ${cause.message}`, { cause }));
        return;
      }
      let open = false;
      const timer = setTimeout(() => {
        ws.close();
        reject(new ParleyError("handshake", "The WebSocket did not open within 15 s."));
      }, OPEN_TIMEOUT_MS);
      ws.onopen = () => {
        open = true;
        clearTimeout(timer);
        resolve();
      };
      ws.onmessage = (e) => {
        if (typeof e.data !== "string") return;
        let event;
        try {
          event = JSON.parse(e.data);
        } catch {
          return;
        }
        this.emit("message", event);
      };
      ws.onclose = (e) => {
        clearTimeout(timer);
        if (!open) {
          // Browsers hide the HTTP status of a refused handshake; the caller diagnoses.
          reject(new ParleyError("handshake", e.reason || "The server refused the WebSocket connection.", { code: e.code }));
          return;
        }
        if (!this.closing) {
          this.closing = true;
          this.emit("closed", { unexpected: true, code: e.code, reason: e.reason || `WebSocket closed (code ${e.code}).` });
        }
      };
    });
  }

  send(event) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(event));
    return true;
  }

  get buffered() {
    return this.ws ? this.ws.bufferedAmount : 0;
  }

  async stats() {
    return { buffered: this.buffered };
  }

  close() {
    this.closing = true;
    if (this.ws) {
      this.ws.onmessage = null;
      try {
        this.ws.close(1000, "client disconnect");
      } catch {
        /* already closed */
      }
    }
  }
}

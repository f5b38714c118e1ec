// The conversation as the user experienced it, built from Realtime events:
// user turns (interim, then final transcripts), assistant replies (what was
// generated, and after a barge-in, what was actually heard), and tool calls.
import { Emitter } from "./util/emitter.js";

const CHARS_PER_SECOND = 15; // speech-rate estimate when the server does not say what was heard

export class Conversation extends Emitter {
  constructor() {
    super();
    this.items = new Map(); // id → entry
    this.order = [];
    this.byCallId = new Map();
    this.responses = new Map(); // response id → {status, reason, items: []}
  }

  entry(id, init) {
    let e = this.items.get(id);
    if (!e) {
      e = { id, createdAt: Date.now(), status: "in_progress", text: "", ...init };
      this.items.set(id, e);
      this.order.push(id);
      this.emit("added", e);
    }
    return e;
  }

  changed(e) {
    this.emit("changed", e);
  }

  divider(label) {
    const id = `divider_${this.order.length}_${Date.now()}`;
    this.entry(id, { kind: "divider", text: label, status: "completed" });
  }

  notice(text, tone = "info") {
    const id = `notice_${this.order.length}_${Date.now()}`;
    this.entry(id, { kind: "notice", text, tone, status: "completed" });
  }

  // Which response produced an item (for metrics).
  responseOf(itemId) {
    const e = this.items.get(itemId);
    return e ? e.responseId : null;
  }

  handle(ev) {
    switch (ev.type) {
      case "input_audio_buffer.speech_started": {
        const e = this.entry(ev.item_id, { kind: "user", source: "voice", phase: "speaking" });
        e.phase = "speaking";
        this.changed(e);
        break;
      }
      case "input_audio_buffer.speech_stopped":
      case "input_audio_buffer.committed": {
        const e = this.entry(ev.item_id, { kind: "user", source: "voice" });
        if (e.phase !== "transcribed") e.phase = "processing";
        this.changed(e);
        break;
      }
      case "conversation.item.added":
      case "conversation.item.done":
      case "response.output_item.added":
      case "response.output_item.done":
      case "conversation.item.retrieved":
        this.onItem(ev.item, ev.response_id, ev.type);
        break;
      case "conversation.item.input_audio_transcription.delta": {
        const e = this.entry(ev.item_id, { kind: "user", source: "voice" });
        e.interim = (e.interim || "") + (ev.delta || "");
        this.changed(e);
        break;
      }
      case "conversation.item.input_audio_transcription.completed": {
        const e = this.entry(ev.item_id, { kind: "user", source: "voice" });
        e.text = (ev.transcript || "").trim();
        e.interim = "";
        e.phase = "transcribed";
        e.status = "completed";
        this.changed(e);
        break;
      }
      case "conversation.item.input_audio_transcription.failed": {
        const e = this.entry(ev.item_id, { kind: "user", source: "voice" });
        e.phase = "failed";
        e.error = (ev.error && ev.error.message) || "Transcription failed";
        this.changed(e);
        break;
      }
      case "response.created":
        this.responses.set(ev.response.id, { status: "in_progress", items: [] });
        break;
      case "response.output_audio_transcript.delta":
      case "response.output_text.delta": {
        const e = this.entry(ev.item_id, { kind: "assistant", responseId: ev.response_id });
        e.text += ev.delta || "";
        e.streaming = true;
        this.changed(e);
        break;
      }
      case "response.output_audio_transcript.done":
      case "response.output_text.done": {
        const e = this.entry(ev.item_id, { kind: "assistant", responseId: ev.response_id });
        const full = ev.transcript ?? ev.text;
        if (typeof full === "string" && full.length >= e.text.length) e.text = full;
        e.streaming = false;
        this.changed(e);
        break;
      }
      case "response.function_call_arguments.delta": {
        const e = this.entry(ev.item_id, { kind: "tool", responseId: ev.response_id, tool: { args: "" } });
        e.tool.args = (e.tool.args || "") + (ev.delta || "");
        if (ev.call_id) this.byCallId.set(ev.call_id, e);
        this.changed(e);
        break;
      }
      case "response.function_call_arguments.done": {
        const e = this.entry(ev.item_id, { kind: "tool", responseId: ev.response_id, tool: {} });
        Object.assign(e.tool, { args: ev.arguments, name: ev.name || e.tool.name, callId: ev.call_id || e.tool.callId });
        if (ev.call_id) this.byCallId.set(ev.call_id, e);
        this.changed(e);
        break;
      }
      // MCP calls are run by the engine: the same card, named server.tool.
      case "response.mcp_call_arguments.delta": {
        const e = this.entry(ev.item_id, { kind: "tool", responseId: ev.response_id, tool: { args: "" } });
        e.tool.args = (e.tool.args || "") + (ev.delta || "");
        this.changed(e);
        break;
      }
      case "response.mcp_call_arguments.done": {
        const e = this.entry(ev.item_id, { kind: "tool", responseId: ev.response_id, tool: {} });
        e.tool.args = ev.arguments;
        this.changed(e);
        break;
      }
      case "response.done": {
        const r = ev.response || {};
        const details = r.status_details || {};
        for (const out of r.output || []) {
          const e = this.items.get(out.id);
          if (!e) continue;
          e.streaming = false;
          if (r.status === "cancelled" || r.status === "incomplete" || r.status === "failed") {
            e.interrupted = r.status === "cancelled";
            e.endReason = details.reason || r.status;
          }
          e.status = out.status || e.status;
          this.changed(e);
        }
        if (r.status === "failed") {
          const msg = (details.error && details.error.message) || "The response failed.";
          this.notice(msg, "error");
        }
        break;
      }
      case "response.output_audio.delta": {
        const e = this.entry(ev.item_id, { kind: "assistant", responseId: ev.response_id });
        // base64 length → PCM16 24 kHz milliseconds (3 b64 chars = 4 bytes... 48 bytes per ms)
        const b64 = ev.delta || "";
        const pad = b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0;
        e.audioMs = (e.audioMs || 0) + ((b64.length * 3) / 4 - pad) / 48;
        break;
      }
      case "conversation.item.truncated": {
        const e = this.items.get(ev.item_id);
        if (!e) break;
        e.cut = { audioEndMs: ev.audio_end_ms, heard: null, exact: false };
        this.changed(e);
        break;
      }
      case "conversation.item.deleted": {
        const e = this.items.get(ev.item_id);
        if (e) {
          e.deleted = true;
          this.changed(e);
        }
        break;
      }
      default:
        break;
    }
  }

  onItem(item, responseId, via) {
    if (!item || !item.id) return;
    const final = via.endsWith(".done") || via === "conversation.item.retrieved";
    if (item.type === "message") {
      const role = item.role;
      const kind = role === "assistant" ? "assistant" : role === "user" ? "user" : "system";
      const content = item.content || [];
      const e = this.entry(item.id, { kind, responseId: responseId || null });
      if (responseId) e.responseId = responseId;
      if (kind === "user") {
        const textPart = content.find((c) => c.type === "input_text");
        const audioPart = content.find((c) => c.type === "input_audio");
        if (textPart) {
          e.source = "text";
          e.text = textPart.text || "";
          e.phase = "transcribed";
        } else if (audioPart) {
          e.source = "voice";
          if (audioPart.transcript) {
            e.text = audioPart.transcript;
            e.phase = "transcribed";
          } else if (!e.phase || e.phase === "speaking") e.phase = "processing";
        }
      } else if (kind === "assistant") {
        const part = content[0];
        const said = part && (part.transcript ?? part.text);
        if (via === "conversation.item.retrieved" && e.cut) {
          if (typeof said === "string") {
            e.cut.heard = said;
            e.cut.exact = true;
          }
        } else if (typeof said === "string" && said.length > e.text.length) e.text = said;
        if (part && part.type === "output_text") e.textOnly = true;
      } else {
        const part = content[0];
        e.text = (part && part.text) || "";
      }
      if (final && item.status) e.status = item.status;
      this.changed(e);
    } else if (item.type === "function_call") {
      const e = this.entry(item.id, { kind: "tool", responseId: responseId || null, tool: {} });
      Object.assign(e.tool, {
        name: item.name || e.tool.name,
        callId: item.call_id || e.tool.callId,
        args: item.arguments || e.tool.args || "",
      });
      if (item.call_id) this.byCallId.set(item.call_id, e);
      if (final && item.status) e.status = item.status;
      this.changed(e);
    } else if (item.type === "mcp_call" || item.type === "mcp_approval_request") {
      const e = this.entry(item.id, { kind: "tool", responseId: responseId || null, tool: {} });
      Object.assign(e.tool, {
        name: item.name ? `${item.server_label}.${item.name}` : e.tool.name,
        mcp: true,
        args: item.arguments || e.tool.args || "",
      });
      if (item.type === "mcp_approval_request") {
        e.tool.awaitingApproval = true;
      } else if (item.error) {
        e.tool.result = `Error: ${item.error.message || item.error.type}`;
        e.tool.failed = true;
        e.tool.resultAt = Date.now();
      } else if (typeof item.output === "string") {
        e.tool.result = item.output;
        e.tool.resultAt = Date.now();
      }
      if (final) e.status = "completed";
      this.changed(e);
    } else if (item.type === "function_call_output") {
      const e = this.byCallId.get(item.call_id);
      if (e) {
        e.tool.result = item.output;
        e.tool.resultAt = Date.now();
        this.changed(e);
      }
    }
  }

  // Generated text split into what was heard and what was cut off.
  split(e) {
    const text = e.text || "";
    if (!e.cut) return { heard: text, cut: "", exact: true };
    if (e.cut.heard !== null && e.cut.heard !== undefined) {
      const idx = prefixEnd(text, e.cut.heard);
      if (idx !== null) return { heard: text.slice(0, idx), cut: text.slice(idx), exact: true };
      return { heard: e.cut.heard, cut: "", exact: true };
    }
    // Estimate from the audio: share of the item's audio heard, or a speech-rate guess.
    let chars;
    if (e.audioMs) chars = Math.round((text.length * e.cut.audioEndMs) / e.audioMs);
    else chars = Math.round((e.cut.audioEndMs / 1000) * CHARS_PER_SECOND);
    chars = Math.min(text.length, Math.max(0, chars));
    // Snap to a word boundary.
    while (chars > 0 && chars < text.length && !/\s/.test(text[chars])) chars--;
    return { heard: text.slice(0, chars), cut: text.slice(chars), exact: false };
  }

  list() {
    return this.order.map((id) => this.items.get(id)).filter((e) => e && !e.deleted);
  }

  clear() {
    this.items.clear();
    this.order = [];
    this.byCallId.clear();
    this.responses.clear();
    this.emit("cleared");
  }
}

// Where in `text` the words of `heard` end, comparing words loosely; null if they diverge.
export function prefixEnd(text, heard) {
  const norm = (w) => w.toLowerCase().replace(/[^\p{L}\p{N}']/gu, "");
  const want = heard.split(/\s+/).map(norm).filter(Boolean);
  if (!want.length) return 0;
  const re = /\S+/g;
  let m;
  let i = 0;
  while ((m = re.exec(text))) {
    const w = norm(m[0]);
    if (!w) continue;
    if (w !== want[i]) return null;
    i++;
    if (i === want.length) return m.index + m[0].length;
  }
  return null;
}

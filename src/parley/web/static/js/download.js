// Exports: the transcript (text and JSON, with what was heard vs cut) and the recording.
import { saveFile } from "./util/dom.js";

function stamp() {
  const d = new Date();
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

export function conversationData({ conversation, turns, session, upstream, settings }) {
  const entries = conversation.list().filter((e) => ["user", "assistant", "tool"].includes(e.kind));
  return {
    app: "parley",
    exported_at: new Date().toISOString(),
    upstream,
    session,
    settings,
    items: entries.map((e) => {
      const base = { id: e.id, kind: e.kind, created_at: new Date(e.createdAt).toISOString(), status: e.status };
      if (e.kind === "user") return { ...base, role: "user", source: e.source || "voice", text: e.text || "" };
      if (e.kind === "assistant") {
        const { heard, cut, exact } = conversation.split(e);
        return {
          ...base,
          role: "assistant",
          response_id: e.responseId || null,
          text: e.text,
          heard_text: heard,
          cut_text: cut,
          interrupted: Boolean(e.cut || e.interrupted),
          audio_end_ms: e.cut ? e.cut.audioEndMs : null,
          cut_exact: e.cut ? exact : null,
        };
      }
      const t = e.tool || {};
      return { ...base, tool: { name: t.name, call_id: t.callId, arguments: t.args, result: t.result ?? null } };
    }),
    turns: turns.turns.map((t) => ({
      index: t.index,
      origin: t.origin,
      response_id: t.responseId,
      latency_ms: t.latencyMs === null ? null : Math.round(t.latencyMs),
      latency_approx: t.approx,
      vad_wait_ms: t.vadWaitMs,
      barge_in_ms: t.bargeInMs === null ? null : Math.round(t.bargeInMs),
      stages: t.stages,
    })),
  };
}

export function transcriptText(data) {
  const lines = [`Parley conversation — exported ${new Date(data.exported_at).toLocaleString()}`, ""];
  for (const it of data.items) {
    const time = new Date(it.created_at).toLocaleTimeString();
    if (it.kind === "user") lines.push(`[${time}] You: ${it.text || "(voice)"}`);
    else if (it.kind === "assistant") {
      lines.push(`[${time}] Parley: ${it.heard_text}${it.cut_text ? ` [cut — not heard: ${it.cut_text.trim()}]` : ""}`);
    } else if (it.kind === "tool") {
      lines.push(`[${time}] Tool ${it.tool.name}(${it.tool.arguments || ""}) → ${it.tool.result ?? "(no result)"}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

export function download(kind, ctx) {
  const name = `parley-${stamp()}`;
  if (kind === "wav") {
    ctx.flushRecording && ctx.flushRecording();
    saveFile(`${name}.wav`, ctx.recording.toWav());
    return;
  }
  const data = conversationData(ctx);
  if (kind === "json") saveFile(`${name}.json`, JSON.stringify(data, null, 2), "application/json");
  else saveFile(`${name}.txt`, transcriptText(data), "text/plain");
}

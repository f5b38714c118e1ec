// Latency panel: per-turn "end of speech → first audio" and "barge-in → silence",
// a small chart of recent turns, and a waterfall of where the time went when the
// local engine reports its stage timings (parley.metrics).
import { h } from "../util/dom.js";
import { ms, percentile } from "../util/format.js";

const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}) => {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
};

const SEGMENTS = [
  ["vad", "VAD silence wait"],
  ["stt", "Speech-to-text"],
  ["llm", "LLM first token"],
  ["clause", "First clause"],
  ["tts", "Text-to-speech"],
  ["send", "Send"],
  ["net", "Network + playout"],
  ["total", "Server + network"],
];

// Segments [kind, startMs, endMs] relative to the moment the turn was detected (0).
export function waterfall(turn) {
  const segs = [];
  if (turn.vadWaitMs > 0) segs.push(["vad", -turn.vadWaitMs, 0]);
  const clientEnd = turn.firstAudioAt !== null ? turn.firstAudioAt - turn.detectedAt : null;
  const s = turn.stages;
  if (s) {
    const shift = s.origin === "response.created" && turn.createdAt !== null ? turn.createdAt - turn.detectedAt : 0;
    const seg = (kind, a, b) => {
      if (typeof a === "number" && typeof b === "number" && b - a >= 0.5) segs.push([kind, a + shift, b + shift]);
    };
    seg("stt", s.stt_started_ms, s.stt_done_ms);
    seg("llm", s.llm_started_ms, s.llm_first_token_ms);
    seg("clause", s.llm_first_token_ms, s.first_clause_ms);
    seg("tts", s.first_clause_ms, s.tts_first_chunk_ms);
    seg("send", s.tts_first_chunk_ms, s.first_audio_sent_ms);
    if (clientEnd !== null && typeof s.first_audio_sent_ms === "number") {
      seg("net", Math.min(s.first_audio_sent_ms, clientEnd - shift), clientEnd - shift);
    }
  } else if (clientEnd !== null) {
    segs.push(["total", 0, clientEnd]);
  }
  return segs;
}

export class MetricsPanel {
  constructor(root, turns) {
    this.root = root;
    this.turns = turns;
    this.stageMetrics = false;
    this.pending = false;
    turns.on("changed", () => this.schedule());
    turns.on("cleared", () => this.schedule());
    this.build();
    this.render();
  }

  setStageMetrics(on) {
    this.stageMetrics = on;
    this.schedule();
  }

  build() {
    this.stats = h("div", { class: "stats" });
    this.chart = svg("svg", { class: "chart", viewBox: "0 0 320 120", preserveAspectRatio: "none", role: "img", "aria-label": "Response latency per turn" });
    this.list = h("ol", { class: "turn-list", id: "turn-list", reversed: true });
    this.note = h("p", { class: "help" });
    this.root.append(
      h("h2", { class: "section-title" }, "This session"),
      this.stats,
      h("h2", { class: "section-title" }, "Per turn"),
      this.chart,
      h(
        "div",
        { class: "chart-legend" },
        h("span", {}, h("span", { class: "swatch", style: "background:var(--accent)" }), "End of speech → first audio"),
        h("span", {}, h("span", { class: "swatch", style: "background:var(--danger)" }), "Barge-in → silence"),
      ),
      h("h2", { class: "section-title" }, "Turns"),
      this.list,
      this.note,
    );
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => this.render());
    setTimeout(() => this.render(), 200);
  }

  render() {
    if (!this.pending && this.rendered) return;
    this.pending = false;
    this.rendered = true;
    const turns = this.turns.turns;
    const lat = turns.map((t) => t.latencyMs).filter((v) => v !== null);
    const barge = turns.map((t) => t.bargeInMs).filter((v) => v !== null);
    const tile = (label, value, sub, id) =>
      h("div", { class: "stat", id }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value), h("div", { class: "stat-sub" }, sub));
    this.stats.replaceChildren(
      tile("Response p50", ms(percentile(lat, 50)), lat.length ? `p95 ${ms(percentile(lat, 95))}` : "speech end → audio", "stat-latency"),
      tile("Barge-in p50", ms(percentile(barge, 50)), barge.length ? `${barge.length} interruption${barge.length > 1 ? "s" : ""}` : "talk over Parley", "stat-barge"),
      tile("Turns", String(turns.length), this.stageMetrics ? "with stage timings" : "measured in the page", "stat-turns"),
    );
    this.drawChart(turns.slice(-24));
    this.drawList(turns);
    this.note.textContent = this.stageMetrics
      ? "Stage timings come from the local engine (parley.metrics); negative times mean work finished early thanks to speculation, before the end of your turn was confirmed."
      : "Timings are measured in this page: from the end of your speech (including the VAD's silence wait) to the first audible assistant audio.";
  }

  drawChart(turns) {
    const W = 320;
    const H = 120;
    const pad = { l: 30, r: 4, t: 6, b: 16 };
    const vals = turns.flatMap((t) => [t.latencyMs || 0, t.bargeInMs || 0]);
    const max = Math.max(1000, ...vals);
    const step = max > 4000 ? 2000 : max > 2000 ? 1000 : 500;
    const top = Math.ceil(max / step) * step;
    const y = (v) => H - pad.b - ((H - pad.t - pad.b) * v) / top;
    const nodes = [];
    for (let v = 0; v <= top; v += step) {
      nodes.push(svg("line", { class: "grid", x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v) }));
      const label = svg("text", { x: pad.l - 4, y: y(v) + 3, "text-anchor": "end" });
      label.textContent = v ? `${v / 1000}s` : "0";
      nodes.push(label);
    }
    const n = Math.max(turns.length, 8);
    const slot = (W - pad.l - pad.r) / n;
    turns.forEach((t, i) => {
      const x = pad.l + i * slot + slot * 0.15;
      const w = slot * 0.7;
      if (t.latencyMs !== null) {
        const r = svg("rect", { class: `bar${t.approx ? " approx" : ""}`, x, y: y(t.latencyMs), width: t.bargeInMs !== null ? w * 0.6 : w, height: Math.max(1, y(0) - y(t.latencyMs)), rx: 2 });
        const title = svg("title");
        title.textContent = `Turn ${t.index}: ${ms(t.latencyMs)}`;
        r.append(title);
        nodes.push(r);
      }
      if (t.bargeInMs !== null) {
        const r = svg("rect", { class: "barge", x: x + w * 0.62, y: y(t.bargeInMs), width: w * 0.38, height: Math.max(1, y(0) - y(t.bargeInMs)), rx: 2 });
        const title = svg("title");
        title.textContent = `Turn ${t.index}: stopped ${ms(t.bargeInMs)} after you spoke`;
        r.append(title);
        nodes.push(r);
      }
      const label = svg("text", { x: x + w / 2, y: H - 3, "text-anchor": "middle" });
      label.textContent = String(t.index);
      nodes.push(label);
    });
    this.chart.replaceChildren(...nodes);
  }

  drawList(turns) {
    if (!turns.length) {
      this.list.replaceChildren(h("li", { class: "empty-panel" }, "Latency for each turn appears here once you talk to Parley."));
      return;
    }
    const items = turns
      .slice(-40)
      .reverse()
      .map((t) => this.turnItem(t));
    this.list.replaceChildren(...items);
  }

  turnItem(t) {
    const figs = [];
    if (t.latencyMs !== null) {
      const cls = t.latencyMs < 1200 ? "good" : t.latencyMs < 2500 ? "warn" : "bad";
      figs.push(h("span", { class: `badge ${cls}`, title: "End of speech → first audio" }, `${t.approx ? "≈" : ""}${ms(t.latencyMs)}`));
    } else if (t.status === "waiting" || t.status === "responding") {
      figs.push(h("span", { class: "badge" }, "…"));
    }
    if (t.bargeInMs !== null) figs.push(h("span", { class: "badge bad", title: "Barge-in → silence" }, `✂ ${ms(t.bargeInMs)}`));
    const origin = { voice: "spoken", "push-to-talk": "push-to-talk", text: "typed", "follow-up": "follow-up response" }[t.origin] || t.origin;
    const segs = waterfall(t);
    let wf = null;
    let legend = null;
    if (segs.length) {
      const lo = Math.min(0, ...segs.map((s) => s[1]));
      const hi = Math.max(1, ...segs.map((s) => s[2]));
      const span = hi - lo;
      const pct = (v) => `${(((v - lo) / span) * 100).toFixed(2)}%`;
      wf = h(
        "div",
        { class: "waterfall", role: "img", "aria-label": segs.map(([k, a, b]) => `${label(k)} ${ms(b - a)}`).join(", ") },
        ...segs.map(([k, a, b]) => h("span", { class: `seg seg-${k}`, style: `left:${pct(a)};width:calc(${pct(b)} - ${pct(a)})`, title: `${label(k)}: ${ms(b - a)} (${ms(a)} → ${ms(b)})` })),
        h("span", { class: "zero", style: `left:${pct(0)}`, title: t.origin === "voice" ? "End of turn detected" : "Turn sent" }),
      );
      legend = h(
        "div",
        { class: "legend" },
        ...segs.map(([k, a, b]) => h("span", {}, h("span", { class: `swatch seg-${k}` }), `${label(k)} ${ms(b - a)}`)),
      );
    }
    const detail = [];
    if (t.stages && t.stages.speculative) detail.push("speculative: reply started before the turn was confirmed");
    if (t.bargeVia) detail.push(`interrupted by ${t.bargeVia === "voice" ? "voice" : t.bargeVia}`);
    return h(
      "li",
      { class: "turn", dataset: { turn: String(t.index) } },
      h(
        "div",
        { class: "turn-head" },
        h("span", { class: "turn-title" }, `Turn ${t.index}`),
        h("span", { class: "turn-origin" }, origin),
        h("span", { class: "turn-figs" }, ...figs),
      ),
      wf,
      legend,
      detail.length ? h("div", { class: "turn-detail" }, detail.join(" · ")) : null,
    );
  }
}

function label(kind) {
  return (SEGMENTS.find((s) => s[0] === kind) || [kind, kind])[1];
}

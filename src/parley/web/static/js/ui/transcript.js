// The conversation view: user and assistant bubbles, tool cards, and after a
// barge-in the part of a reply that was never heard, struck through.
import { h, icon } from "../util/dom.js";
import { ms } from "../util/format.js";

export class TranscriptView {
  constructor(root, conversation, turns, { transcriptionOn }) {
    this.root = root;
    this.conv = conversation;
    this.turns = turns;
    this.transcriptionOn = transcriptionOn;
    this.empty = root.querySelector("#transcript-empty");
    this.els = new Map();
    this.stick = true;
    root.addEventListener("scroll", () => {
      this.stick = root.scrollHeight - root.scrollTop - root.clientHeight < 60;
    });
    conversation.on("added", (e) => this.render(e));
    conversation.on("changed", (e) => this.render(e));
    conversation.on("cleared", () => this.reset());
    turns.on("changed", (t) => this.onTurn(t));
  }

  reset() {
    for (const el of this.els.values()) el.remove();
    this.els.clear();
    this.empty.hidden = false;
  }

  scroll() {
    if (this.stick) this.root.scrollTop = this.root.scrollHeight;
  }

  onTurn(turn) {
    if (!turn.responseId) return;
    for (const e of this.conv.list()) if (e.responseId === turn.responseId && e.kind === "assistant") this.render(e);
  }

  render(e) {
    this.empty.hidden = true;
    let el = this.els.get(e.id);
    const fresh = this.build(e);
    if (!fresh) return;
    if (e.deleted) {
      if (el) el.remove();
      this.els.delete(e.id);
      return;
    }
    if (el) el.replaceWith(fresh);
    else this.root.append(fresh);
    this.els.set(e.id, fresh);
    this.scroll();
  }

  build(e) {
    switch (e.kind) {
      case "user":
        return this.user(e);
      case "assistant":
        return this.assistant(e);
      case "tool":
        return this.tool(e);
      case "divider":
        return h("div", { class: "divider", role: "separator" }, e.text);
      case "notice":
        return h("div", { class: `notice ${e.tone || ""}` }, e.text);
      case "system":
        return null;
      default:
        return null;
    }
  }

  time(e) {
    return new Date(e.createdAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  user(e) {
    let body;
    if (e.text) body = e.text;
    else if (e.interim) body = h("span", { class: "interim" }, e.interim);
    else if (e.phase === "failed") body = h("span", { class: "interim" }, "(could not transcribe)");
    else if (e.phase === "processing" && !this.transcriptionOn()) body = h("span", { class: "interim" }, "Voice message");
    else body = h("span", { class: "typing", "aria-label": e.phase === "speaking" ? "Listening" : "Transcribing" }, h("i"), h("i"), h("i"));
    const meta = [
      e.source === "text" ? "Typed" : "Spoken",
      this.time(e),
      e.phase === "failed" ? h("span", { class: "badge bad" }, e.error || "Transcription failed") : null,
    ];
    return h(
      "div",
      { class: "msg user", dataset: { id: e.id, phase: e.phase || "" } },
      h("div", { class: "bubble" }, body),
      h("div", { class: "meta" }, ...sep(meta)),
    );
  }

  assistant(e) {
    const { heard, cut, exact } = this.conv.split(e);
    const bubble = h("div", { class: "bubble" });
    if (!e.text && e.streaming !== false && e.status === "in_progress") {
      bubble.append(h("span", { class: "typing", "aria-label": "Thinking" }, h("i"), h("i"), h("i")));
    } else {
      bubble.append(heard);
      if (cut) {
        bubble.append(
          h("span", { class: "cut-marker", title: "Interrupted here" }, icon("cut")),
          h("span", { class: "cut", title: "Generated but never heard: cut off by the interruption" }, cut),
          h("span", { class: "visually-hidden" }, " (not heard)"),
        );
      }
      if (!e.text) bubble.append(h("span", { class: "interim" }, e.interrupted ? "(interrupted before speaking)" : "…"));
    }
    const turn = e.responseId ? this.turns.byResponse.get(e.responseId) : null;
    const meta = ["Parley", this.time(e)];
    if (turn && turn.latencyMs !== null) {
      const cls = turn.latencyMs < 1200 ? "good" : turn.latencyMs < 2500 ? "warn" : "bad";
      meta.push(
        h("span", { class: `badge ${cls}`, title: "End of your speech → first audio of this reply" }, `${turn.approx ? "≈" : ""}${ms(turn.latencyMs)}`),
      );
    }
    if (e.cut) {
      const at = `cut at ${(e.cut.audioEndMs / 1000).toFixed(1)} s`;
      meta.push(
        h(
          "span",
          {
            class: `badge ${cut ? "bad" : "warn"}`,
            title: exact ? "The server trimmed the reply to what was played" : "Estimated from the audio played",
          },
          icon("cut"),
          cut ? `${exact ? "" : "≈ "}Not heard after ${at.slice(7)}` : `Interrupted, ${at}`,
        ),
      );
    } else if (e.interrupted) {
      meta.push(h("span", { class: "badge warn" }, "Interrupted"));
    }
    if (turn && turn.bargeInMs !== null) {
      meta.push(h("span", { class: "badge", title: "You started talking → assistant silent" }, `stopped in ${ms(turn.bargeInMs)}`));
    }
    return h(
      "div",
      { class: "msg assistant", dataset: { id: e.id, cut: e.cut ? "true" : "false" } },
      bubble,
      h("div", { class: "meta" }, ...sep(meta)),
    );
  }

  tool(e) {
    const t = e.tool || {};
    const pretty = (s) => {
      if (s === undefined || s === null) return "";
      try {
        return JSON.stringify(JSON.parse(s), null, 2);
      } catch {
        return String(s);
      }
    };
    const state =
      t.failed
        ? h("span", { class: "badge bad" }, "failed")
        : t.result !== undefined
        ? h("span", { class: "badge good" }, "done")
        : t.awaitingApproval
          ? h("span", { class: "badge warn" }, "needs approval")
          : e.status === "completed"
          ? h("span", { class: "badge warn" }, "running…")
          : h("span", { class: "badge" }, "calling…");
    return h(
      "div",
      { class: "tool-card", dataset: { id: e.id, tool: t.name || "" } },
      h("div", { class: "tool-head" }, icon("tool"), h("span", { class: "tool-name" }, t.name || "tool"), state),
      h(
        "dl",
        {},
        h("dt", {}, "Arguments"),
        h("dd", {}, h("pre", { class: "tool-args" }, pretty(t.args) || "{}")),
        t.result !== undefined ? h("dt", {}, "Result") : null,
        t.result !== undefined ? h("dd", {}, h("pre", { class: "tool-result" }, pretty(t.result))) : null,
      ),
    );
  }
}

function sep(parts) {
  const out = [];
  for (const p of parts.filter(Boolean)) {
    if (out.length && typeof p === "string" && typeof out[out.length - 1] === "string") out.push(" · ");
    out.push(p);
  }
  return out;
}

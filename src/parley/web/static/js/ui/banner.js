// The error banner (one at a time, with actions) and a small toast.
import { $, h } from "../util/dom.js";
import { describe } from "../realtime/errors.js";

const ACTION_LABELS = {
  retry: "Try again",
  reconnect: "Reconnect",
  websocket: "Use WebSocket instead",
  "text-only": "Continue with text only",
};

export class Banner {
  constructor(handlers) {
    this.el = $("#banner");
    this.handlers = handlers;
    this.timer = null;
    $("#banner-close").addEventListener("click", () => this.hide());
  }

  // `err` is a ParleyError (or any Error); `extra` may override the hint or add a countdown.
  error(err, { hint } = {}) {
    const d = describe(err);
    this.show({ tone: "error", kind: d.kind, title: d.title, message: d.message, hint: hint || d.hint, actions: d.actions });
  }

  show({ tone = "error", kind = "", title, message = "", hint = "", actions = [] }) {
    clearInterval(this.timer);
    this.el.dataset.tone = tone;
    this.el.dataset.kind = kind;
    $("#banner-title").textContent = title;
    $("#banner-message").textContent = message;
    $("#banner-hint").textContent = hint;
    $("#banner-actions").replaceChildren(
      ...actions.map((a, i) =>
        h(
          "button",
          { type: "button", class: `btn btn-sm ${i === 0 ? "btn-primary" : ""}`, dataset: { action: a }, onclick: () => this.handlers[a] && this.handlers[a]() },
          ACTION_LABELS[a] || a,
        ),
      ),
    );
    this.el.hidden = false;
  }

  // "Reconnecting in N s…" (or another `label`) on the banner's hint line, then `onDone`.
  countdown(seconds, onDone, label = (left) => `Reconnecting automatically in ${left} s…`) {
    clearInterval(this.timer);
    let left = seconds;
    const hint = $("#banner-hint");
    const tick = () => {
      hint.textContent = label(left);
      if (left-- <= 0) {
        clearInterval(this.timer);
        onDone();
      }
    };
    tick();
    this.timer = setInterval(tick, 1000);
  }

  hide() {
    clearInterval(this.timer);
    this.el.hidden = true;
    this.el.dataset.kind = "";
  }

  get kind() {
    return this.el.hidden ? "" : this.el.dataset.kind;
  }
}

let toastTimer = null;
export function toast(text, ms = 2200) {
  const el = $("#toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), ms);
}

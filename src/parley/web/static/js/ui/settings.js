// Settings panel: voice, speed, instructions, turn detection, transcription,
// microphone processing and transport. Persisted in localStorage; the app
// applies changes with session.update while connected.
import { Emitter } from "../util/emitter.js";
import { h, icon } from "../util/dom.js";

const STORAGE_KEY = "parley.settings.v1";

export function loadSettings(defaults) {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
    if (saved && typeof saved === "object") {
      const merged = { ...defaults, ...saved };
      // A saved prompt equal to an older default follows the current default.
      if (saved.instructionsIsDefault) merged.instructions = defaults.instructions;
      return merged;
    }
  } catch {
    /* corrupt or unavailable storage */
  }
  return { ...defaults };
}

function saveSettings(s, defaults) {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify({ ...s, instructionsIsDefault: s.instructions === defaults.instructions }));
  } catch {
    /* private mode */
  }
}

export class SettingsPanel extends Emitter {
  constructor(root, { settings, defaults, voices }) {
    super();
    this.root = root;
    this.settings = { ...settings };
    this.defaults = defaults;
    this.voices = voices && voices.length ? voices : [settings.voice];
    this.timers = new Map();
    this.build();
    this.sync();
  }

  set(key, value, { debounce = 0 } = {}) {
    if (this.settings[key] === value) return;
    clearTimeout(this.timers.get(key));
    const apply = () => {
      const prev = { ...this.settings };
      this.settings[key] = value;
      saveSettings(this.settings, this.defaults);
      this.sync();
      this.emit("change", { settings: { ...this.settings }, prev, key });
    };
    if (debounce) this.timers.set(key, setTimeout(apply, debounce));
    else apply();
  }

  // Programmatic change (e.g. "Switch to WebSocket" in an error banner).
  update(key, value) {
    this.set(key, value);
    const el = this.root.querySelector(`[name="${key}"][value="${value}"]`);
    if (el) el.checked = true;
  }

  setApplied(state, text) {
    this.applied.dataset.state = state;
    this.applied.replaceChildren(state === "ok" ? icon("check") : "", text || "");
  }

  build() {
    const s = this.settings;
    const field = (id, label, control, help) =>
      h("div", { class: "field" }, h("label", { for: id }, label), control, help ? h("p", { class: "help", id: `${id}-help` }, help) : null);
    const range = (id, key, min, max, step, fmt) => {
      const input = h("input", { type: "range", id, min, max, step, value: s[key] });
      const out = h("output", { for: id, id: `${id}-value` }, fmt(s[key]));
      input.addEventListener("input", () => (out.textContent = fmt(Number(input.value))));
      input.addEventListener("change", () => this.set(key, Number(input.value)));
      return h("div", { class: "range-row" }, input, out);
    };
    const number = (id, key, min, max, step) => {
      const input = h("input", { type: "number", id, min, max, step, value: s[key], inputmode: "numeric" });
      input.addEventListener("change", () => {
        const v = Math.min(max, Math.max(min, Math.round(Number(input.value) || 0)));
        input.value = v;
        this.set(key, v);
      });
      return input;
    };
    const check = (id, key, label, help) => {
      const input = h("input", { type: "checkbox", id, checked: s[key] });
      input.addEventListener("change", () => this.set(key, input.checked));
      return h("label", { class: "check", for: id }, input, h("span", {}, label, help ? h("small", {}, help) : null));
    };
    const segmented = (name, legend, options) =>
      h(
        "fieldset",
        { class: "segmented" },
        h("legend", {}, legend),
        ...options.map(([value, label]) => {
          const input = h("input", { type: "radio", name, value, id: `set-${name}-${value}`, checked: s[name] === value });
          input.addEventListener("change", () => input.checked && this.set(name, value));
          return h("label", { for: `set-${name}-${value}` }, input, label);
        }),
      );

    const voice = h("select", { id: "set-voice" }, ...this.voices.map((v) => h("option", { value: v, selected: v === s.voice }, v)));
    voice.addEventListener("change", () => this.set("voice", voice.value));
    this.instructions = h("textarea", { id: "set-instructions", rows: 7, spellcheck: "true" }, s.instructions);
    this.instructions.addEventListener("input", () => this.set("instructions", this.instructions.value, { debounce: 700 }));
    this.instructions.addEventListener("blur", () => this.set("instructions", this.instructions.value));
    const reset = h("button", { type: "button", class: "link-btn", id: "set-instructions-reset" }, "Reset to default");
    reset.addEventListener("click", () => {
      this.instructions.value = this.defaults.instructions;
      this.set("instructions", this.defaults.instructions);
    });

    this.vadFields = h(
      "div",
      { class: "form", id: "vad-fields" },
      field("set-threshold", "Speech threshold", range("set-threshold", "threshold", 0.1, 0.95, 0.05, (v) => v.toFixed(2)), "Higher ignores more background noise."),
      h(
        "div",
        { class: "field-row" },
        field("set-silence", "Silence to end turn (ms)", number("set-silence", "silenceMs", 100, 3000, 50)),
        field("set-prefix", "Audio kept before speech (ms)", number("set-prefix", "prefixMs", 0, 1000, 50)),
      ),
    );
    const eagerness = h(
      "select",
      { id: "set-eagerness" },
      ...[
        ["auto", "Auto"],
        ["low", "Low — lets you pause"],
        ["medium", "Medium"],
        ["high", "High — replies quickly"],
      ].map(([v, l]) => h("option", { value: v, selected: v === s.eagerness }, l)),
    );
    eagerness.addEventListener("change", () => this.set("eagerness", eagerness.value));
    this.semanticFields = field("set-eagerness", "Eagerness", eagerness, "How soon Parley decides you have finished, judged from how and what you said.");
    this.interruptField = check("set-interrupt", "interrupt", "Server cancels the reply when you talk over it", "interrupt_response; the page always stops playback when you interrupt.");
    this.pttHelp = h("p", { class: "help", id: "ptt-help" }, "Hold the talk button or the space bar while you speak; release to send.");

    this.applied = h("span", { class: "applied", id: "settings-applied", "aria-live": "polite" });
    this.root.append(
      h(
        "form",
        { class: "form", id: "settings-form", onsubmit: (e) => e.preventDefault() },
        h("div", { class: "settings-head" }, h("h2", { class: "section-title" }, "Voice"), this.applied),
        h(
          "div",
          { class: "field-row" },
          field("set-voice", "Voice", voice),
          field("set-speed", "Speed", range("set-speed", "speed", 0.25, 1.5, 0.05, (v) => `${v.toFixed(2)}×`)),
        ),
        h(
          "div",
          { class: "field" },
          h("div", { class: "settings-head" }, h("label", { for: "set-instructions" }, "Instructions"), reset),
          this.instructions,
        ),
        h("h2", { class: "section-title" }, "Turn taking"),
        segmented("turn", "Turn detection", [
          ["server_vad", "Voice activity"],
          ["semantic_vad", "Semantic"],
          ["push_to_talk", "Push to talk"],
        ]),
        this.vadFields,
        this.semanticFields,
        this.pttHelp,
        this.interruptField,
        check("set-transcription", "transcription", "Transcribe my speech", "Shows what you said in the conversation."),
        h("h2", { class: "section-title" }, "Microphone"),
        check("set-echoCancellation", "echoCancellation", "Echo cancellation", "Keeps Parley's own voice out of your microphone."),
        check("set-noiseSuppression", "noiseSuppression", "Noise suppression"),
        check("set-autoGainControl", "autoGainControl", "Automatic gain"),
        h("h2", { class: "section-title" }, "Connection"),
        segmented("transport", "Transport", [
          ["webrtc", "WebRTC"],
          ["websocket", "WebSocket"],
        ]),
        h("p", { class: "help", id: "transport-help" }),
      ),
    );
    this.transportHelp = this.root.querySelector("#transport-help");
  }

  sync() {
    const s = this.settings;
    this.vadFields.hidden = s.turn !== "server_vad";
    this.semanticFields.hidden = s.turn !== "semantic_vad";
    this.pttHelp.hidden = s.turn !== "push_to_talk";
    this.interruptField.hidden = s.turn === "push_to_talk";
    this.transportHelp.textContent =
      s.transport === "webrtc"
        ? "Audio over WebRTC (Opus); the server tracks playback. Applies on the next connect."
        : "Audio as PCM16 over a WebSocket; this page plays it and reports what you heard. Applies on the next connect.";
  }
}

// The events panel: every client and server event with direction and time.
// Filter by direction, category and type, full-text search, expandable JSON,
// auto-scroll that pauses when you scroll up, per-type counts.
//
// Stays fast in long sessions: events are stored in a bounded array (oldest
// pruned), at most `maxRows` rows are in the DOM, new rows are appended in one
// batch per frame, and search text is computed once per event, on demand.
import { h, icon } from "../util/dom.js";
import { clock } from "../util/format.js";

export const AUDIO_TYPES = new Set(["input_audio_buffer.append", "response.output_audio.delta"]);

const CATEGORIES = [
  ["session", "Session"],
  ["input", "Input"],
  ["conversation", "Conversation"],
  ["response", "Response"],
  ["output", "Playback"],
  ["error", "Errors"],
  ["other", "Other"],
];

export function categoryOf(type) {
  if (type === "error") return "error";
  if (type.startsWith("session.")) return "session";
  if (type.startsWith("input_audio_buffer.")) return "input";
  if (type.startsWith("conversation.")) return "conversation";
  if (type.startsWith("response.")) return "response";
  if (type.startsWith("output_audio_buffer.")) return "output";
  return "other";
}

// A copy safe to keep: base64 audio replaced by its size.
function lighten(ev) {
  if (ev.type === "input_audio_buffer.append" && typeof ev.audio === "string") {
    return { ...ev, audio: `<${Math.floor((ev.audio.length * 3) / 4)} bytes of base64 audio>` };
  }
  if (ev.type === "response.output_audio.delta" && typeof ev.delta === "string") {
    return { ...ev, delta: `<${Math.floor((ev.delta.length * 3) / 4)} bytes of base64 audio>` };
  }
  if (ev.type === "conversation.item.retrieved" && ev.item && Array.isArray(ev.item.content)) {
    const content = ev.item.content.map((c) =>
      typeof c.audio === "string" ? { ...c, audio: `<${Math.floor((c.audio.length * 3) / 4)} bytes of base64 audio>` } : c,
    );
    return { ...ev, item: { ...ev.item, content } };
  }
  return ev;
}

const ROW = (() => {
  const el = document.createElement("div");
  el.className = "ev";
  el.setAttribute("role", "listitem");
  el.innerHTML =
    '<button type="button" class="ev-line" aria-expanded="false"><span class="ev-time"></span>' +
    '<span class="ev-dir"></span><span class="ev-type"></span><span class="ev-sum"></span></button>';
  return el;
})();

const trim = (s, n = 90) => (s.length > n ? `${s.slice(0, n)}…` : s);

export function summarize(ev) {
  const t = ev.type;
  if (t === "error") return (ev.error && (ev.error.message || ev.error.code)) || "";
  if (t.endsWith(".delta") && typeof ev.delta === "string") return AUDIO_TYPES.has(t) ? ev.delta : JSON.stringify(ev.delta);
  if (t === "input_audio_buffer.append") return ev.audio;
  if (t === "session.update" || t === "session.updated" || t === "session.created") {
    const s = ev.session || {};
    const td = s.audio && s.audio.input && "turn_detection" in s.audio.input ? s.audio.input.turn_detection : undefined;
    const parts = [];
    if (s.audio && s.audio.output && s.audio.output.voice) parts.push(`voice=${s.audio.output.voice}`);
    if (td !== undefined) parts.push(`turn=${td ? td.type : "manual"}`);
    if (s.instructions !== undefined) parts.push(`instructions(${s.instructions.length})`);
    return parts.join(" ");
  }
  if (ev.item) {
    const it = ev.item;
    const c = (it.content || [])[0] || {};
    const text = c.text || c.transcript || it.name || it.output || "";
    return `${it.type}${it.role ? `:${it.role}` : ""} ${it.id || ""} ${text ? `“${trim(String(text), 60)}”` : ""}`;
  }
  if (ev.response) return `${ev.response.id || ""} ${ev.response.status || ""}`;
  if (typeof ev.transcript === "string") return `“${trim(ev.transcript)}”`;
  if (typeof ev.text === "string") return `“${trim(ev.text)}”`;
  if (typeof ev.arguments === "string") return `${ev.name || ""} ${trim(ev.arguments)}`;
  if (t === "parley.metrics") return `first audio sent at ${ev.first_audio_sent_ms} ms`;
  if (t === "parley.agent") return `agent ${ev.agent} (${ev.scenario}) voice=${ev.voice || "default"}`;
  if (t === "parley.handoff") return `${ev.from_agent} → ${ev.to_agent} voice=${ev.voice || "default"}${ev.voice_kept ? " (kept)" : ""}`;
  if (t === "parley.guardrail") return `${ev.rule}: “${ev.detail}” stopped ${ev.response_id || ""}`;
  if (t === "parley.supervisor") return `${ev.status}${ev.answer ? ` “${trim(ev.answer, 60)}”` : ""}${ev.ms ? ` in ${ev.ms} ms` : ""}`;
  if (ev.audio_end_ms !== undefined) return `${ev.item_id || ""} audio_end_ms=${ev.audio_end_ms}`;
  if (ev.audio_start_ms !== undefined) return `${ev.item_id || ""} audio_start_ms=${ev.audio_start_ms}`;
  if (ev.item_id) return ev.item_id;
  if (ev.response_id) return ev.response_id;
  return "";
}

export class EventsPanel {
  constructor(root, { maxStored = 20000, maxRows = 300, onCount = () => {} } = {}) {
    this.root = root;
    this.maxStored = maxStored;
    this.maxRows = maxRows;
    this.onCount = onCount;
    this.records = [];
    this.pruned = 0;
    this.total = 0;
    this.seq = 0;
    this.typeCounts = new Map();
    this.catCounts = new Map();
    this.pending = [];
    this.scheduled = false;
    this.origin = performance.now();
    this.filter = { dir: "all", cats: new Set(), type: "", q: "" };
    this.debugAudio = false;
    this.stick = true;
    this.unseen = 0;
    this.window = maxRows; // how many matching rows to show (grows with "show older")
    this.rendered = 0;
    this.build();
  }

  build() {
    const search = h("input", { type: "search", placeholder: "Search events", "aria-label": "Search events", id: "events-search" });
    search.addEventListener("input", () => {
      this.filter.q = search.value.trim().toLowerCase();
      this.rerender();
    });
    this.typeSelect = h("select", { class: "select", "aria-label": "Filter by event type", id: "events-type" }, h("option", { value: "" }, "All types"));
    this.typeSelect.addEventListener("change", () => {
      this.filter.type = this.typeSelect.value;
      this.rerender();
    });
    this.typeSelect.addEventListener("focus", () => this.refreshTypes());
    this.typeSelect.addEventListener("pointerdown", () => this.refreshTypes());
    this.dirSelect = h(
      "select",
      { class: "select", "aria-label": "Filter by direction", id: "events-dir" },
      h("option", { value: "all" }, "Both ways"),
      h("option", { value: "out" }, "Sent ↑"),
      h("option", { value: "in" }, "Received ↓"),
    );
    this.dirSelect.addEventListener("change", () => {
      this.filter.dir = this.dirSelect.value;
      this.rerender();
    });
    this.chips = new Map();
    const chips = h("div", { class: "chips", role: "group", "aria-label": "Filter by category" });
    for (const [cat, label] of CATEGORIES) {
      const n = h("span", { class: "n" }, "0");
      const chip = h("button", { type: "button", class: "chip", "aria-pressed": "false", dataset: { cat } }, label, n);
      chip.addEventListener("click", () => {
        if (this.filter.cats.has(cat)) this.filter.cats.delete(cat);
        else this.filter.cats.add(cat);
        chip.setAttribute("aria-pressed", String(this.filter.cats.has(cat)));
        this.rerender();
      });
      this.chips.set(cat, { chip, n });
      chips.append(chip);
    }
    const debug = h("input", { type: "checkbox", id: "events-debug" });
    debug.addEventListener("change", () => {
      this.debugAudio = debug.checked;
      this.rerender();
    });
    this.status = h("span", { class: "ev-status", id: "events-status" }, "No events yet");
    const clear = h("button", { type: "button", class: "btn btn-ghost btn-sm", id: "events-clear" }, icon("trash"), "Clear");
    clear.addEventListener("click", () => this.clear());
    this.list = h("div", { class: "ev-list", id: "events-list", role: "list", "aria-label": "Events", tabindex: "0" });
    this.older = h("button", { type: "button", class: "btn btn-ghost btn-sm", id: "events-older" }, "Show older events");
    this.older.addEventListener("click", () => {
      this.window += this.maxRows;
      this.rerender({ keepScroll: true });
    });
    this.olderWrap = h("div", { class: "ev-note" }, this.older);
    this.jump = h("button", { type: "button", class: "btn btn-primary btn-sm", id: "events-jump", hidden: true }, icon("down"), "New events");
    this.jump.addEventListener("click", () => {
      this.stick = true;
      this.list.scrollTop = this.list.scrollHeight;
      this.updateJump();
    });
    this.list.addEventListener("scroll", () => {
      this.stick = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 30;
      if (this.stick) this.unseen = 0;
      this.updateJump();
    });
    this.list.addEventListener("click", (e) => {
      const line = e.target.closest(".ev-line");
      if (line) this.toggle(line.parentElement);
    });
    this.root.append(
      h(
        "div",
        { class: "ev-toolbar" },
        h("div", { class: "ev-row1" }, h("label", { class: "search" }, icon("search"), search), this.typeSelect),
        chips,
        h(
          "div",
          { class: "ev-row3" },
          this.dirSelect,
          h("label", { class: "switch", for: "events-debug" }, debug, "Audio events"),
          h("span", { class: "spacer" }),
          this.status,
          clear,
        ),
      ),
      this.list,
      h("div", { class: "ev-footer" }, this.jump),
    );
  }

  setOrigin(t) {
    this.origin = t;
  }

  // ------------------------------------------------------------------ intake

  add({ dir, event, t = performance.now() }) {
    const type = event.type || "(no type)";
    const cat = categoryOf(type);
    this.total++;
    this.typeCounts.set(type, (this.typeCounts.get(type) || 0) + 1);
    this.catCounts.set(cat, (this.catCounts.get(cat) || 0) + 1);
    const audio = AUDIO_TYPES.has(type);
    if (audio && !this.debugAudio) {
      this.schedule();
      return;
    }
    const rec = { seq: ++this.seq, dir, t, type, cat, audio, event: lighten(event), search: null, error: type === "error" };
    this.records.push(rec);
    if (this.records.length > this.maxStored) {
      const drop = Math.ceil(this.maxStored / 10);
      this.records.splice(0, drop);
      this.pruned += drop;
    }
    this.pending.push(rec);
    this.schedule();
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => this.flush());
    setTimeout(() => this.flush(), 120); // rAF does not run in background tabs
  }

  matches(rec) {
    const f = this.filter;
    if (rec.audio && !this.debugAudio) return false;
    if (f.dir !== "all" && rec.dir !== f.dir) return false;
    if (f.cats.size && !f.cats.has(rec.cat)) return false;
    if (f.type && rec.type !== f.type) return false;
    if (f.q) {
      if (rec.search === null) rec.search = `${rec.type} ${JSON.stringify(rec.event)}`.toLowerCase();
      if (!rec.search.includes(f.q)) return false;
    }
    return true;
  }

  flush() {
    if (!this.scheduled) return;
    this.scheduled = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length) {
      const frag = document.createDocumentFragment();
      let added = 0;
      for (const rec of batch) {
        if (!this.matches(rec)) continue;
        frag.append(this.row(rec));
        added++;
      }
      if (added) {
        this.list.append(frag);
        this.rendered += added;
        // Keep the DOM small: drop the oldest rows beyond the window.
        if (this.rendered > this.window) {
          if (this.olderWrap.parentNode) this.olderWrap.remove();
          while (this.rendered > this.window && this.list.firstElementChild) {
            this.list.firstElementChild.remove();
            this.rendered--;
          }
          this.list.prepend(this.olderWrap);
        }
        if (this.stick) this.list.scrollTop = this.list.scrollHeight;
        else this.unseen += added;
      }
    }
    this.updateCounts();
    this.updateJump();
  }

  // Rows are cloned from a template: far cheaper than building each node.
  row(rec) {
    const el = ROW.cloneNode(true);
    el.dataset.dir = rec.dir;
    el.dataset.seq = String(rec.seq);
    el.dataset.type = rec.type;
    if (rec.error) el.dataset.error = "true";
    const [time, dir, type, sum] = el.firstChild.children;
    time.textContent = clock(rec.t, this.origin);
    dir.textContent = rec.dir === "out" ? "↑" : "↓";
    dir.title = rec.dir === "out" ? "Sent by the page" : "Received from the server";
    type.textContent = rec.type;
    sum.textContent = trim(summarize(rec.event) || "", 140);
    return el;
  }

  toggle(el) {
    const line = el.firstElementChild;
    const open = line.getAttribute("aria-expanded") === "true";
    if (open) {
      el.querySelector("pre").remove();
      line.setAttribute("aria-expanded", "false");
      return;
    }
    const seq = Number(el.dataset.seq);
    const rec = this.findRecord(seq);
    el.append(h("pre", { class: "ev-json" }, rec ? JSON.stringify(rec.event, null, 2) : "(pruned)"));
    line.setAttribute("aria-expanded", "true");
  }

  findRecord(seq) {
    // Records are in seq order: binary search.
    let lo = 0;
    let hi = this.records.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = this.records[mid].seq;
      if (s === seq) return this.records[mid];
      if (s < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return null;
  }

  // ------------------------------------------------------------------ filtering

  rerender({ keepScroll = false } = {}) {
    this.pending = []; // the full re-render below includes them
    this.scheduled = false;
    const rows = [];
    let more = false;
    for (let i = this.records.length - 1; i >= 0; i--) {
      const rec = this.records[i];
      if (!this.matches(rec)) continue;
      if (rows.length >= this.window) {
        more = true;
        break;
      }
      rows.push(rec);
    }
    const frag = document.createDocumentFragment();
    if (more) frag.append(this.olderWrap);
    for (let i = rows.length - 1; i >= 0; i--) frag.append(this.row(rows[i]));
    const prevHeight = this.list.scrollHeight - this.list.scrollTop;
    this.list.replaceChildren(frag);
    this.rendered = rows.length;
    this.matching = rows.length;
    if (keepScroll) this.list.scrollTop = this.list.scrollHeight - prevHeight;
    else {
      this.stick = true;
      this.unseen = 0;
      this.list.scrollTop = this.list.scrollHeight;
    }
    this.updateCounts();
    this.updateJump();
  }

  updateCounts() {
    for (const [cat, { n }] of this.chips) n.textContent = String(this.catCounts.get(cat) || 0);
    const shown = this.rendered;
    const f = this.filter;
    const filtered = f.q || f.type || f.cats.size || f.dir !== "all";
    this.status.textContent = this.total
      ? `${filtered ? `${shown.toLocaleString()} shown · ` : ""}${this.total.toLocaleString()} events${this.pruned ? ` (${this.pruned.toLocaleString()} pruned)` : ""}`
      : "No events yet";
    this.onCount(this.total);
    if (this.typeCounts.size !== this.knownTypes) this.refreshTypes();
  }

  refreshTypes() {
    this.knownTypes = this.typeCounts.size;
    const current = this.typeSelect.value;
    const opts = [h("option", { value: "" }, "All types")];
    for (const type of [...this.typeCounts.keys()].sort()) {
      opts.push(h("option", { value: type }, `${type} (${this.typeCounts.get(type).toLocaleString()})`));
    }
    this.typeSelect.replaceChildren(...opts);
    this.typeSelect.value = current;
  }

  updateJump() {
    const show = !this.stick && this.unseen > 0;
    this.jump.hidden = !show;
    if (show) this.jump.lastChild.textContent = `${this.unseen.toLocaleString()} new event${this.unseen === 1 ? "" : "s"}`;
  }

  clear() {
    this.records = [];
    this.pending = [];
    this.pruned = 0;
    this.total = 0;
    this.typeCounts.clear();
    this.catCounts.clear();
    this.unseen = 0;
    this.window = this.maxRows;
    this.rerender();
  }
}

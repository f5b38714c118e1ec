// The scenario picker and the "who is speaking" chip. A scenario runs on the server (handoffs,
// supervisor, guardrails); the page chooses one before connecting and shows what the server
// reports: parley.agent / parley.handoff / parley.supervisor / parley.guardrail.
const STORAGE_KEY = "parley.scenario.v1";

export class ScenarioUi {
  constructor({ select, chip, conversation }) {
    this.select = select;
    this.chip = chip;
    this.conversation = conversation;
    this.scenarios = new Map();
    this.select.addEventListener("change", () => {
      localStorage.setItem(STORAGE_KEY, this.select.value);
      this.showPlanned();
    });
  }

  // Fill the picker from /api/config (its `scenarios` and `default_scenario`).
  load(cfg) {
    const list = cfg.scenarios || [];
    this.scenarios = new Map(list.map((s) => [s.name, s]));
    const keep = [...this.select.options].filter((o) => o.value === "none");
    this.select.replaceChildren(...keep);
    for (const s of list) {
      const opt = document.createElement("option");
      opt.value = s.name;
      opt.textContent = s.title;
      opt.title = s.description || "";
      this.select.append(opt);
    }
    const wanted = new URLSearchParams(location.search).get("scenario") || localStorage.getItem(STORAGE_KEY) || cfg.default_scenario;
    this.select.value = wanted && (wanted === "none" || this.scenarios.has(wanted)) ? wanted : "none";
    this.showPlanned();
  }

  // What to ask the server for: a scenario name, or "none".
  get chosen() {
    return this.select.value || "none";
  }

  setConnected(connected) {
    this.select.disabled = connected; // a session keeps its scenario; pick another, then reconnect
    if (!connected) this.showPlanned();
  }

  showPlanned() {
    const s = this.scenarios.get(this.chosen);
    const first = s && s.agents.find((a) => a.name === s.start);
    this.show(first ? { title: first.title, voice: first.voice } : null);
  }

  show(agent) {
    this.chip.hidden = !agent;
    if (agent) this.chip.textContent = agent.voice ? `${agent.title} · ${agent.voice}` : agent.title;
    this.chip.dataset.agent = agent ? agent.name || "" : "";
  }

  // A server event of the scenario: update the chip and leave a breadcrumb in the transcript.
  handle(ev) {
    switch (ev.type) {
      case "parley.agent":
        this.show({ name: ev.agent, title: ev.title, voice: ev.voice });
        break;
      case "parley.handoff": {
        this.show({ name: ev.to_agent, title: ev.title, voice: ev.voice });
        const voice = ev.voice_kept ? ` (voice stays ${ev.voice}: the assistant has already spoken)` : "";
        this.conversation.divider(`Handed off to ${ev.title}${voice}`);
        break;
      }
      case "parley.supervisor":
        if (ev.status === "answered") this.conversation.notice(`Supervisor answered in ${ev.ms} ms: “${ev.answer}”`);
        else if (ev.status === "failed") this.conversation.notice(`Supervisor unavailable: ${ev.error}`, "error");
        break;
      case "parley.guardrail":
        this.conversation.notice(
          `Guardrail stopped the reply (${ev.rule}: “${ev.detail}”)${ev.audio_end_ms ? `; cut at ${(ev.audio_end_ms / 1000).toFixed(1)} s` : ""}. The agent corrects itself.`,
          "guardrail",
        );
        break;
      default:
        break;
    }
  }
}

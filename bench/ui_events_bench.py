"""Browser UI benchmark: the events panel with 10,000 events, and page load → connected.

    .venv/bin/python bench/ui_events_bench.py [--events 10000] [--loads 10] [--real-models]

Runs ``parley serve`` (embedded engine; fake models unless --real-models, since
neither measurement runs a model) on a loopback port and drives Debian Chromium
headless with Playwright, like tests/ui. Measured inside the page with
performance.now():

* render: one event into the panel (EventsPanel.add + flush) including a forced
  layout, for each of N events as the panel fills up: p50/p95/max;
* filter: re-filtering the full panel (category, type, direction, search text,
  clearing the filter) including layout, 20 rounds each: p50/p95 (search also
  "cold", the first search that builds the per-event search text);
* load → connected: navigation start to ``session.updated`` on a fresh page with
  ``?connect=1``, over WebRTC and over WebSocket: p50/p95.

Results go to bench/results/ui.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "ui.json"

# Synthetic events shaped like a real session's (audio events excluded: the panel
# only keeps them with its debug switch on).
GENERATE = r"""
(n) => {
  const words = "the capital of france is paris a lovely city on the seine river with many museums".split(" ");
  const types = [
    ["in", "input_audio_buffer.speech_started", i => ({audio_start_ms: i * 10, item_id: `item_u${i}`})],
    ["in", "input_audio_buffer.speech_stopped", i => ({audio_end_ms: i * 10 + 900, item_id: `item_u${i}`})],
    ["in", "conversation.item.added", i => ({item: {id: `item_u${i}`, type: "message", role: "user", status: "completed",
        content: [{type: "input_audio", transcript: null}]}, previous_item_id: null})],
    ["in", "conversation.item.input_audio_transcription.completed", i => ({item_id: `item_u${i}`, content_index: 0,
        transcript: "What is the capital of France?", usage: {type: "duration", seconds: 1.2}})],
    ["in", "response.created", i => ({response: {id: `resp_${i}`, object: "realtime.response", status: "in_progress", output: []}})],
    ["in", "response.output_audio_transcript.delta", i => ({response_id: `resp_${i}`, item_id: `item_a${i}`, output_index: 0,
        content_index: 0, delta: " " + words[i % words.length]})],
    ["in", "response.output_audio_transcript.delta", i => ({response_id: `resp_${i}`, item_id: `item_a${i}`, output_index: 0,
        content_index: 0, delta: " " + words[(i * 7) % words.length]})],
    ["in", "output_audio_buffer.started", i => ({response_id: `resp_${i}`})],
    ["in", "response.done", i => ({response: {id: `resp_${i}`, status: "completed", output: [{id: `item_a${i}`, type: "message",
        role: "assistant", content: [{type: "output_audio", transcript: "The capital of France is Paris."}]}],
        usage: {total_tokens: 120, input_tokens: 100, output_tokens: 20}}})],
    ["out", "conversation.item.create", i => ({item: {type: "message", role: "user", content: [{type: "input_text", text: `message ${i}`}]}})],
    ["out", "response.create", i => ({})],
    ["out", "session.update", i => ({session: {type: "realtime", audio: {output: {speed: 1 + (i % 5) / 10}}}})],
    ["in", "session.updated", i => ({session: {type: "realtime", instructions: "You are Parley.", audio: {output: {voice: "marin", speed: 1}}}})],
    ["in", "parley.metrics", i => ({response_id: `resp_${i}`, stt_done_ms: 80, llm_first_token_ms: 200, first_audio_sent_ms: 500})],
  ];
  const out = [];
  for (let i = 0; i < n; i++) {
    const [dir, type, make] = types[i % types.length];
    out.push({dir, event: {type, event_id: `event_${i}`, ...make(Math.floor(i / types.length))}});
  }
  return out;
}
"""

MEASURE = r"""
async ([n, rounds]) => {
  const gen = (__GENERATE__)(n);
  const panel = parley.events;
  document.querySelector('#tab-events').click();
  panel.clear();
  const list = panel.list;
  const render = [];
  for (const {dir, event} of gen) {
    const t0 = performance.now();
    panel.add({dir, event, t: t0});
    panel.flush();
    void list.lastElementChild && list.lastElementChild.offsetHeight;  // force style + layout
    render.push(performance.now() - t0);
  }
  await new Promise(r => requestAnimationFrame(() => r()));
  const timeIt = (fn) => { const t0 = performance.now(); fn(); void list.offsetHeight; return performance.now() - t0; };
  const f = panel.filter;
  const reset = () => { f.cats.clear(); f.type = ""; f.dir = "all"; f.q = ""; };
  // The first search builds each event's search text once.
  reset();
  const cold = timeIt(() => { f.q = "paris"; panel.rerender(); });
  const filters = {
    category: () => { reset(); f.cats.add("response"); panel.rerender(); },
    type: () => { reset(); f.type = "response.done"; panel.rerender(); },
    direction: () => { reset(); f.dir = "out"; panel.rerender(); },
    search: () => { reset(); f.q = "capital of france"; panel.rerender(); },
    search_rare: () => { reset(); f.q = "event_9999"; panel.rerender(); },
    clear: () => { reset(); panel.rerender(); },
  };
  const filter = {};
  for (const [name, fn] of Object.entries(filters)) {
    filter[name] = [];
    for (let i = 0; i < rounds; i++) filter[name].push(timeIt(fn));
  }
  reset(); panel.rerender();
  return {render, filter, cold_search_ms: cold, stored: panel.records.length, rows: list.children.length,
          total: panel.total};
}
""".replace("__GENERATE__", GENERATE)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))], 3)


def summary(xs: list[float]) -> dict[str, float]:
    return {
        "n": len(xs),
        "p50": pct(xs, 50),
        "p95": pct(xs, 95),
        "max": round(max(xs), 3),
        "mean": round(statistics.fmean(xs), 3),
    }


async def main(args: argparse.Namespace) -> dict:
    from playwright.async_api import async_playwright
    from tests.server.browser import CHROMIUM, chromium_args
    from tests.support.serve import fake_runtime, serve_local

    from parley.bench.speech import silence, write_wav
    from parley.engine.config import EngineConfig
    from parley.host.runtime import EngineRuntime

    if args.real_models:
        from tests.support.models import real_models

        runtime = EngineRuntime(EngineConfig(), models=await real_models())
    else:
        runtime = fake_runtime()
    wav = write_wav(Path(tempfile.mkdtemp()) / "silence.wav", silence(60.0))
    result: dict = {
        "benchmark": "ui",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "models": "real" if args.real_models else "fake (no model runs in these measurements)",
    }
    async with serve_local(runtime) as srv, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=chromium_args(wav))
        version = browser.version
        result["chromium"] = version

        # 1. Events panel.
        context = await browser.new_context(viewport={"width": 1360, "height": 880})
        page = await context.new_page()
        await page.goto(srv.http + "/")
        await page.wait_for_selector("body[data-ready=true]")
        data = await page.evaluate(MEASURE, [args.events, args.rounds])
        await context.close()
        result["events_panel"] = {
            "events": args.events,
            "stored": data["stored"],
            "dom_rows": data["rows"],
            "render_ms": summary(data["render"]),
            "render_last_1000_ms": summary(data["render"][-1000:]),
            "filter_ms": {k: summary(v) for k, v in data["filter"].items()},
            "filter_all_ms": summary([x for v in data["filter"].values() for x in v]),
            "search_cold_ms": round(data["cold_search_ms"], 3),
        }

        # 2. Page load → connected.
        loads: dict[str, list[float]] = {"webrtc": [], "websocket": []}
        phases: dict[str, list[dict]] = {"webrtc": [], "websocket": []}
        for transport in loads:
            for _ in range(args.loads):
                context = await browser.new_context()
                await context.add_init_script(
                    f"localStorage.setItem('parley.settings.v1', JSON.stringify({{transport: '{transport}'}}))"
                )
                page = await context.new_page()
                await page.goto(srv.http + "/?connect=1")
                await page.wait_for_selector("#status-pill[data-state=connected]", timeout=30000)
                marks = await page.evaluate(
                    "({ready: parley.readyAt, ...parley.client.timeline, offer: parley.client.transport.offeredAt,"
                    " answer: parley.client.transport.answeredAt, connected: parley.connectedAt})"
                )
                loads[transport].append(marks["connected"])
                phases[transport].append(marks)
                await page.evaluate("parley.client.disconnect()")
                await context.close()
        result["load_to_connected_ms"] = {k: summary(v) for k, v in loads.items()}
        # Median time of each step, from navigation start (page scripts ready, Connect, mic open,
        # secret minted, offer posted, answer back, channel/socket open, session.updated).
        result["load_phases_p50_ms"] = {
            k: {
                name: round(statistics.median(m[name] for m in v if m.get(name) is not None), 1)
                for name in (
                    "ready",
                    "start",
                    "mic",
                    "secret",
                    "offer",
                    "answer",
                    "open",
                    "updated",
                    "connected",
                )
                if any(m.get(name) is not None for m in v)
            }
            for k, v in phases.items()
        }
        await browser.close()
    return result


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=20, help="repetitions of each filter")
    parser.add_argument("--loads", type=int, default=10, help="page loads per transport")
    parser.add_argument("--real-models", action="store_true", help="load the real local models in the engine")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    ev = result["events_panel"]
    print(f"events panel, {ev['events']:,} events ({ev['dom_rows']} rows in the DOM):")
    print(
        f"  render one event   p50 {ev['render_ms']['p50']:.2f} ms   p95 {ev['render_ms']['p95']:.2f} ms   "
        f"max {ev['render_ms']['max']:.2f} ms"
    )
    for name, s in ev["filter_ms"].items():
        print(f"  filter {name:<12} p50 {s['p50']:.2f} ms   p95 {s['p95']:.2f} ms")
    print(
        f"  filter (all)        p50 {ev['filter_all_ms']['p50']:.2f} ms   p95 {ev['filter_all_ms']['p95']:.2f} ms"
        f"   first search {ev['search_cold_ms']:.1f} ms"
    )
    for transport, s in result["load_to_connected_ms"].items():
        print(
            f"page load → connected ({transport}): p50 {s['p50']:.0f} ms   p95 {s['p95']:.0f} ms   (n={s['n']})"
        )
    for transport, marks in result["load_phases_p50_ms"].items():
        print(
            f"  {transport} steps (p50 ms from navigation): "
            + ", ".join(f"{k} {v:.0f}" for k, v in marks.items())
        )
    print(f"→ {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())

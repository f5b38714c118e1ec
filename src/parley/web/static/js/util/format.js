// Formatting of times and durations for the UI.

export function ms(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const abs = Math.abs(value);
  if (abs >= 10000) return `${(value / 1000).toFixed(1)} s`;
  if (abs >= 1000) return `${(value / 1000).toFixed(2)} s`;
  return `${Math.round(value)} ms`;
}

// mm:ss.mmm since `origin` (performance.now() milliseconds)
export function clock(t, origin = 0) {
  const d = Math.max(0, t - origin);
  const m = Math.floor(d / 60000);
  const s = Math.floor((d % 60000) / 1000);
  const milli = Math.floor(d % 1000);
  return `${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}.${String(milli).padStart(3, "0")}`;
}

export function wallTime(date = new Date()) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function percentile(values, p) {
  const xs = values.filter((v) => typeof v === "number" && !Number.isNaN(v)).sort((a, b) => a - b);
  if (!xs.length) return null;
  const idx = Math.min(xs.length - 1, Math.max(0, Math.ceil((p / 100) * xs.length) - 1));
  return xs[idx];
}

export function plural(n, word) {
  return `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
}

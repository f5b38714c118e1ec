// Default settings. The server's /api/config defaults win where it gives them.

export const DEFAULT_INSTRUCTIONS = `You are Parley, a friendly voice assistant in a live spoken conversation.
Everything you say is turned into speech, so talk like a person on the phone:
- Keep replies short: one to three sentences, then let the user speak.
- Use plain spoken words. No lists, markdown, emoji, code, or URLs.
- Answer the question first; add detail only if asked.
- If you did not catch what the user said, ask them to repeat it.
- If the user interrupts you, stop and respond to what they just said.
- When you use a tool, say briefly what you found.`;

export const DEFAULT_SETTINGS = {
  voice: "marin",
  speed: 1,
  instructions: DEFAULT_INSTRUCTIONS,
  // semantic_vad waits through pauses inside a sentence (smart-turn model + transcript);
  // `parley bench turn-taking` measured it against server_vad.
  turn: "semantic_vad", // server_vad | semantic_vad | push_to_talk
  threshold: 0.5,
  silenceMs: 500,
  prefixMs: 300,
  eagerness: "low", // the setting that did not cut in on pauses inside a sentence (bench turn-taking)
  interrupt: true,
  transcription: true,
  transport: "webrtc", // webrtc | websocket
  echoCancellation: true,
  noiseSuppression: true,
  autoGainControl: true,
};

// Merge the server's defaults (GA shapes) into page settings.
export function serverDefaults(cfg) {
  const d = (cfg && cfg.defaults) || {};
  const out = { ...DEFAULT_SETTINGS };
  if (typeof d.instructions === "string" && d.instructions.trim()) out.instructions = d.instructions;
  if (d.voice) out.voice = d.voice;
  if (typeof d.speed === "number") out.speed = d.speed;
  if ("turn_detection" in d) {
    const td = d.turn_detection;
    if (td === null) out.turn = "push_to_talk";
    else if (td && td.type) {
      out.turn = td.type === "semantic_vad" ? "semantic_vad" : "server_vad";
      if (typeof td.threshold === "number") out.threshold = td.threshold;
      if (typeof td.silence_duration_ms === "number") out.silenceMs = td.silence_duration_ms;
      if (typeof td.prefix_padding_ms === "number") out.prefixMs = td.prefix_padding_ms;
      if (td.eagerness) out.eagerness = td.eagerness;
      if (typeof td.interrupt_response === "boolean") out.interrupt = td.interrupt_response;
    }
  }
  if ("transcription" in d) out.transcription = Boolean(d.transcription);
  const voices = (cfg && cfg.voices) || [];
  if (voices.length && !voices.includes(out.voice)) out.voice = voices[0];
  return out;
}

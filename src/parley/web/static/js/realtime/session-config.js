// Page settings ⇄ GA session config (`session.update` / the secret's session).

export const PCM = { type: "audio/pcm", rate: 24000 };

export function turnDetection(s) {
  if (s.turn === "push_to_talk") return null;
  if (s.turn === "semantic_vad") {
    return { type: "semantic_vad", eagerness: s.eagerness, create_response: true, interrupt_response: s.interrupt };
  }
  return {
    type: "server_vad",
    threshold: Number(s.threshold),
    prefix_padding_ms: Number(s.prefixMs),
    silence_duration_ms: Number(s.silenceMs),
    create_response: true,
    interrupt_response: s.interrupt,
  };
}

export function transcription(s, defaults) {
  if (!s.transcription) return null;
  const d = defaults && defaults.transcription;
  return d && d.model ? { ...d } : { model: "whisper-1" };
}

// The full session config for minting a secret or the first session.update.
export function fullSession(s, cfg) {
  return {
    type: "realtime", // the server picks the model
    output_modalities: ["audio"],
    instructions: s.instructions,
    audio: {
      input: { format: PCM, transcription: transcription(s, cfg.defaults), turn_detection: turnDetection(s) },
      output: { format: PCM, voice: s.voice, speed: Number(s.speed) },
    },
  };
}

// Only what changed between two settings objects, as a partial session.update payload.
// Returns null when nothing that the session knows about changed.
export function sessionDiff(before, after, cfg) {
  const session = { type: "realtime" };
  let changed = false;
  if (before.instructions !== after.instructions) {
    session.instructions = after.instructions;
    changed = true;
  }
  const output = {};
  if (before.voice !== after.voice) output.voice = after.voice;
  if (Number(before.speed) !== Number(after.speed)) output.speed = Number(after.speed);
  const input = {};
  if (JSON.stringify(turnDetection(before)) !== JSON.stringify(turnDetection(after))) {
    input.turn_detection = turnDetection(after);
  }
  if (before.transcription !== after.transcription) input.transcription = transcription(after, cfg.defaults);
  if (Object.keys(output).length || Object.keys(input).length) {
    session.audio = {};
    if (Object.keys(input).length) session.audio.input = input;
    if (Object.keys(output).length) session.audio.output = output;
    changed = true;
  }
  return changed ? session : null;
}

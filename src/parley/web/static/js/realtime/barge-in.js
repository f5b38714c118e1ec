// The client's duties on barge-in: one table, the same as the Python client's
// (parley/client/barge_in.py) and the README's "Barge-in" section.

// Whether the session cancels (and over WebRTC clears) by itself when the user starts speaking.
// A missing interrupt_response means true: the GA default, and what the engine does.
export function serverInterrupts(session) {
  const td = session && session.audio && session.audio.input && session.audio.input.turn_detection;
  return Boolean(td) && td.interrupt_response !== false;
}

// voice: the server reported speech (speech_started), as opposed to a manual interrupt;
// audible: assistant audio is playing; active: a response is in progress.
// Returns what to do: stop local playback, truncate at the played position,
// response.cancel (with the response id), output_audio_buffer.clear (WebRTC).
export function bargeInDuties({ voice, serverInterrupts, overWebRtc, audible, active, truncateOverWebRtc = false }) {
  // The server stops the response itself only when the interruption is by voice and it interrupts.
  const clientStopsResponse = !voice || !serverInterrupts;
  return {
    stop: audible,
    // Over WebRTC the server truncates to what it sent; the page cannot see what its jitter
    // buffer played, so it leaves that figure alone.
    truncate: audible && (!overWebRtc || truncateOverWebRtc),
    cancel: clientStopsResponse && active,
    clear: overWebRtc && clientStopsResponse && (audible || active),
  };
}

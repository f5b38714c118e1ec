// The microphone: getUserMedia with the user's processing choices, and clear errors.
import { ParleyError, micError } from "../realtime/errors.js";

export function micConstraints({ echoCancellation = true, noiseSuppression = true, autoGainControl = true } = {}) {
  return { echoCancellation, noiseSuppression, autoGainControl, channelCount: 1 };
}

export async function openMicrophone(processing) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new ParleyError("mic-insecure", "This page is not a secure context, so the microphone API is unavailable.");
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: micConstraints(processing) });
    if (!stream.getAudioTracks().length) throw Object.assign(new Error("no audio track"), { name: "NotFoundError" });
    return stream;
  } catch (err) {
    throw micError(err);
  }
}

export function setMuted(stream, muted) {
  for (const track of stream ? stream.getAudioTracks() : []) track.enabled = !muted;
}

export function stopStream(stream) {
  for (const track of stream ? stream.getTracks() : []) track.stop();
}

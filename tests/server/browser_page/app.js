// The unmodified @openai/agents-realtime browser bundle, connected over WebRTC either through
// `parley serve` (/api/realtime/calls) or straight to the engine (/v1/realtime/calls), with an
// ek_ secret minted by /api/session. Results go to window.T for the test to read.
import { OpenAIRealtimeWebRTC, RealtimeAgent, RealtimeSession } from '/sdk/openai-realtime-agents.mjs';

const params = new URLSearchParams(location.search);
const mode = params.get('mode') || 'relay';
const T = (window.T = { state: 'starting', mode, events: [], errors: [], stats: null });
const show = (s) => { T.state = s; document.getElementById('state').textContent = s; };

async function mint() {
  const r = await fetch('/api/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ session: { audio: { input: {
      transcription: { model: 'whisper-1' }, turn_detection: { type: 'server_vad' } } } } }),
  });
  if (!r.ok) throw new Error(`/api/session: ${r.status} ${await r.text()}`);
  return (await r.json()).value;
}

async function main() {
  const secret = await mint();
  const path = mode === 'direct' ? '/v1/realtime/calls' : '/api/realtime/calls';
  const transport = new OpenAIRealtimeWebRTC({ baseUrl: location.origin + path });
  const agent = new RealtimeAgent({ name: 'Assistant', instructions: 'Answer in one short sentence.' });
  const session = new RealtimeSession(agent, {
    transport,
    model: 'gpt-realtime',
    config: { audio: { input: { transcription: { model: 'whisper-1' }, turnDetection: { type: 'server_vad' } } } },
  });
  session.on('transport_event', (e) => {
    T.events.push(JSON.parse(JSON.stringify(e)));
  });
  session.on('error', (e) => T.errors.push(String(e?.error?.message ?? e?.error ?? e)));
  T.session = session;
  T.transport = transport;
  await session.connect({ apiKey: secret });
  T.callId = transport.callId ?? null;
  show('connected');
}

window.collectStats = async () => {
  const pc = T.transport?.connectionState?.peerConnection;
  if (!pc) return null;
  const out = { inbound: null, outbound: null, pair: null };
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      out.inbound = { packets: s.packetsReceived, energy: s.totalAudioEnergy ?? 0, bytes: s.bytesReceived };
    }
    if (s.type === 'outbound-rtp' && s.kind === 'audio') out.outbound = { packets: s.packetsSent };
    if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated) out.pair = s.id;
  });
  return out;
};

window.closeSession = async () => {
  T.session?.close();
  show('closed');
};

main().catch((e) => { T.errors.push(String(e?.stack ?? e)); show('failed'); });

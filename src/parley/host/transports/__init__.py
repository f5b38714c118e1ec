"""Transports that carry a Realtime session: WebSocket (JSON events) and WebRTC (RTP + data channel)."""

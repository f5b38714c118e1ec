"""``parley serve``: the web app server (browser UI, ephemeral secrets, SDP and WebSocket relays, server tools)."""

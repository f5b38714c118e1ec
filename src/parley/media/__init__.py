"""Media and WebRTC primitives shared by the client, the engine and the transports: frame pacing,
sample queues, playout positions, RTP audio frames and ICE set-up. Nothing here knows of sessions or hosting.
"""

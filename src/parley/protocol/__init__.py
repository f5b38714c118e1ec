"""The OpenAI Realtime (GA) wire protocol: ids, events, session config, audio formats, validation."""

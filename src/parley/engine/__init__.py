"""The local Realtime engine: session state machine, turn detection and model stages."""

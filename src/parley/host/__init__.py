"""Hosting the engine: process state, keys and secrets, the ASGI app, `parley engine`, and the transports.

This package builds on the engine core (``parley.engine``), which knows nothing of it.
"""

"""Helpers shared by the test suites: fakes, fake servers, event logs, signals, the real models and the servers the tests start."""

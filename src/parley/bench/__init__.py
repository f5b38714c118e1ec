"""Benchmarks: each prints p50/p95 and writes JSON under bench/results/."""

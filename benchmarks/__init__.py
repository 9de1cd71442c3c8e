"""Benchmark harness and recorded results."""

"""Benchmarks: speed now; relevance and downstream build on the same pieces."""

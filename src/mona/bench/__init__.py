"""Benchmarks: speed, memory, scoring, top-m storage, relevance (and the sweep of MoNA's choices), downstream."""

"""Benchmarks: each prints medians/p99 and a ratio against a baseline measured in the same run."""

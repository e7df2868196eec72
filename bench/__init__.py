"""Benchmarks: figures printed beside a baseline measured in the same run (not tests; nothing asserts timing)."""

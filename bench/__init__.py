"""Benchmarks (scripts that print numbers; never timed tests)."""

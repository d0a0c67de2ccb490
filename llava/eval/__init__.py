"""Benchmark evaluation: one harness (`harness`), one adapter per benchmark, the scorer (`score`)."""

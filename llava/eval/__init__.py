"""Benchmark evaluation: what an adapter is made of (`benchmark`), one adapter per benchmark, the harness (`harness`,
`identity`, `records`) and the scorer (`score`, `tables`, `judge`)."""

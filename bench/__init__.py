"""Benchmarks (not tests): each module's main() prints its figures and writes JSON to bench/results/."""

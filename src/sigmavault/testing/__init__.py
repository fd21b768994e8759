"""Helpers for tests, benchmarks and demos (not imported by the library itself)."""

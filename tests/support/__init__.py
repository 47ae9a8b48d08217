"""Helpers shared by the tests: cases, reference models, builds, stream benches."""

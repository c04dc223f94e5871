"""Helpers only tests use (media and rows built for one test area); shared with benchmarks -> benchmarks/kit."""

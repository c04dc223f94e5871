"""Helpers only tests use (rows and media built for the sink, report and resume tests); what benchmarks share
with tests lives in benchmarks/kit."""

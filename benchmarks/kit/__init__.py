"""Code shared by benchmarks and tests: labelled media built from ../shared/media, evaluation helpers."""

# Convenience targets; each benchmark prints a table (record results in benchmarks/RESULTS.md).
PY ?= python
export OMP_NUM_THREADS ?= 1

.PHONY: setup sample test test-fast lint bench bench-ingest bench-faces bench-language bench-sync bench-lip-motion bench-pipeline bench-train bench-memory

setup:
	bash scripts/setup.sh

sample:
	$(PY) -m pipeline.build --lang all

test:
	$(PY) -m pytest -m "not gpu and not weights"

test-fast:
	$(PY) -m pytest -m "not slow and not gpu and not weights"

lint:
	ruff check pipeline mcdm_model tests benchmarks

bench: bench-ingest bench-faces bench-language bench-sync bench-lip-motion bench-pipeline bench-train bench-memory

bench-ingest:
	$(PY) benchmarks/bench_ingest.py
bench-faces:
	$(PY) benchmarks/bench_faces.py
bench-language:
	$(PY) benchmarks/bench_language.py
bench-sync:
	$(PY) benchmarks/bench_sync.py
bench-lip-motion:
	$(PY) benchmarks/bench_lip_motion.py
bench-pipeline:
	$(PY) benchmarks/bench_pipeline.py --lang en --limit 3
bench-train:
	$(PY) benchmarks/bench_train.py
bench-memory:
	$(PY) benchmarks/bench_memory.py

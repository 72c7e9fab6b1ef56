# Developer shortcuts; the test command of record is scripts/test.
FUZZ_SECONDS ?= 600

.PHONY: test fuzz fuzz-frames fuzz-http bench conformance

test:
	scripts/test

# Each fuzz target runs for FUZZ_SECONDS (default 10 minutes); needs `pip install atheris`.
fuzz: fuzz-frames fuzz-http

fuzz-frames:
	mkdir -p .fuzz/frames && python3 fuzz/fuzz_frames.py -max_total_time=$(FUZZ_SECONDS) .fuzz/frames

fuzz-http:
	mkdir -p .fuzz/http && python3 fuzz/fuzz_http.py -max_total_time=$(FUZZ_SECONDS) .fuzz/http

bench:
	python3 benchmarks/report.py
	python3 benchmarks/echo_e2e.py

conformance:
	python3 compliance/run.py

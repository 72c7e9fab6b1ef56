# Developer shortcuts; the test command of record is scripts/test.
# `make sanitize` runs the C speedups' tests under AddressSanitizer and
# UndefinedBehaviorSanitizer (GCC with libasan and libubsan; see below).
FUZZ_SECONDS ?= 600

.PHONY: test fuzz fuzz-frames fuzz-http fuzz-send bench conformance sanitize

test:
	scripts/test

# Each fuzz target runs for FUZZ_SECONDS (default 10 minutes); needs the fuzz extra (`pip install -e '.[fuzz]'`).
fuzz: fuzz-frames fuzz-http fuzz-send

fuzz-frames:
	mkdir -p .fuzz/frames && python3 fuzz/fuzz_frames.py -max_total_time=$(FUZZ_SECONDS) .fuzz/frames

fuzz-http:
	mkdir -p .fuzz/http && python3 fuzz/fuzz_http.py -max_total_time=$(FUZZ_SECONDS) .fuzz/http

fuzz-send:
	mkdir -p .fuzz/send && python3 fuzz/fuzz_send.py -max_total_time=$(FUZZ_SECONDS) .fuzz/send

bench:
	python3 benchmarks/report.py
	python3 benchmarks/echo_e2e.py

conformance:
	python3 compliance/run.py

# The whole package is built into build/sanitize/lib, C modules instrumented,
# and put first on PYTHONPATH: the normal in-place build in src/ is never
# touched, so an interrupted run leaves nothing broken.  CPython itself is not
# instrumented, so the sanitizer runtimes are preloaded; PYTHONMALLOC=malloc
# makes every object a malloc block ASan can see past the end of (pymalloc
# would hide small ones), and LeakSanitizer is off because CPython keeps
# allocations alive until exit on purpose.  Any finding stops the run with
# an error; --capture=sys lets the sanitizer's report, written by C to
# stderr, reach the terminal before the process dies.
SANITIZE_DIR := build/sanitize
SANITIZE_CC ?= gcc
SANITIZERS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SANITIZE_TESTS := tests/core/test_speedups.py tests/core/test_scanner.py tests/core/test_frames.py \
	tests/core/test_twins.py

sanitize:
	rm -rf $(SANITIZE_DIR)
	CC=$(SANITIZE_CC) CFLAGS="$(SANITIZERS) -g" LDFLAGS="$(SANITIZERS)" WSSTACK_REQUIRE_SPEEDUPS=1 \
		python3 setup.py -q build --build-base $(SANITIZE_DIR) --build-lib $(SANITIZE_DIR)/lib
	LD_PRELOAD="$$($(SANITIZE_CC) -print-file-name=libasan.so) $$($(SANITIZE_CC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	PYTHONMALLOC=malloc WSSTACK_REQUIRE_SPEEDUPS=1 PYTHONPATH=$(SANITIZE_DIR)/lib \
		sh -c 'python3 -c "import wsstack._fastcall as f, wsstack._speedups as s; \
			assert all(m.__file__.startswith(\"$(CURDIR)/$(SANITIZE_DIR)/\") for m in (f, s)), (f, s)" \
		&& python3 -m pytest -q -p no:cacheprovider --capture=sys $(SANITIZE_TESTS)'

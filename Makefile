# mha -- the two commands of the quick start are `make run` and `make test`.
# Both install what is missing (apt-get), configure with CMake and build:
# `make run` only what the build needs, `make test` the test tools too.

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_TSAN ?= build-tsan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=
FUZZ_SECONDS ?= 60

PREFIX     ?= /usr/local

# The test-only builds (ASan, TSan, fuzz) use Ninja when it is installed and
# the folder is new (an existing one keeps its generator): per compiled file
# Make's generated build spawns several helper processes, about a tenth of
# a build's CPU time on a busy 2-core machine.
NINJA_G := $(if $(shell command -v ninja 2>/dev/null),-G Ninja)
generator = $(if $(wildcard $(1)/CMakeCache.txt),,$(NINJA_G))

.PHONY: all deps deps-build build build-tests install run test test-fast test-asan test-tsan fuzz bench perf coverage clean format

all: build

# build: compiler, CMake, protobuf-c; test (deps): clang, cmocka, valgrind, ...
deps-build:
	@./tools/install-deps.sh build
deps:
	@./tools/install-deps.sh test

$(BUILD)/CMakeCache.txt: | deps-build
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

# The library, plugins and command (the tests too when cmocka is installed).
build: deps-build $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The same build with the tests switched on (after `make deps`).
build-tests: deps $(BUILD)/CMakeCache.txt
	cmake -S . -B $(BUILD) -DMHA_BUILD_TESTS=ON >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# Installs the library, headers, plugins, command, CMake and pkg-config
# files and man pages under PREFIX (default /usr/local): see README.md.
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# The built-in default job: a MiniLM-L6-shaped encoder made with `mha gen`,
# a sample dataset of token ids and its attention mask, `mha run`.
run: build
	@./tools/default-job.sh $(BUILD)

# Every test: the release build, then ASan+UBSan, then TSan for the pool,
# then each libFuzzer target for 20 s.
test: build-tests
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-tsan
	$(MAKE) --no-print-directory test-fuzz
	@echo "make test: all suites passed"

test-fast: build-tests
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# ASan+UBSan at -O1 (the sanitizers' own advice for speed; the checks are
# inserted before optimisation): at -O0 the pass took 391-410 s of CI's 15
# minutes. Line tables only (-gline-tables-only, what a sanitizer report's
# file:line needs; no variables for a debugger): the build took 212 s of CPU
# with -g, 165 s so. A freed block waits in ASan's quarantine (still
# poisoned, so a use after free is caught) up to 16 MiB of blocks, not the
# default 256: every process of the shell suites then reuses the memory it
# freed instead of faulting in fresh pages, and the CPU of cli_options,
# cli_kv_generate and cli_precision under ASan fell from 129 to 103 s
# (user + sys; 125 s with 64 MiB). A block bigger than the quarantine is
# handed back at once under either size.
test-asan: deps
	cmake -S . -B $(BUILD_ASAN) $(call generator,$(BUILD_ASAN)) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	  "-DCMAKE_C_FLAGS_DEBUG=-gline-tables-only -O1" "-DMHA_SANITIZE=address;undefined" $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=16 \
	  LSAN_OPTIONS=use_tls=0:print_suppressions=0:suppressions=$(CURDIR)/tests/lsan.supp \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) -LE slow

# The TSan and fuzz builds: RelWithDebInfo with line tables only, as the
# ASan build (TSan's build 40 s of CPU with -g, 34 s so).
SAN_RELDEBUG := "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -gline-tables-only -DNDEBUG"

test-tsan: deps
	cmake -S . -B $(BUILD_TSAN) $(call generator,$(BUILD_TSAN)) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	  $(SAN_RELDEBUG) -DMHA_SANITIZE=thread $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD_TSAN) -j $(JOBS) --target mha_tests_threads
	cd $(BUILD_TSAN) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -j $(JOBS) -L threads

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN) build-fuzz build-cov

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# ---- reliability: fuzzing and coverage (docs/RELIABILITY.md) ----
BUILD_FUZZ ?= build-fuzz
FUZZ_TARGETS := onnx_model npy tensor_proto external_data
FUZZ_CORPUS = $(BUILD_FUZZ)/tests/fuzz/corpus
.PHONY: fuzz-build test-fuzz

# The libFuzzer targets: clang, ASan + UBSan, the engine instrumented.
fuzz-build: deps
	cmake -S . -B $(BUILD_FUZZ) $(call generator,$(BUILD_FUZZ)) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	  $(SAN_RELDEBUG) "-DMHA_SANITIZE=address;undefined" -DMHA_FUZZ=ON $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))

# Runs each target FUZZ_SECONDS on its corpus (seeds + what earlier runs
# found), one after the other; prints execs/s and total execs per target.
fuzz: fuzz-build
	@sh tests/fuzz/build_corpus.sh tests/data tests/fuzz $(FUZZ_CORPUS)
	@rc=0; for t in $(FUZZ_TARGETS); do \
	  sh tests/fuzz/run_fuzz.sh $(BUILD_FUZZ)/bin/fuzz_$$t $$t $(FUZZ_SECONDS) \
	    $(FUZZ_CORPUS) tests/fuzz/dicts || rc=1; \
	done; exit $$rc

# The fuzz part of `make test`: every target for 20 s (ctest label "fuzz");
# fails on any crash, leak, hang or out-of-memory.
test-fuzz: fuzz-build
	cd $(BUILD_FUZZ) && ctest --output-on-failure -j $(JOBS) -L fuzz
	@cat $(addprefix $(FUZZ_CORPUS)/artifacts/,$(addsuffix /summary.txt,$(FUZZ_TARGETS)))

# Line and branch coverage of the parsers and validators (gcc + gcovr).
coverage: deps
	@./tools/coverage.sh

# The whole-model table of docs/PERFORMANCE.md: four full-size models built
# with PyTorch, mha against ONNX Runtime at 1 and 2 threads. Takes long and
# needs torch and node: never part of `make test`. Options: MODEL_TABLE_ARGS.
.PHONY: model-table
model-table: build
	tools/model_table.sh --out $(BUILD)/model-table.md $(MODEL_TABLE_ARGS)
	@cat $(BUILD)/model-table.md

# The float32 GEMM at the four whole models' shapes, the kernel alone and
# through the executor, 1 and 2 threads, against `mha peak` measured first
# (tests/bench/gemm_bench.c; ~2 minutes). Options: GEMM_BENCH_ARGS
# (--backend, --threads, --min-time, --shape MxKxN).
.PHONY: gemm-bench
gemm-bench: build-tests
	$(BUILD)/bin/mha peak --threads 1,2 --reps 3 --json $(BUILD)/gemm-bench-peak.json
	$(BUILD)/bin/gemm_bench --peak-json $(BUILD)/gemm-bench-peak.json $(GEMM_BENCH_ARGS)

# The memory table of the four whole models (docs/PERFORMANCE.md): weights,
# activations, peak RSS of mha (load; load and one run) and of ONNX Runtime.
# Options: RSS_TABLE_ARGS (--dir, --models, --threads, --mha, --peer).
.PHONY: rss-table
rss-table: build
	tools/rss_table.sh --out $(BUILD)/rss-table.md $(RSS_TABLE_ARGS)
	@cat $(BUILD)/rss-table.md

# ---- serving (docs/SERVING.md) ----
.PHONY: serve-table
SERVE_REPS ?= 3

# The serving targets measured again (batching on / off, clients, HTTP load
# and overload): a markdown table on stdout; not part of `make test`.
serve-table: build
	@sh tools/serve_table.sh --reps $(SERVE_REPS)

# `mha serve` soaked under open-loop HTTP load (10 minutes by default) and
# overloaded at twice the rate it sustains: every request id answered once,
# RSS flat, the excess refused at once. SERVE_SOAK_ARGS=--quick: about 2
# minutes. Not part of `make test`.
.PHONY: serve-soak
SERVE_SOAK_ARGS ?=
serve-soak: build
	@sh tools/serve_soak.sh $(SERVE_SOAK_ARGS)

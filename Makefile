# Keel - thin wrapper over CMake presets. See README.md.
#   make deps    install the Debian packages the build and tests need
#   make         debug build (build/debug)
#   make test    every test (unit, conformance, guide, integration, corpus replay) in the debug
#                build, then the same under ASan+UBSan, then a warnings-only release build
#   make demo    build, then keel run examples/bookinfo and a walk-through of its features
#                (ARGS=--once: exit after the walk-through, non-zero if a feature misbehaved)
#   make bench   release build + benchmarks (bench/)
#   make fuzz    libFuzzer targets (build/fuzz), FUZZ_SECONDS per target
.PHONY: all deps build test test-debug test-asan test-release demo bench fuzz clean format

JOBS ?= 2
FUZZ_SECONDS ?= 60

all: build

deps:
	@bash tools/deps.sh

build: deps
	@cmake --preset debug >/dev/null
	@cmake --build --preset debug -j $(JOBS)

test: deps test-debug test-asan test-release

test-debug: build
	@ctest --preset debug -j $(JOBS)

test-asan: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS)
	@ctest --preset asan -j $(JOBS)

# -O3 lets gcc see warnings (-Wformat-truncation, -Wstringop-*) that -O0 does not; -Werror makes them fail.
test-release: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

demo: build
	@bash tools/demo.sh $(ARGS)

bench: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)
	@bash bench/run.sh

fuzz: deps
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz -j $(JOBS)
	@bash tests/fuzz/run.sh $(FUZZ_SECONDS)

format:
	@clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' | grep -v _gen)

clean:
	@rm -rf build

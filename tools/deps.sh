#!/usr/bin/env bash
# deps.sh - install the Debian packages Keel's build, tests and demo need.
#
#   tools/deps.sh          build, tests, demo (what `make deps` and CI install)
#   tools/deps.sh bench    the same plus the benchmarks' tools (bench/run.sh calls it;
#                          CI does not need them, so the default never installs them)
#
# Idempotent: packages already present are not touched, and apt-get runs only
# when something is missing. Needs root or sudo. Used by `make deps`, which
# `make test` and `make demo` call first, so both work on a fresh machine.
set -euo pipefail

PKGS=(
  # build
  build-essential cmake pkg-config clang libclang-rt-14-dev
  # libraries (see docs/architecture.md, "Dependencies")
  libfyaml-dev libjansson-dev libssl-dev libnghttp2-dev libpcre2-dev
  libc-ares-dev libcurl4-openssl-dev
  # tests (nghttp2-client: h2load and nghttp for tests/integration/http2_test.py and the sample app's h2c test)
  libcmocka-dev python3 python3-yaml curl openssl time nghttp2-client
  python3-grpcio  # a real gRPC client and server for tests/integration/grpc_test.py
)

# bench/proxy_bench.sh: the proxies keel is compared with, the load generators
# (wrk; h2load, which the tests install too, for fixed-rate and h2c load), taskset and pgrep for pinning and
# /proc readings. (Debian's nginx-light is only a transitional package.)
BENCH_PKGS=(
  haproxy nginx wrk util-linux procps
)

case "${1:-}" in
  "") ;;
  bench) PKGS+=("${BENCH_PKGS[@]}") ;;
  *) echo "usage: tools/deps.sh [bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
  fi
fi
echo "deps.sh: installing ${missing[*]}" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"

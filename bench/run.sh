#!/usr/bin/env bash
# run.sh - every benchmark `make bench` runs, in order. Each script prints its
# table and records it in bench/README.md (see there for the method);
# proxy_bench.sh writes its results into docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/validate_bench.sh
bash tools/deps.sh bench
# bounded: the script cleans up every process it started when timeout stops it
timeout -k 60 1800 bash bench/proxy_bench.sh

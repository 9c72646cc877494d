#!/usr/bin/env bash
# run.sh - every benchmark `make bench` runs, in order. Each script prints its
# table and records it in bench/README.md (see there for the method).
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/validate_bench.sh

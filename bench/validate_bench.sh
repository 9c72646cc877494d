#!/usr/bin/env bash
# validate_bench.sh - how fast is `keel validate` on a big config?
#
#   bench/validate_bench.sh [COUNT] [RUNS]      (defaults: 10000 resources, 5 runs)
#
# Builds the release preset (cmake --preset release, then the build under
# flock /tmp/keel-build.lock so it never overlaps another build), generates
# COUNT realistic resources with bench/gen_resources.py into
# build/bench/resources-COUNT.yaml, then runs `keel validate` on that file
# RUNS times under /usr/bin/time -v. Prints min and median wall time,
# resources per second (at the median) and peak RSS, and a Markdown table
# row for bench/README.md.
#
# Environment: KEEL=path/to/keel skips the build and benchmarks that binary.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
count="${1:-10000}"
runs="${2:-5}"

if [ -z "${KEEL:-}" ]; then
    (cd "$root" && cmake --preset release >/dev/null &&
        flock /tmp/keel-build.lock cmake --build --preset release -j2 >/dev/null)
    KEEL="$root/build/release/keel"
fi
[ -x "$KEEL" ] || { echo "validate_bench: no keel binary at $KEEL" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "validate_bench: needs GNU time (/usr/bin/time -v)" >&2; exit 2; }

mkdir -p "$root/build/bench"
input="$root/build/bench/resources-$count.yaml"
if [ ! -s "$input" ] || [ "$root/bench/gen_resources.py" -nt "$input" ]; then
    python3 "$root/bench/gen_resources.py" -n "$count" -o "$input"
fi
size_kb=$(( $(stat -c %s "$input") / 1024 ))

# Sanity run: the file must be read without crashing, and every resource counted.
summary="$("$KEEL" validate "$input" 2>&1 >/dev/null | tail -1)" || true
echo "keel: $summary"

walls=()
rss_max=0
for i in $(seq 1 "$runs"); do
    log="$(mktemp)"
    set +e
    /usr/bin/time -v "$KEEL" validate "$input" >/dev/null 2>"$log"
    rc=$?
    set -e
    if [ $rc -gt 1 ]; then
        echo "validate_bench: keel exited $rc" >&2
        tail -30 "$log" >&2
        rm -f "$log"
        exit 1
    fi
    wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")"
    rss="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")"
    rm -f "$log"
    # h:mm:ss or m:ss.ss -> seconds
    secs="$(echo "$wall" | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')"
    walls+=("$secs")
    [ "$rss" -gt "$rss_max" ] && rss_max="$rss"
    printf 'run %d: %.2fs, %d MiB\n' "$i" "$secs" $((rss / 1024))
done

sorted="$(printf '%s\n' "${walls[@]}" | sort -g)"
min="$(echo "$sorted" | head -1)"
median="$(echo "$sorted" |
    awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}')"
rate="$(awk -v n="$count" -v t="$median" 'BEGIN { if (t > 0) printf "%.0f", n / t; else print "inf" }')"
rss_mib="$(awk -v k="$rss_max" 'BEGIN { printf "%.1f", k / 1024 }')"

echo
echo "resources: $count ($size_kb KiB), runs: $runs"
echo "wall time: min ${min}s, median ${median}s"
echo "throughput: $rate resources/s (median)"
echo "peak RSS: $rss_mib MiB"
echo
machine="$(nproc) cores, $(uname -m)"
echo "| $(date -u +%Y-%m-%d) | $machine | $count | $size_kb KiB | ${min}s | ${median}s | $rate | $rss_mib MiB |"

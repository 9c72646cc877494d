#!/usr/bin/env bash
# run.sh - run every built libFuzzer target for a while (see README.md).
#
#   tests/fuzz/run.sh [--merge] [SECONDS]
#
# Builds nothing: `cmake --preset fuzz && cmake --build --preset fuzz` first
# (or `make fuzz`, which does both and then calls this script). Each
# build/fuzz/<name>_fuzz binary runs for SECONDS (default 60) over
# tests/fuzz/corpus/<name>/ with tests/fuzz/<name>.dict when it exists.
#
# New inputs the fuzzer finds go to a scratch directory, never straight into
# the checked-in corpus. With --merge they are merged into the corpus
# afterwards (`-set_cover_merge=1 -use_counters=0`: the fewest inputs that
# add new edges are kept).
#
# Targets run in libFuzzer's fork mode, so a crash, leak or timeout does not
# end the run: each is written to build/fuzz/artifacts/<name>/ and fuzzing
# goes on for the full time. The script exits 1 when any target wrote a new
# reproducer. Environment: FUZZ_JOBS (default 1 - one heavy process at a
# time; 2 uses both cores), FUZZ_BUILD (default build/fuzz), FUZZ_ARGS
# (extra libFuzzer flags).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${FUZZ_BUILD:-$root/build/fuzz}"
merge=0
seconds=60
for arg in "$@"; do
    case "$arg" in
    --merge) merge=1 ;;
    -h | --help)
        sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *[!0-9]* | '')
        echo "run.sh: unknown argument '$arg' (usage: run.sh [--merge] [SECONDS])" >&2
        exit 2
        ;;
    *) seconds="$arg" ;;
    esac
done

shopt -s nullglob
targets=("$build"/*_fuzz)
if [ ${#targets[@]} -eq 0 ]; then
    echo "run.sh: no fuzz targets in $build; build them first: cmake --preset fuzz && cmake --build --preset fuzz" >&2
    exit 2
fi

status=0
for bin in "${targets[@]}"; do
    [ -x "$bin" ] || continue
    name="$(basename "$bin" _fuzz)"
    corpus="$root/tests/fuzz/corpus/$name"
    dict="$root/tests/fuzz/$name.dict"
    artifacts="$build/artifacts/$name"
    scratch="$build/new-corpus/$name"
    mkdir -p "$corpus" "$artifacts" "$scratch"

    # Fork mode keeps fuzzing after a crash, leak or timeout (each one is
    # saved under $artifacts), so one known bug cannot end the whole run;
    # the run still fails below when any new reproducer was written.
    jobs="${FUZZ_JOBS:-1}"
    args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -artifact_prefix="$artifacts/")
    dictarg=()
    [ -f "$dict" ] && dictarg=(-dict="$dict")
    # shellcheck disable=SC2206
    args+=("${dictarg[@]}" ${FUZZ_ARGS:-})

    before="$(ls "$artifacts" | sort)"
    echo "== $name: ${seconds}s (corpus $corpus, new inputs in $scratch)"
    (cd "$build" && "$bin" "${args[@]}" "$scratch" "$corpus")
    rc=$?
    new="$(comm -13 <(echo "$before") <(ls "$artifacts" | sort))"
    if [ $rc -ne 0 ] || [ -n "$new" ]; then
        echo "== $name: FAILED (exit $rc); new reproducers:" >&2
        for f in $new; do echo "   $artifacts/$f" >&2; done
        status=1
    fi

    if [ $merge -eq 1 ]; then
        echo "== $name: merging new inputs into $corpus"
        # edges only, greedy set cover: the corpus grows by as few files as possible
        "$bin" -set_cover_merge=1 -use_counters=0 -timeout=10 "$corpus" "$scratch" || status=1
        rm -rf "$scratch"
    fi
done
exit $status

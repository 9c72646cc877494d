#!/usr/bin/env bash
# demo.sh - what `make demo` runs (after installing dependencies and building).
#
#   1. keel validate: examples/bookinfo is valid; examples/mistakes shows how mistakes are reported.
#   2. keel run examples/bookinfo: the whole mesh on this machine (gateway, sidecars, sample apps).
#   3. tools/demo_walk.py: each feature of the example tried with real requests, in plain words.
#   4. The mesh stays up (live status table, Ctrl-C stops it) with curl commands to try.
#
#   ARGS=--once      stop after the walk-through; exit 1 if a feature this build implements misbehaved
#   KEEL=path        the keel binary (default build/debug/keel)
#   KEEL_RUN_ARGS    extra flags for keel run (default --base-port 20000)
#   KEEL_DEMO_LOGS   a folder to copy the processes' logs into before they are removed (tests read them)
set -uo pipefail
cd "$(dirname "$0")/.."
KEEL=${KEEL:-build/debug/keel}
KEEL_RUN_ARGS=${KEEL_RUN_ARGS:---base-port 20000}
ONCE=0
for a in "$@"; do
  case "$a" in
    --once) ONCE=1 ;;
    *) echo "demo.sh: unknown argument $a (only --once)" >&2; exit 2 ;;
  esac
done
status=0

echo "== 1. keel validate examples/bookinfo (expected: valid)"
if "$KEEL" validate -q examples/bookinfo; then
  echo "-> valid"
else
  echo "-> UNEXPECTED: bookinfo should be valid"; exit 1
fi
echo
echo "== keel validate examples/mistakes (expected: each mistake reported with file:line:col and a fix)"
"$KEEL" validate -q examples/mistakes
rc=$?
if [ $rc -eq 1 ]; then echo "-> invalid, as expected"; else echo "-> UNEXPECTED exit status $rc"; status=1; fi
echo

STATE=$(mktemp -d "${TMPDIR:-/tmp}/keel-demo-XXXXXX")
RUNLOG="$STATE/keel-run.out"
echo "== 2. keel run examples/bookinfo $KEEL_RUN_ARGS"
# shellcheck disable=SC2086
"$KEEL" run examples/bookinfo $KEEL_RUN_ARGS --state-dir "$STATE/run" >"$RUNLOG" 2>&1 &
RUN_PID=$!
stop_mesh() {
  if kill -0 "$RUN_PID" 2>/dev/null; then
    kill -TERM "$RUN_PID" 2>/dev/null
    wait "$RUN_PID" 2>/dev/null
  fi
}
trap 'stop_mesh; rm -rf "$STATE"; exit 130' INT TERM
for _ in $(seq 1 300); do
  [ -f "$STATE/run/ports.json" ] && break
  kill -0 "$RUN_PID" 2>/dev/null || break
  sleep 0.1
done
if ! kill -0 "$RUN_PID" 2>/dev/null; then
  cat "$RUNLOG"; echo "-> keel run did not start"; rm -rf "$STATE"; exit 1
fi
sed -n '1,/^keel run: state in/p' "$RUNLOG"
echo
echo "== 3. the walk-through: each feature of examples/bookinfo with real requests"
python3 tools/demo_walk.py --state "$STATE/run" || status=1

GW=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(next(u["port"] for u in d["ports"] if ": Gateway " in u["who"]))' "$STATE/run/ports.json")
OUT=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(next(p["outbound"] for p in d["processes"] if p["name"]=="productpage-v1" and p["role"]=="sidecar"))' "$STATE/run/ports.json")
ADMIN=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(next(p["admin"] for p in d["processes"] if p["name"]=="productpage-v1" and p["role"]=="sidecar"))' "$STATE/run/ports.json")

if [ $ONCE -eq 1 ]; then
  stop_mesh
  if [ -n "${KEEL_DEMO_LOGS:-}" ]; then cp "$STATE"/run/logs/*.log "$RUNLOG" "$KEEL_DEMO_LOGS"/ 2>/dev/null; fi
  tail -n 2 "$RUNLOG"
  rm -rf "$STATE"
  exit $status
fi

stop_mesh
rm -rf "$STATE"
cat <<EOT

== 4. the mesh keeps running: try it (Ctrl-C stops everything)
  curl -s 127.0.0.1:$GW/productpage                          # through the gateway: productpage -> details, reviews
  curl -s 127.0.0.1:$GW/productpage -H 'end-user: jason'     # reviews v3 for the test user
  curl -s -x 127.0.0.1:$OUT http://reviews.bookinfo.svc.cluster.local:9080/headers -i   # as productpage's app does (x-app-version)
  curl -s -x 127.0.0.1:$OUT http://ratings.bookinfo.svc.cluster.local:9080/delay/2 -i   # 504 after the 0.5 s timeout
  curl -s 127.0.0.1:$ADMIN/stats/prometheus | grep downstream_rq                        # productpage sidecar's admin API
  Edit examples/bookinfo/reviews.yaml (e.g. weights 50/50) and watch every proxy reload.

EOT
# shellcheck disable=SC2086
exec "$KEEL" run examples/bookinfo $KEEL_RUN_ARGS

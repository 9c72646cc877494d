#!/usr/bin/env bash
# proxy_bench.sh - `keel proxy router` against HAProxy, nginx and a direct
# connection, in one run, under the same conditions.
#
#   bench/proxy_bench.sh [--no-doc]
#
# Every proxy runs one worker pinned to one CPU (taskset; keel --concurrency 1,
# haproxy nbthread 1, nginx worker_processes 1) in front of the same upstream:
# nginx returning a 100-byte body, pinned to its own CPU, reached over HTTP/1.1
# keep-alive by every proxy (nginx upstream keepalive, haproxy http-reuse
# always, keel's per-worker pool). The load generator (wrk, h2load) is pinned
# too. On a 2-core machine the load generator and the upstream share CPU 0 and
# the proxy has CPU 1: absolute numbers are low, the comparison is what counts.
#
# Measures, for direct / haproxy / nginx / keel:
#   1. HTTP/1.1 keep-alive req/s at saturation      wrk -t1 -c CONNS -d DURATION
#   2. proxy CPU per 1,000 requests                 utime+stime of the proxy's processes (/proc/PID/stat)
#   3. p50/p99 at a fixed RATE req/s, and the latency added versus direct
#                                                   h2load --h1 -c10 --rps RATE/10 --log-file
#   4. RSS idle after start, after the load, and with SERVICES services configured
#      (SERVICES ServiceEntry+VirtualService pairs for keel; as many backends/upstreams for the others)
#   5. HTTP/2 (h2c) req/s                           h2load -c10 -m10 (each proxy: h2c in, HTTP/1.1 to the upstream)
# Each measurement runs RUNS times, interleaved across the targets, and the
# median is reported. Prints a Markdown table (absolute numbers, keel/HAProxy,
# and each proxy/direct) and writes it, with the date, machine, versions and
# load average, between the markers in docs/performance.md (--no-doc: don't).
#
# Only 127.0.0.1 is used. Every step is bounded in time (timeout), every
# process started is stopped on exit (trap EXIT), and /tmp/keel-bench.lock
# keeps two benchmarks from running at once. Before measuring it waits until
# the 1-minute load average is below 1.0, or 60 s.
#
# Needs: `bash tools/deps.sh bench` (haproxy nginx wrk nghttp2-client util-linux).
# Environment: KEEL=path/to/keel skips the release build and benchmarks that
# binary (KEEL_REV describes it in the page); DURATION (10), RUNS (3), CONNS (50),
# RATE (1000), SERVICES (1000); PROXY_CPU (1), LOAD_CPU (0), UPSTREAM_CPU (0 on
# 2 cores, else 2).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
here="$root/bench/proxy"
DURATION="${DURATION:-10}"
RUNS="${RUNS:-3}"
CONNS="${CONNS:-50}"
RATE="${RATE:-1000}"
SERVICES="${SERVICES:-1000}"
write_doc=1
case "${1:-}" in
--no-doc) write_doc=0 ;;
"") ;;
*) echo "usage: bench/proxy_bench.sh [--no-doc]" >&2; exit 2 ;;
esac

die() { echo "proxy_bench: $*" >&2; exit 1; }
say() { echo "proxy_bench: $*" >&2; }

ncpu="$(nproc)"
[ "$ncpu" -ge 2 ] || die "needs at least 2 CPUs (proxy on one, load generator and upstream on another)"
PROXY_CPU="${PROXY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
if [ "$ncpu" -ge 3 ]; then UPSTREAM_CPU="${UPSTREAM_CPU:-2}"; else UPSTREAM_CPU="${UPSTREAM_CPU:-0}"; fi

for t in haproxy nginx wrk h2load taskset curl python3 timeout flock; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found: run 'bash tools/deps.sh bench' first"
done

# ---- one benchmark at a time ----------------------------------------------------------------------------------
exec 9>/tmp/keel-bench.lock
flock -w 1800 9 || die "another benchmark has held /tmp/keel-bench.lock for 30 minutes"

# ---- keel: release build ---------------------------------------------------------------------------------------
if [ -z "${KEEL:-}" ]; then
    (cd "$root" && cmake --preset release >/dev/null &&
        flock /tmp/keel-build.lock cmake --build --preset release -j2 >/dev/null) ||
        die "the release build failed (above); KEEL=path/to/keel benchmarks another binary"
    KEEL="$root/build/release/keel"
    KEEL_REV="${KEEL_REV:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
        git -C "$root" diff --quiet HEAD -- src CMakeLists.txt 2>/dev/null || echo "-dirty")}, release preset"
fi
[ -x "$KEEL" ] || die "no keel binary at $KEEL"
KEEL_REV="${KEEL_REV:-$KEEL}"

# ---- work folder, processes, cleanup ---------------------------------------------------------------------------
work="$root/build/bench/proxy"
rm -rf "$work"
mkdir -p "$work"
results="$work/results.tsv"
: >"$results"
rec() { printf '%s\t%s\n' "$1" "$2" >>"$results"; }

declare -A PID=()
pids=()
alive() { [ -r "/proc/$1/stat" ] && ! sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^[ZX]'; }
stop_pids() {
    local p
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
        local any=0
        for p in "$@"; do alive "$p" && any=1; done
        [ $any = 0 ] && break
        sleep 0.1
    done
    for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
cleanup() {
    local rc=$?
    trap - EXIT TERM INT HUP
    [ ${#pids[@]} -gt 0 ] && stop_pids "${pids[@]}"
    exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

# start_proc NAME CPU CMD...: runs CMD pinned to CPU in the background (taskset execs it: $! is the process)
start_proc() {
    local name="$1" cpu="$2"
    shift 2
    taskset -c "$cpu" "$@" >"$work/$name.log" 2>&1 &
    PID[$name]=$!
    pids+=("$!")
}
stop_proc() {
    local p="${PID[$1]}" q keep=()
    stop_pids "$p"
    for q in "${pids[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
    pids=("${keep[@]}")
}

free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# wait_http NAME PORT [HOST]: until GET / answers 200 with the 100-byte body (10 s)
wait_http() {
    local name="$1" port="$2" host="${3:-}" body
    local hdr=()
    [ -n "$host" ] && hdr=(-H "Host: $host")
    for _ in $(seq 1 100); do
        alive "${PID[$name]}" || { tail -20 "$work/$name.log" >&2; die "$name exited at start"; }
        body="$(curl -s --max-time 1 "${hdr[@]}" "http://127.0.0.1:$port/" 2>/dev/null || true)"
        if [ "${#body}" = 99 ]; then return 0; fi # $(...) drops the trailing newline
        sleep 0.1
    done
    tail -20 "$work/$name.log" >&2
    die "$name does not serve the upstream's body on port $port"
}

# ---- /proc readings --------------------------------------------------------------------------------------------
tree() { echo "$1"; pgrep -P "$1" 2>/dev/null || true; }
ticks() { # "utime stime" of a process and its children (nginx: master + worker), in clock ticks
    local u=0 st=0 p a b
    for p in $(tree "$1"); do
        [ -r "/proc/$p/stat" ] || continue
        read -r a b < <(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12, $13}')
        u=$((u + a))
        st=$((st + b))
    done
    echo "$u $st"
}
# RSS of a proxy: its own, or for nginx (master + worker) the worker's RSS plus the master's private
# pages, so that the pages the two share after fork() count once
rss_kb() {
    local kids v
    kids="$(pgrep -P "$1" 2>/dev/null || true)"
    if [ -z "$kids" ]; then
        awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
        return
    fi
    v="$(awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s + 0}' "/proc/$1/smaps_rollup")"
    for p in $kids; do v=$((v + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status"))); done
    echo "$v"
}
corestat() { awk '/^cpu[0-9]/ {b = $2 + $3 + $4 + $7 + $8 + $9; printf "%s %d %d\n", $1, b, b + $5 + $6}' /proc/stat; }
now() { date +%s.%N; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# measure KEYPREFIX PROXYNAME(or -) CMD...: runs CMD; records secs, proxy ticks and the busy % of each core
measure() {
    local key="$1" proxy="$2"
    shift 2
    local t0 t1 k0="0 0" k1="0 0" c0 c1 rc=0 u0 s0 u1 s1
    c0="$(corestat)"
    [ "$proxy" != - ] && k0="$(ticks "${PID[$proxy]}")"
    t0="$(now)"
    "$@" || rc=$?
    t1="$(now)"
    [ "$proxy" != - ] && k1="$(ticks "${PID[$proxy]}")"
    c1="$(corestat)"
    rec "$key.secs" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')"
    if [ "$proxy" != - ]; then
        read -r u0 s0 <<<"$k0"
        read -r u1 s1 <<<"$k1"
        rec "$key.ticks" $((u1 + s1 - u0 - s0))
        rec "$key.uticks" $((u1 - u0))
    fi
    paste <(echo "$c0") <(echo "$c1") | awk -v key="$key" '{
        d = $6 - $3; printf "%s.%s\t%.1f\n", key, $1, (d > 0 ? 100 * ($5 - $2) / d : 0) }' >>"$results"
    return $rc
}

# ---- the load ----------------------------------------------------------------------------------------------------
LOAD=(taskset -c "$LOAD_CPU")

# sat PHASE TARGET REP PORT [HOST]: wrk at saturation
sat() {
    local phase="$1" target="$2" rep="$3" port="$4" host="${5:-}" out="$work/$1.$2.$3.wrk"
    local hdr=() proxy="$target"
    [ -n "$host" ] && hdr=(-H "Host: $host")
    [ "$target" = direct ] && proxy=-
    timeout -k 5 30 "${LOAD[@]}" wrk -t1 -c"$CONNS" -d1s "${hdr[@]}" "http://127.0.0.1:$port/" >/dev/null
    measure "$phase.$target.$rep" "$proxy" timeout -k 5 $((DURATION + 30)) "${LOAD[@]}" \
        wrk -t1 -c"$CONNS" -d"${DURATION}s" "${hdr[@]}" "http://127.0.0.1:$port/" >"$out"
    local rps n errs
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    n="$(awk '/ requests in / {print $1}' "$out")"
    errs="$(awk '/Non-2xx/ {e += $NF} /Socket errors/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) e += $i}
                 END {print e + 0}' "$out")"
    rec "$phase.$target.$rep.rps" "$rps"
    rec "$phase.$target.$rep.requests" "$n"
    rec "$phase.$target.$rep.errors" "$errs"
    [ "$errs" = 0 ] || say "WARNING: $target: $errs errors (non-2xx or socket) in $phase run $rep"
    printf '  %-6s %-8s run %d: %10s req/s  (%s requests, %s errors)\n' "$phase" "$target" "$rep" "$rps" "$n" "$errs" >&2
}

# lat TARGET REP PORT: fixed rate, h2load over HTTP/1.1, per-request log for the percentiles
lat() {
    local target="$1" rep="$2" port="$3" out="$work/lat.$1.$2.h2load" log="$work/lat.$1.$2.log"
    local clients=10 proxy="$target"
    local per=$((RATE / clients))
    [ "$target" = direct ] && proxy=-
    timeout -k 5 30 "${LOAD[@]}" h2load --h1 -t1 -c"$clients" --rps "$per" -D 1 "http://127.0.0.1:$port/" >/dev/null
    measure "lat.$target.$rep" "$proxy" timeout -k 5 $((DURATION + 30)) "${LOAD[@]}" \
        h2load --h1 -t1 -c"$clients" --rps "$per" -D "$DURATION" --log-file "$log" "http://127.0.0.1:$port/" >"$out"
    local n p50 p99 p999 bad
    read -r n p50 p99 p999 bad < <(python3 "$here/report.py" pct "$log")
    rec "lat.$target.$rep.requests" "$n"
    rec "lat.$target.$rep.p50" "$p50"
    rec "lat.$target.$rep.p99" "$p99"
    rec "lat.$target.$rep.p999" "$p999"
    rec "lat.$target.$rep.errors" "$bad"
    rec "lat.$target.$rep.rps" "$(awk '/^finished in/ {print $4}' "$out")"
    [ "$bad" = 0 ] || say "WARNING: $target: $bad non-2xx responses at fixed rate, run $rep"
    printf '  lat    %-8s run %d: p50 %6s us, p99 %6s us, p99.9 %6s us  (%s requests)\n' "$target" "$rep" "$p50" "$p99" "$p999" "$n" >&2
}

# h2 TARGET REP PORT: h2c at saturation
h2() {
    local target="$1" rep="$2" port="$3" out="$work/h2.$1.$2.h2load" proxy="$1"
    [ "$target" = direct ] && proxy=-
    timeout -k 5 30 "${LOAD[@]}" h2load -t1 -c10 -m10 -D 1 "http://127.0.0.1:$port/" >/dev/null
    measure "h2.$target.$rep" "$proxy" timeout -k 5 $((DURATION + 30)) "${LOAD[@]}" \
        h2load -t1 -c10 -m10 -D "$DURATION" "http://127.0.0.1:$port/" >"$out"
    local rps n bad
    rps="$(awk '/^finished in/ {print $4}' "$out")"
    n="$(awk '/^requests:/ {print $8}' "$out")"
    bad="$(awk '/^requests:/ {print $10 + $12 + $14}' "$out")"
    rec "h2.$target.$rep.rps" "$rps"
    rec "h2.$target.$rep.requests" "$n"
    rec "h2.$target.$rep.errors" "$bad"
    [ "$bad" = 0 ] || say "WARNING: $target: $bad failed h2c requests in run $rep"
    printf '  h2c    %-8s run %d: %10s req/s  (%s requests, %s failed)\n' "$target" "$rep" "$rps" "$n" "$bad" >&2
}

# ---- configs -----------------------------------------------------------------------------------------------------
read -r p_up p_up_h2 p_hap p_hap_h2 p_ngx p_ngx_h2 p_keel p_keel_admin p_hap_1k p_ngx_1k p_keel_1k p_keel_1k_admin \
    < <(free_ports 12)
python3 "$here/gen_configs.py" --dir "$work" --services "$SERVICES" --ports \
    "up=$p_up,up_h2=$p_up_h2,hap=$p_hap,hap_h2=$p_hap_h2,ngx=$p_ngx,ngx_h2=$p_ngx_h2,keel=$p_keel,keel_admin=$p_keel_admin,hap_1k=$p_hap_1k,ngx_1k=$p_ngx_1k,keel_1k=$p_keel_1k,keel_1k_admin=$p_keel_1k_admin"
svc_host="svc-$((SERVICES / 2)).bench.local"

# ---- the machine and the versions --------------------------------------------------------------------------------
rec meta.date "$(date -u '+%Y-%m-%d %H:%M UTC')"
rec meta.cores "$ncpu"
rec meta.cpu_model "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
rec meta.mem_gib "$(awk '/^MemTotal:/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)"
rec meta.kernel "$(uname -r)"
rec meta.virt "$( (lscpu 2>/dev/null || true) | awk -F': *' '/^Hypervisor vendor/ {v = $2} END {print v ? "VM (" v ")" : "bare metal or unknown"}')"
rec meta.proxy_cpu "$PROXY_CPU"
rec meta.load_cpu "$LOAD_CPU"
rec meta.upstream_cpu "$UPSTREAM_CPU"
rec meta.keel_version "$("$KEEL" --version 2>&1 | awk '{print $NF; exit}')"
rec meta.keel_rev "$KEEL_REV"
rec meta.keel_build "$(gcc -dumpfullversion 2>/dev/null | sed 's/^/gcc /' || echo "compiler unknown")"
rec meta.haproxy_version "$(haproxy -v 2>&1 | awk '/version/ {print "HAProxy " $3; exit}')"
rec meta.nginx_version "$(nginx -v 2>&1 | sed 's|.*nginx/||')"
rec meta.wrk_version "$( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $2}')"
rec meta.h2load_version "$(h2load --version 2>&1 | awk '{print $2}' | sed 's|nghttp2/||')"
rec meta.clk_tck "$(getconf CLK_TCK)"
rec meta.runs "$RUNS"
rec meta.services "$SERVICES"
rec meta.sat_cmd "wrk -t1 -c$CONNS -d${DURATION}s"
rec meta.lat_cmd "h2load --h1 -t1 -c10 --rps $((RATE / 10)) -D $DURATION (= $RATE req/s)"
rec meta.h2_cmd "h2load -t1 -c10 -m10 -D $DURATION"

# ---- start -------------------------------------------------------------------------------------------------------
say "upstream on CPU $UPSTREAM_CPU, proxies on CPU $PROXY_CPU, load generator on CPU $LOAD_CPU; work folder $work"
start_proc upstream "$UPSTREAM_CPU" nginx -c "$work/upstream.conf" -e "$work/upstream.error.log"
wait_http upstream "$p_up"
start_proc haproxy "$PROXY_CPU" haproxy -f "$work/haproxy.cfg" -db
start_proc nginx "$PROXY_CPU" nginx -c "$work/nginx-proxy.conf" -e "$work/nginx-proxy.error.log"
start_proc keel "$PROXY_CPU" "$KEEL" proxy router --config "$work/keel" --admin "127.0.0.1:$p_keel_admin" \
    --concurrency 1 --drain 1
wait_http haproxy "$p_hap"
wait_http nginx "$p_ngx"
wait_http keel "$p_keel"
sleep 1
for t in haproxy nginx keel; do rec "rss.$t.idle" "$(rss_kb "${PID[$t]}")"; done

# ---- wait for a quiet machine ------------------------------------------------------------------------------------
waited=0
while awk -v l="$(load1)" 'BEGIN {exit !(l >= 1.0)}' && [ $waited -lt 60 ]; do
    [ $waited = 0 ] && say "load average $(load1): waiting up to 60 s for it to drop below 1.0"
    sleep 5
    waited=$((waited + 5))
done
rec meta.load_before "$(load1)"
rec meta.load_waited "$waited"
say "load average $(load1) after ${waited}s; measuring (${RUNS} runs of ${DURATION}s per target and test)"

port_of() {
    case "$1" in
    direct) echo "$p_up" ;; haproxy) echo "$p_hap" ;; nginx) echo "$p_ngx" ;; keel) echo "$p_keel" ;;
    esac
}
h2port_of() {
    case "$1" in
    direct) echo "$p_up_h2" ;; haproxy) echo "$p_hap_h2" ;; nginx) echo "$p_ngx_h2" ;;
    keel) echo "$p_keel" ;; # keel takes h2c prior knowledge on its HTTP port
    esac
}

say "1. HTTP/1.1 keep-alive at saturation"
for rep in $(seq 1 "$RUNS"); do
    for t in direct haproxy nginx keel; do sat sat "$t" "$rep" "$(port_of "$t")"; done
done
say "2. fixed rate: $RATE req/s"
for rep in $(seq 1 "$RUNS"); do
    for t in direct haproxy nginx keel; do lat "$t" "$rep" "$(port_of "$t")"; done
done
say "3. HTTP/2 (h2c) at saturation"
for rep in $(seq 1 "$RUNS"); do
    for t in direct haproxy nginx keel; do h2 "$t" "$rep" "$(h2port_of "$t")"; done
done
for t in haproxy nginx keel; do rec "rss.$t.loaded" "$(rss_kb "${PID[$t]}")"; done
for t in haproxy nginx keel; do stop_proc "$t"; done

say "4. $SERVICES services (Host: $svc_host)"
start_proc haproxy "$PROXY_CPU" haproxy -f "$work/haproxy-1k.cfg" -db
start_proc nginx "$PROXY_CPU" nginx -c "$work/nginx-proxy-1k.conf" -e "$work/nginx-proxy-1k.error.log"
start_proc keel "$PROXY_CPU" "$KEEL" proxy router --config "$work/keel-1k" --admin "127.0.0.1:$p_keel_1k_admin" \
    --concurrency 1 --drain 1
wait_http haproxy "$p_hap_1k" "$svc_host"
wait_http nginx "$p_ngx_1k" "$svc_host"
wait_http keel "$p_keel_1k" "$svc_host"
sleep 1
for t in haproxy nginx keel; do rec "rss1k.$t.idle" "$(rss_kb "${PID[$t]}")"; done
for rep in $(seq 1 "$RUNS"); do
    sat sat1k haproxy "$rep" "$p_hap_1k" "$svc_host"
    sat sat1k nginx "$rep" "$p_ngx_1k" "$svc_host"
    sat sat1k keel "$rep" "$p_keel_1k" "$svc_host"
done
for t in haproxy nginx keel; do rec "rss1k.$t.loaded" "$(rss_kb "${PID[$t]}")"; done
rec meta.load_after "$(load1)"

# ---- report ------------------------------------------------------------------------------------------------------
echo
doc=()
[ $write_doc = 1 ] && doc=(--doc "$root/docs/performance.md")
python3 "$here/report.py" table "$results" --out "$work/results.md" "${doc[@]}"
say "raw numbers: $results; logs and configs: $work"

#!/usr/bin/env python3
"""report.py - numbers for bench/proxy_bench.sh.

    report.py pct LOGFILE
        h2load --log-file rows (start_us, status, duration_us) -> "count p50_us p99_us p999_us non2xx"
    report.py table RESULTS [--out FILE] [--doc docs/performance.md]
        RESULTS is the key<TAB>value file the script writes. Prints the Markdown
        results (summary table with ratios, per-run detail, conditions), writes
        them to --out, and replaces the block between the markers in --doc.

Medians are taken over the repeated runs; ratios are keel / HAProxy and each
proxy / direct. CPU figures come from utime+stime of the proxy's processes
(/proc/PID/stat), so they are in clock ticks (usually 10 ms) before scaling.
"""
import argparse
import statistics
import sys

TARGETS = ["direct", "haproxy", "nginx", "keel"]
PROXIES = ["haproxy", "nginx", "keel"]
BEGIN = "<!-- proxy_bench:results:begin (written by bench/proxy_bench.sh; edits inside are overwritten) -->"
END = "<!-- proxy_bench:results:end -->"


def pct(path):
    durs, bad = [], 0
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            if not parts[1].startswith("2"):
                bad += 1
            durs.append(int(parts[2]))
    durs.sort()
    if not durs:
        print("0 0 0 0 %d" % bad)
        return

    def q(p):
        return durs[min(len(durs) - 1, int(p * len(durs)))]
    print("%d %d %d %d %d" % (len(durs), q(0.50), q(0.99), q(0.999), bad))


def load(path):
    r = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "\t" in line:
                k, v = line.split("\t", 1)
                r[k] = v
    return r


class Results:
    def __init__(self, r):
        self.r = r
        self.tck = float(r.get("meta.clk_tck", "100"))
        self.runs = int(r.get("meta.runs", "1"))

    def get(self, key):
        v = self.r.get(key)
        if v is None or v == "":
            return None
        try:
            return float(v)
        except ValueError:
            return None

    def reps(self, phase, target, field):
        out = []
        for i in range(1, self.runs + 1):
            v = self.get("%s.%s.%d.%s" % (phase, target, i, field))
            if v is not None:
                out.append(v)
        return out

    def median(self, phase, target, field):
        v = self.reps(phase, target, field)
        return statistics.median(v) if v else None

    def cpu_per_k(self, phase, target):
        """ms of proxy CPU per 1,000 requests, median over runs"""
        out = []
        for i in range(1, self.runs + 1):
            t = self.get("%s.%s.%d.ticks" % (phase, target, i))
            n = self.get("%s.%s.%d.requests" % (phase, target, i))
            if t is not None and n:
                out.append(t / self.tck * 1000.0 / n * 1000.0)
        return statistics.median(out) if out else None

    def user_share(self, phase, target):
        """% of the proxy's CPU time spent in user space, median over runs"""
        out = []
        for i in range(1, self.runs + 1):
            t = self.get("%s.%s.%d.ticks" % (phase, target, i))
            u = self.get("%s.%s.%d.uticks" % (phase, target, i))
            if t and u is not None:
                out.append(100.0 * u / t)
        return statistics.median(out) if out else None

    def busy(self, phase, target):
        """% of one core the proxy used, median over runs"""
        out = []
        for i in range(1, self.runs + 1):
            t = self.get("%s.%s.%d.ticks" % (phase, target, i))
            s = self.get("%s.%s.%d.secs" % (phase, target, i))
            if t is not None and s:
                out.append(100.0 * t / self.tck / s)
        return statistics.median(out) if out else None


def fmt_int(v):
    return "–" if v is None else "{:,.0f}".format(v)


def fmt1(v):
    return "–" if v is None else "{:,.1f}".format(v)


def fmt2(v):
    return "–" if v is None else "{:,.2f}".format(v)


def fmt_us(v):
    return "–" if v is None else "{:,.0f} µs".format(v)


def fmt_add(v):
    return "–" if v is None else "{:+,.0f} µs".format(v)


def fmt_mib(kb):
    return "–" if kb is None else "{:,.1f} MiB".format(kb / 1024.0)


def ratio(a, b):
    if a is None or b is None or b <= 0 or a < 0:
        return "–"
    return "{:.2f}×".format(a / b)


def table(res, r):
    rows = []
    H = ["metric", "direct", "HAProxy", "nginx", "keel", "keel ÷ HAProxy", "÷ direct (HAProxy · nginx · keel)"]

    def row(name, vals, fmt, cmp_direct=True, keel_cell=None):
        cells = [fmt(vals.get(t)) for t in TARGETS]
        if keel_cell:
            cells[3] = keel_cell
        kh = ratio(vals.get("keel"), vals.get("haproxy")) if not keel_cell else "–"
        if cmp_direct and vals.get("direct") is not None:
            vd = " · ".join(ratio(vals.get(p), vals.get("direct")) if not (p == "keel" and keel_cell) else "–"
                            for p in PROXIES)
        else:
            vd = "–"
        rows.append([name] + cells + [kh, vd])

    sat = {t: res.median("sat", t, "rps") for t in TARGETS}
    row("HTTP/1.1 keep-alive, req/s at saturation (↑)", sat, fmt_int)
    row("proxy CPU used at saturation, % of its core", {t: res.busy("sat", t) for t in PROXIES}, fmt_int, False)
    row("proxy CPU per 1,000 requests at saturation, ms (↓)", {t: res.cpu_per_k("sat", t) for t in PROXIES}, fmt2,
        False)
    cap = {}
    for t in PROXIES:
        c = res.cpu_per_k("sat", t)
        cap[t] = 1e6 / c if c else None
    row("→ req/s one fully busy proxy core would serve (1 s ÷ CPU per request)", cap, fmt_int, False)
    row("user-space share of that CPU, % (rest: kernel, mostly TCP)", {t: res.user_share("sat", t) for t in PROXIES},
        fmt_int, False)
    row("proxy CPU per 1,000 requests at 1,000 req/s, ms (↓; ±1 from 10 ms ticks)",
        {t: res.cpu_per_k("lat", t) for t in PROXIES}, fmt1, False)
    p50 = {t: res.median("lat", t, "p50") for t in TARGETS}
    p99 = {t: res.median("lat", t, "p99") for t in TARGETS}
    row("p50 latency at 1,000 req/s", p50, fmt_us, False)
    add50 = {t: (p50[t] - p50["direct"]) if p50[t] is not None and p50["direct"] is not None else None
             for t in PROXIES}
    row("added p50 latency vs direct (↓)", add50, fmt_add, False)
    row("p99 latency at 1,000 req/s", p99, fmt_us, False)
    add99 = {t: (p99[t] - p99["direct"]) if p99[t] is not None and p99["direct"] is not None else None
             for t in PROXIES}
    row("added p99 latency vs direct (↓)", add99, fmt_add, False)
    row("RSS idle after start (↓)", {t: res.get("rss.%s.idle" % t) for t in PROXIES}, fmt_mib, False)
    row("RSS after the HTTP/1.1 runs (↓)", {t: res.get("rss.%s.loaded" % t) for t in PROXIES}, fmt_mib, False)
    n = r.get("meta.services", "1000")
    row("RSS with %s services, idle after start (↓)" % "{:,}".format(int(n)),
        {t: res.get("rss1k.%s.idle" % t) for t in PROXIES}, fmt_mib, False)
    sat1k = {t: res.median("sat1k", t, "rps") for t in PROXIES}
    sat1k["direct"] = sat["direct"]
    row("req/s at saturation with %s services (↑)" % "{:,}".format(int(n)), sat1k, fmt_int)
    h2 = {t: res.median("h2", t, "rps") for t in TARGETS}
    row("HTTP/2 (h2c) req/s at saturation (↑)", h2, fmt_int, True)
    row("proxy CPU per 1,000 h2c requests, ms (↓)", {t: res.cpu_per_k("h2", t) for t in PROXIES}, fmt2, False)
    out = ["| " + " | ".join(H) + " |", "|" + "---|" * len(H)]
    out += ["| " + " | ".join(c) + " |" for c in rows]
    return "\n".join(out)


def detail(res, r):
    """per-run numbers, so that noise and interference are visible"""
    out = ["| phase | target | run | req/s | requests | errors | proxy CPU % | CPU0 busy % | CPU1 busy % | p50 | p99 |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for phase, targets in (("sat", TARGETS), ("lat", TARGETS), ("h2", TARGETS),
                           ("sat1k", PROXIES)):
        for t in targets:
            for i in range(1, res.runs + 1):
                k = "%s.%s.%d." % (phase, t, i)
                if res.get(k + "rps") is None and res.get(k + "p50") is None:
                    continue
                ticks, secs = res.get(k + "ticks"), res.get(k + "secs")
                busy = 100.0 * ticks / res.tck / secs if ticks is not None and secs else None
                out.append("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    phase, t, i, fmt_int(res.get(k + "rps")), fmt_int(res.get(k + "requests")),
                    fmt_int(res.get(k + "errors")), fmt_int(busy) if t != "direct" else "–",
                    fmt_int(res.get(k + "cpu0")), fmt_int(res.get(k + "cpu1")),
                    fmt_us(res.get(k + "p50")) if res.get(k + "p50") is not None else "",
                    fmt_us(res.get(k + "p99")) if res.get(k + "p99") is not None else ""))
    return "\n".join(out)


def render(r):
    res = Results(r)
    m = lambda k: r.get("meta." + k, "?")  # noqa: E731
    lines = [
        "### Run of %s" % m("date"),
        "",
        "- machine: %s cores (%s), %s GiB RAM, Linux %s, %s" % (m("cores"), m("cpu_model"), m("mem_gib"),
                                                                m("kernel"), m("virt")),
        "- pinning: proxy on CPU %s; load generator on CPU %s; upstream nginx on CPU %s%s" % (
            m("proxy_cpu"), m("load_cpu"), m("upstream_cpu"),
            " (this machine has 2 cores, so the load generator and the upstream share one: the numbers are "
            "relative, same run, same conditions)" if m("load_cpu") == m("upstream_cpu") else ""),
        "- versions: keel %s (%s, %s), %s, nginx %s, wrk %s, h2load %s" % (
            m("keel_version"), m("keel_rev"), m("keel_build"), m("haproxy_version"), m("nginx_version"),
            m("wrk_version"), m("h2load_version")),
        "- load average (1 min) before measuring: %s (waited %s s for < 1.0); after: %s" % (
            m("load_before"), m("load_waited"), m("load_after")),
        "- each number is the median of %s runs; HTTP/1.1 saturation: `%s`; latency: `%s`; h2c: `%s`" % (
            m("runs"), m("sat_cmd"), m("lat_cmd"), m("h2_cmd")),
        "",
        table(res, r),
        "",
        "<details><summary>Per-run numbers (CPU0/CPU1 busy = whole core, every process on it, from /proc/stat)"
        "</summary>",
        "",
        detail(res, r),
        "",
        "</details>",
    ]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pct")
    p.add_argument("log")
    t = sub.add_parser("table")
    t.add_argument("results")
    t.add_argument("--out")
    t.add_argument("--doc")
    a = ap.parse_args()
    if a.cmd == "pct":
        pct(a.log)
        return
    text = render(load(a.results))
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    if a.doc:
        with open(a.doc) as f:
            doc = f.read()
        b, e = doc.find(BEGIN), doc.find(END)
        if b < 0 or e < b:
            print("report.py: no results markers in %s; not updated" % a.doc, file=sys.stderr)
            sys.exit(1)
        doc = doc[:b + len(BEGIN)] + "\n" + text + doc[e:]
        with open(a.doc, "w") as f:
            f.write(doc)
        print("report.py: results written to %s" % a.doc, file=sys.stderr)


if __name__ == "__main__":
    main()

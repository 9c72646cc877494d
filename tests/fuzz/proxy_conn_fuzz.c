/*
 * proxy_conn_fuzz.c - libFuzzer target: whole downstream HTTP/1 connections
 * through the proxy's request path (proxy/http1.c, proxy/upstream.c,
 * proxy/accesslog.c, mesh/routes.c), in-process.
 *
 * Once per process a snapshot is compiled from the fixed config below (one
 * Gateway on port 8080; a VirtualService with exact, prefix, regex, method,
 * header, query and authority matches, redirects, direct responses, fault
 * abort and delay, rewrites, retries, a weighted split, header operations;
 * clusters whose endpoints are 127.0.0.1 ports where nothing listens, so
 * upstream connects fail at once, a DNS endpoint that cannot be dialled, an
 * empty cluster and a missing one). Each input then gets a fresh worker by
 * hand - event loop, stats shard, pools - exactly as runtime.c sets one up
 * (no threads, no listeners, no keel_runtime: the request path never reads
 * it). One end of a socketpair goes to keel_http1_accept() as an accepted
 * Gateway connection; the fuzz input is written into the other end in 1-3
 * writes, the loop is run with keel_loop_run_once(0) until idle after each,
 * then the client half-closes (or closes), and the loop runs until the proxy
 * has closed the connection. Everything the proxy writes is read back.
 *
 * Input layout: byte 0 is a flag set, bytes 1-2 the two split points (as
 * fractions of the message, /255), the rest is the bytes the client sends.
 *   bits 0-1  writes: 0 -> 1, 1 -> 2, 2 or 3 -> 3
 *   bits 2-3  access log: off, Istio text, Istio JSON, a custom format with most operators
 *   bit 4     write all parts back to back (no loop run between writes)
 *   bit 5     end with close() (the client vanishes) instead of shutdown(SHUT_WR)
 *   bit 6     the worker is draining (keep-alive connections close after their request)
 *   bit 7     before ending, poll once with a 2 ms timeout (lets the 1 ms fault delay fire)
 *
 * Invariants (abort() on failure, besides ASan/UBSan/LSan):
 *   - the proxy closes the connection once the client has gone (bounded loop iterations);
 *   - when the worker is torn down nothing is left: connections freed, every
 *     watcher stopped (LeakSanitizer sees anything the proxy forgot);
 *   - what the proxy wrote is a sequence of well-formed HTTP/1.1 responses
 *     (status line, headers, exactly Content-Length body bytes), possibly cut
 *     short at the end; checked unless a HEAD request may have been sent
 *     (those responses carry Content-Length without a body).
 *
 * PROXY_CONN_FUZZ_VERBOSE=1 prints what the proxy wrote back (and debug logs), to read a reproducer.
 *
 * Build: cmake --preset fuzz && cmake --build --preset fuzz --target proxy_conn_fuzz;
 * run: tests/fuzz/run.sh (corpus tests/fuzz/corpus/proxy_conn, dictionary tests/fuzz/proxy_conn.dict).
 */
#include "base/buf.h"
#include "base/diag.h"
#include "base/err.h"
#include "base/log.h"
#include "base/map.h"
#include "base/str.h"
#include "config/load.h"
#include "config/store.h"
#include "http/h1.h"
#include "mesh/snapshot.h"
#include "net/loop.h"
#include "net/sock.h"
#include "proxy/accesslog.h"
#include "proxy/proxy_int.h"
#include "proxy/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "proxy_conn_fuzz: invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);             \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#define GW_PORT 8080
/* loop iterations: until idle after a write, and until the proxy closes after the client went away */
#define IDLE_ITERATIONS 2
#define MAX_ITERATIONS 20000
/* what is kept of the proxy's output for the response check */
#define OUT_CAP (1u << 20)

static const char CONFIG[] =
    "apiVersion: networking.istio.io/v1\n"
    "kind: Gateway\n"
    "metadata: {name: gw, namespace: istio-system}\n"
    "spec:\n"
    "  selector: {istio: ingressgateway}\n"
    "  servers:\n"
    "  - port: {number: 8080, name: http, protocol: HTTP}\n"
    "    hosts: [\"*\"]\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: VirtualService\n"
    "metadata: {name: routes, namespace: istio-system}\n"
    "spec:\n"
    "  hosts: [\"*\"]\n"
    "  gateways: [gw]\n"
    "  http:\n"
    "  - name: exact\n"
    "    match: [{uri: {exact: /exact}, method: {exact: GET}}]\n"
    "    directResponse: {status: 200, body: {string: \"exact\\n\"}}\n"
    "  - name: regex\n"
    "    match: [{uri: {regex: \"/re/[a-z]+/[0-9]{1,4}\"}}]\n"
    "    directResponse: {status: 418, body: {string: \"teapot\"}}\n"
    "  - name: query\n"
    "    match: [{queryParams: {debug: {exact: \"1\"}}}]\n"
    "    directResponse: {status: 204}\n"
    "  - name: header\n"
    "    match:\n"
    "    - headers: {x-user: {exact: jason}, x-tier: {prefix: gold}}\n"
    "      uri: {prefix: /h}\n"
    "    - headers: {x-debug: {regex: \"on|yes\"}}\n"
    "      ignoreUriCase: true\n"
    "      uri: {prefix: /H}\n"
    "    headers:\n"
    "      request: {set: {x-a: b}, add: {x-c: d}, remove: [cookie]}\n"
    "      response: {set: {x-served: keel}, remove: [server]}\n"
    "    route: [{destination: {host: app.example.com, subset: v1}}]\n"
    "  - name: authority\n"
    "    match: [{authority: {prefix: admin.}}]\n"
    "    redirect: {authority: internal.example.com, uri: /admin, redirectCode: 302}\n"
    "  - name: redirect\n"
    "    match: [{uri: {prefix: /old}}]\n"
    "    redirect: {uri: /new, redirectCode: 308}\n"
    "  - name: https\n"
    "    match: [{uri: {prefix: /secure}}]\n"
    "    redirect: {scheme: https, port: 8443}\n"
    "  - name: abort\n"
    "    match: [{uri: {prefix: /abort}}]\n"
    "    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}\n"
    "    route: [{destination: {host: app.example.com}}]\n"
    "  - name: flaky\n"
    "    match: [{uri: {prefix: /flaky}}]\n"
    "    fault:\n"
    "      abort: {httpStatus: 500, percentage: {value: 50}}\n"
    "      delay: {fixedDelay: 1ms, percentage: {value: 50}}\n"
    "    route: [{destination: {host: app.example.com}}]\n"
    "  - name: api\n"
    "    match: [{uri: {prefix: /api/}}]\n"
    "    rewrite: {uri: /v2/, authority: backend}\n"
    "    timeout: 5s\n"
    "    retries: {attempts: 2, retryOn: \"connect-failure,reset\"}\n"
    "    route:\n"
    "    - destination: {host: app.example.com, subset: v1}\n"
    "      weight: 60\n"
    "      headers: {request: {set: {x-subset: v1}}}\n"
    "    - destination: {host: app.example.com, subset: v2}\n"
    "      weight: 40\n"
    "  - name: nc\n"
    "    match: [{uri: {prefix: /nc}}]\n"
    "    route: [{destination: {host: missing.example.com}}]\n"
    "  - name: dns\n"
    "    match: [{uri: {prefix: /dns}}]\n"
    "    route: [{destination: {host: dns.example.com}}]\n"
    "  - name: uh\n"
    "    match: [{uri: {prefix: /uh}}]\n"
    "    route: [{destination: {host: empty.example.com}}]\n"
    "  - name: up\n"
    "    match: [{uri: {prefix: /u}}, {method: {exact: POST}}, {method: {exact: HEAD}}]\n"
    "    route: [{destination: {host: app.example.com}}]\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: ServiceEntry\n"
    "metadata: {name: app, namespace: istio-system}\n"
    "spec:\n"
    "  hosts: [app.example.com]\n"
    "  location: MESH_INTERNAL\n"
    "  ports: [{number: 80, name: http, protocol: HTTP}]\n"
    "  resolution: STATIC\n"
    "  endpoints:\n"
    "  - {address: 127.0.0.1, ports: {http: 1}, labels: {version: v1}}\n"
    "  - {address: 127.0.0.1, ports: {http: 9}, labels: {version: v2}}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: DestinationRule\n"
    "metadata: {name: app, namespace: istio-system}\n"
    "spec:\n"
    "  host: app.example.com\n"
    "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}, connectionPool: {tcp: {connectTimeout: 1s}}}\n"
    "  subsets:\n"
    "  - {name: v1, labels: {version: v1}}\n"
    "  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: ServiceEntry\n"
    "metadata: {name: dns, namespace: istio-system}\n"
    "spec:\n"
    "  hosts: [dns.example.com]\n"
    "  location: MESH_EXTERNAL\n"
    "  ports: [{number: 80, name: http, protocol: HTTP}]\n"
    "  resolution: DNS\n"
    "  endpoints: [{address: backend.invalid}]\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: ServiceEntry\n"
    "metadata: {name: empty, namespace: istio-system}\n"
    "spec:\n"
    "  hosts: [empty.example.com]\n"
    "  location: MESH_INTERNAL\n"
    "  ports: [{number: 80, name: http, protocol: HTTP}]\n"
    "  resolution: STATIC\n"
    "  workloadSelector: {labels: {app: nothing}}\n";

static const char CUSTOM_LOG_FORMAT[] =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% "
    "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT):10%\" "
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% "
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% "
    "%REQ_WITHOUT_QUERY(:PATH)% %ROUTE_NAME% %RESP(LOCATION)%\n";

/* Built once, alive for the whole process (reachable, so never a leak). */
static struct keel_loadset g_ls;
static struct keel_store *g_store;
static struct keel_snapshot *g_snap;
static struct keel_logcfg g_logs[3]; /* text, JSON, custom */
static bool g_verbose;               /* PROXY_CONN_FUZZ_VERBOSE=1: print what the proxy wrote */

enum {
    F_WRITES = 0x03,
    F_LOG = 0x0c,
    F_NO_PUMP = 0x10,
    F_CLOSE = 0x20,
    F_DRAINING = 0x40,
    F_WAIT = 0x80,
};

static char g_out[OUT_CAP];

struct conn {
    struct keel_pworker pw;
    int fd;    /* the client's end */
    bool eof;  /* the proxy closed its end */
    char *out; /* g_out */
    size_t out_len;
    bool out_cut; /* more than OUT_CAP arrived */
};

static void init_log(struct keel_logcfg *c, const char *format, bool json, int fd)
{
    const char *err = NULL;
    atomic_init(&c->refs, 1); /* never dropped: static */
    c->format = keel_accesslog_format_new(format, json, &err);
    if (!c->format) {
        fprintf(stderr, "proxy_conn_fuzz: access log format: %s\n", err ? err : "?");
        abort();
    }
    c->fd = fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    g_verbose = getenv("PROXY_CONN_FUZZ_VERBOSE") != NULL;
    keel_log_set_level(g_verbose ? KEEL_LOG_DEBUG : KEEL_LOG_ERROR);
    keel_loadset_init(&g_ls, "istio-system");
    int rc = keel_load_buf(&g_ls, "proxy_conn_fuzz.yaml", CONFIG, sizeof(CONFIG) - 1);
    if (rc < 0 || g_ls.invalid || g_ls.diags.errors) {
        for (size_t i = 0; i < keel_diags_count(&g_ls.diags); i++)
            fprintf(stderr, "proxy_conn_fuzz: config: %s\n", keel_diags_at(&g_ls.diags, i)->msg);
        abort();
    }
    g_store = keel_store_build(&g_ls, NULL, NULL);
    static const struct keel_kv_str labels[] = {{"istio", "ingressgateway"}};
    static const struct keel_proxy_identity id = {
        .kind = KEEL_PROXY_ROUTER, .ns = "istio-system", .labels = labels, .n_labels = 1};
    g_snap = keel_snapshot_build(g_store, &id, NULL, NULL, NULL);
    CHECK(keel_snapshot_listener(g_snap, GW_PORT) != NULL);
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    CHECK(devnull >= 0);
    init_log(&g_logs[0], NULL, false, devnull);
    init_log(&g_logs[1], NULL, true, devnull);
    init_log(&g_logs[2], CUSTOM_LOG_FORMAT, false, devnull);
    return 0;
}

/* ---- the worker, set up as runtime.c's keel_proxy_run/worker_init do (minus threads and listeners) ---------- */

static void worker_init(struct keel_pworker *pw, uint8_t flags)
{
    memset(pw, 0, sizeof(*pw));
    pw->loop = keel_loop_new();
    CHECK(pw->loop != NULL);
    pw->stats = keel_stats_shard_new();
    CHECK(pw->stats != NULL);
    pw->rng = 0x9E3779B97F4A7C15ULL; /* fixed: weights and fault percentages replay the same way */
    keel_map_init(&pw->pools);
    keel_map_init(&pw->rr);
    keel_buf_init(&pw->logline, 64 * 1024);
    pw->snap = keel_snapshot_ref(g_snap);
    unsigned log = (flags & F_LOG) >> 2;
    pw->log = log ? &g_logs[log - 1] : NULL;
    pw->draining = (flags & F_DRAINING) != 0;
}

static void worker_free(struct keel_pworker *pw)
{
    /* worker_fini/worker_drain: idle pooled connections go */
    /* worker_fini: idle pooled connections closed, pool records and round-robin cursors freed */
    keel_upstream_state_free(pw);
    /* deferred frees queued by the closes run in the next iterations (keel_loop_free runs what is left) */
    for (int i = 0; i < 4; i++)
        CHECK(keel_loop_run_once(pw->loop, 0) >= 0);
    keel_buf_free(&pw->logline);
    keel_snapshot_unref(pw->snap);
    keel_loop_free(pw->loop);
    keel_stats_shard_free(pw->stats);
}

/* ---- the client's end --------------------------------------------------------------------------------------- */

/* Reads what the proxy wrote. Returns true when anything arrived (or EOF). */
static bool drain(struct conn *c)
{
    bool got = false;
    if (c->fd < 0)
        return false;
    for (;;) {
        char buf[65536];
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            got = true;
            size_t keep = (size_t)n;
            if (c->out_len + keep > OUT_CAP) {
                keep = OUT_CAP - c->out_len;
                c->out_cut = true;
            }
            memcpy(c->out + c->out_len, buf, keep);
            c->out_len += keep;
            continue;
        }
        if (n == 0) {
            got = !c->eof;
            c->eof = true;
        }
        /* EAGAIN, or ECONNRESET after the proxy dropped the connection with unread input */
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            got = !c->eof;
            c->eof = true;
        }
        return got;
    }
}

/* Runs the loop until nothing happens for IDLE_ITERATIONS iterations or the connection is gone. */
static void pump(struct conn *c)
{
    int idle = 0;
    for (int i = 0; i < MAX_ITERATIONS; i++) {
        int n = keel_loop_run_once(c->pw.loop, 0);
        CHECK(n >= 0);
        bool got = drain(c);
        if (c->pw.conns == 0)
            return;
        if (n == 0 && !got) {
            if (++idle >= IDLE_ITERATIONS)
                return;
        } else {
            idle = 0;
        }
    }
}

/* Sends all of p (running the loop while the socket buffer is full). False when the proxy is gone. */
static bool send_all(struct conn *c, const uint8_t *p, size_t n)
{
    int stuck = 0;
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            stuck = 0;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            /* the proxy stopped reading (back-pressure, or it is closing): let it run */
            pump(c);
            if (c->pw.conns == 0 || ++stuck > 64)
                return false;
            continue;
        }
        return false; /* EPIPE/ECONNRESET: the proxy closed */
    }
    return true;
}

/* ---- the response check -------------------------------------------------------------------------------------- */

static struct keel_http_head g_resp; /* 4 KiB: static, not on the stack */

static bool contains(const uint8_t *p, size_t n, const char *s)
{
    size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(p + i, s, k) == 0)
            return true;
    return false;
}

/* The proxy's output must be whole HTTP/1.1 responses, the last one possibly cut short. */
static void check_responses(const char *p, size_t n, bool head_possible)
{
    size_t off = 0;
    while (off < n) {
        size_t left = n - off;
        size_t cmp = left < 9 ? left : 9;
        if (memcmp(p + off, "HTTP/1.1 ", cmp) != 0) {
            fprintf(stderr, "proxy_conn_fuzz: output at %zu is not a response: \"%.*s\"\n", off,
                    (int)(left < 80 ? left : 80), p + off);
            abort();
        }
        struct keel_h1_response res;
        size_t used = 0;
        int rc = keel_h1_parse_response(p + off, left, keel_str_c("GET"), NULL, &g_resp, &res, &used);
        if (rc == KEEL_EAGAIN)
            return; /* cut short at the end */
        if (rc != 0) {
            fprintf(stderr, "proxy_conn_fuzz: response at %zu does not parse (%s): \"%.*s\"\n", off,
                    keel_h1_strerror(rc), (int)(left < 400 ? left : 400), p + off);
            abort();
        }
        CHECK(g_resp.status >= 100 && g_resp.status <= 599);
        off += used;
        CHECK(!res.tunnel && !res.body_until_close); /* no upstream ever answers: no 101, no read-until-close */
        if (res.no_body) {
            /* 100 Continue, 204, 304: nothing follows the head; a 204 must not carry Content-Length
             * (RFC 9110 §8.6), nor a 1xx (the proxy never sends one with it either). */
            CHECK(!(g_resp.status == 204 || g_resp.status < 200) || !keel_http_head_get(&g_resp, "content-length"));
            continue;
        }
        /* every response here is the proxy's own: always Content-Length */
        CHECK(g_resp.has_content_length && !g_resp.chunked);
        if (head_possible)
            return; /* a HEAD response has no body: where the next one starts is unknown */
        if (g_resp.content_length > n - off)
            return; /* body cut short */
        off += (size_t)g_resp.content_length;
    }
}

/* ---- one input ---------------------------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t flags = data[0];
    const uint8_t *msg = data + 3;
    size_t len = size - 3;
    /* split points: fractions of the message, in order */
    size_t a = len * data[1] / 255, b = len * data[2] / 255;
    if (a > b) {
        size_t t = a;
        a = b;
        b = t;
    }
    unsigned writes = (flags & F_WRITES) == 0 ? 1 : (flags & F_WRITES) == 1 ? 2 : 3;
    size_t cuts[4] = {0, a, b, len};
    if (writes == 1)
        cuts[1] = cuts[2] = len;
    else if (writes == 2)
        cuts[2] = cuts[1];

    static struct conn c;
    memset(&c, 0, sizeof(c));
    c.out = g_out;
    worker_init(&c.pw, flags);

    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0); /* accepted sockets are non-blocking (keel_sock_accept) */
    c.fd = sv[0];
    struct keel_plistener l = {.pw = &c.pw, .fd = -1, .role = KEEL_PL_GATEWAY, .port = GW_PORT};
    snprintf(l.name, sizeof(l.name), "0.0.0.0_%u", GW_PORT);
    struct keel_addr peer;
    CHECK(keel_addr_parse("10.1.2.3:43210", &peer) == 0);
    keel_http1_accept(&l, sv[1], &peer);
    CHECK(c.pw.conns == 1);

    for (unsigned i = 0; i < 3; i++) {
        if (cuts[i + 1] > cuts[i] && !send_all(&c, msg + cuts[i], cuts[i + 1] - cuts[i]))
            break;
        if (!(flags & F_NO_PUMP) || i == 2)
            pump(&c);
        if (c.pw.conns == 0)
            break;
    }
    if ((flags & F_WAIT) && c.pw.conns) {
        CHECK(keel_loop_run_once(c.pw.loop, 2) >= 0);
        drain(&c);
        pump(&c);
    }

    /* the client goes away: the proxy must close its side within a bounded number of iterations */
    if (flags & F_CLOSE) {
        close(c.fd);
        c.fd = -1;
    } else {
        shutdown(c.fd, SHUT_WR);
    }
    for (int i = 0; i < MAX_ITERATIONS && c.pw.conns; i++) {
        CHECK(keel_loop_run_once(c.pw.loop, 0) >= 0);
        drain(&c);
    }
    /* a timer may be all that is left (the 1 ms fault delay): give time a chance before calling it a hang */
    for (int i = 0; i < 50 && c.pw.conns; i++) {
        CHECK(keel_loop_run_once(c.pw.loop, 10) >= 0);
        drain(&c);
    }
    if (c.pw.conns) {
        fprintf(stderr, "proxy_conn_fuzz: the proxy kept the connection open after the client %s\n",
                (flags & F_CLOSE) ? "closed it" : "half-closed it");
        abort();
    }
    /* read the rest of what it wrote, up to its EOF */
    for (int i = 0; i < 1000 && c.fd >= 0 && !c.eof; i++)
        drain(&c);
    if (g_verbose)
        fprintf(stderr, "proxy_conn_fuzz: %zu bytes from the proxy:\n%.*s\n", c.out_len, (int)c.out_len, c.out);
    if (c.fd >= 0) {
        CHECK(c.eof);
        check_responses(c.out, c.out_len, contains(msg, len, "HEAD"));
        close(c.fd);
    }
    worker_free(&c.pw);
    return 0;
}

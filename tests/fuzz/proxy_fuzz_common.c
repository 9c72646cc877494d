/*
 * proxy_fuzz_common.c - config, snapshot, hand-built worker, client driving and an
 * in-process HTTP/1.1 upstream for the whole-connection proxy fuzzers (see
 * proxy_fuzz_common.h). Linked into every tests/fuzz/proxy_*_fuzz.c target and its
 * replay program (CMakeLists.txt).
 */
#include "proxy_fuzz_common.h"

#include "base/diag.h"
#include "base/err.h"
#include "base/log.h"
#include "base/map.h"
#include "base/str.h"
#include "config/load.h"
#include "config/store.h"
#include "mesh/snapshot.h"
#include "net/loop.h"
#include "net/sock.h"
#include "proxy/accesslog.h"
#include "proxy/dfp.h"
#include "proxy/stats.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

const char *pf_name = "proxy_fuzz";
bool pf_verbose;

/* ---- known bugs ----------------------------------------------------------------------------------------------- */

static struct pf_known_bug *g_bugs;
static size_t g_n_bugs;
static bool g_strict;

void pf_set_known_bugs(struct pf_known_bug *bugs, size_t n, const char *strict_env)
{
    g_bugs = bugs;
    g_n_bugs = n;
    g_strict = getenv(strict_env) != NULL;
}

bool pf_known_bug(const char *id)
{
    for (size_t i = 0; i < g_n_bugs && !g_strict; i++) {
        if (strcmp(g_bugs[i].id, id) == 0) {
            if (!g_bugs[i].noted)
                fprintf(stderr, "%s: known bug %s, not fatal (reproducer regress-%s): %s\n", pf_name, id, id,
                        g_bugs[i].what);
            g_bugs[i].noted = true;
            return true;
        }
    }
    return false;
}

/* ---- config ---------------------------------------------------------------------------------------------------- */

/* One Gateway on port 8080; a VirtualService with exact, prefix, regex, method, header, query and authority
 * matches, redirects, direct responses, fault abort and delay, rewrites, retries, a weighted split, header
 * operations; app.example.com on two 127.0.0.1 ports (the parameters), a DNS endpoint that cannot be dialled,
 * an empty cluster and a missing one. */
static const char PF_CONFIG_FMT[] =
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
    "  - {address: 127.0.0.1, ports: {http: %u}, labels: {version: v1}}\n"
    "  - {address: 127.0.0.1, ports: {http: %u}, labels: {version: v2}}\n"
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

size_t pf_config(char *buf, size_t cap, unsigned v1_port, unsigned v2_port)
{
    int n = snprintf(buf, cap, PF_CONFIG_FMT, v1_port, v2_port);
    PF_CHECK(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

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

static void init_log(struct keel_logcfg *c, const char *format, bool json, int fd)
{
    const char *err = NULL;
    atomic_init(&c->refs, 1); /* never dropped: static */
    c->format = keel_accesslog_format_new(format, json, &err);
    if (!c->format) {
        fprintf(stderr, "%s: access log format: %s\n", pf_name, err ? err : "?");
        abort();
    }
    c->fd = fd;
}

void pf_init(const char *name, const char *verbose_env, const char *config, size_t len)
{
    pf_name = name;
    pf_verbose = getenv(verbose_env) != NULL;
    keel_log_set_level(pf_verbose ? KEEL_LOG_DEBUG : KEEL_LOG_ERROR);
    keel_loadset_init(&g_ls, "istio-system");
    char file[128];
    snprintf(file, sizeof(file), "%s.yaml", name);
    int rc = keel_load_buf(&g_ls, file, config, len);
    if (rc < 0 || g_ls.invalid || g_ls.diags.errors) {
        for (size_t i = 0; i < keel_diags_count(&g_ls.diags); i++)
            fprintf(stderr, "%s: config: %s\n", name, keel_diags_at(&g_ls.diags, i)->msg);
        abort();
    }
    g_store = keel_store_build(&g_ls, NULL, NULL);
    static const struct keel_kv_str labels[] = {{"istio", "ingressgateway"}};
    static const struct keel_proxy_identity id = {
        .kind = KEEL_PROXY_ROUTER, .ns = "istio-system", .labels = labels, .n_labels = 1};
    g_snap = keel_snapshot_build(g_store, &id, NULL, NULL, NULL);
    PF_CHECK(keel_snapshot_listener(g_snap, PF_GW_PORT) != NULL);
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    PF_CHECK(devnull >= 0);
    init_log(&g_logs[0], NULL, false, devnull);
    init_log(&g_logs[1], NULL, true, devnull);
    init_log(&g_logs[2], CUSTOM_LOG_FORMAT, false, devnull);
}

/* ---- the worker, set up as runtime.c's keel_proxy_run/worker_init do (minus threads and listeners) ---------- */

void pf_worker_init(struct keel_pworker *pw, unsigned log, bool draining)
{
    memset(pw, 0, sizeof(*pw));
    pw->loop = keel_loop_new();
    PF_CHECK(pw->loop != NULL);
    pw->stats = keel_stats_shard_new();
    PF_CHECK(pw->stats != NULL);
    pw->rng = 0x9E3779B97F4A7C15ULL; /* fixed: weights and fault percentages replay the same way */
    keel_map_init(&pw->pools);
    keel_map_init(&pw->rr);
    keel_buf_init(&pw->logline, 64 * 1024);
    pw->snap = keel_snapshot_ref(g_snap);
    pw->log = log ? &g_logs[log - 1] : NULL;
    pw->draining = draining;
}

void pf_worker_drain(struct keel_pworker *pw)
{
    pw->draining = true;
    keel_upstream_pools_close(pw);
    keel_downstreams_shutdown(pw, false);
}

void pf_worker_shutdown(struct keel_pworker *pw)
{
    keel_downstreams_shutdown(pw, true);
}

void pf_worker_free(struct keel_pworker *pw)
{
    /* worker_fini: idle pooled connections closed, pool records and round-robin cursors freed */
    keel_upstream_state_free(pw);
    keel_dfp_free(pw); /* a no-op: a worker without a runtime never resolves (names answer 503 DF) */
    /* deferred frees queued by the closes run in the next iterations (keel_loop_free runs what is left) */
    for (int i = 0; i < 4; i++)
        PF_CHECK(keel_loop_run_once(pw->loop, 0) >= 0);
    keel_buf_free(&pw->logline);
    keel_stream_cache_free(pw); /* empty under ASan (KEEL_PROXY_REUSE is 0), as worker_fini does */
    keel_snapshot_unref(pw->snap);
    keel_loop_free(pw->loop);
    keel_stats_shard_free(pw->stats);
}

/* ---- the client's end --------------------------------------------------------------------------------------- */

void pf_conn_open(struct pf_conn *c, unsigned log, bool draining)
{
    pf_worker_init(&c->pw, log, draining);
    c->fd = -1;
    c->eof = false;
    c->out_len = 0;
    c->out_cut = false;
    int sv[2];
    PF_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    PF_CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0); /* accepted sockets are non-blocking (keel_sock_accept) */
    c->fd = sv[0];
    struct keel_plistener l = {.pw = &c->pw, .fd = -1, .role = KEEL_PL_GATEWAY, .port = PF_GW_PORT};
    snprintf(l.name, sizeof(l.name), "0.0.0.0_%u", PF_GW_PORT);
    struct keel_addr peer;
    PF_CHECK(keel_addr_parse("10.1.2.3:43210", &peer) == 0);
    keel_http1_accept(&l, sv[1], &peer);
    PF_CHECK(c->pw.conns == 1);
}

bool pf_drain(struct pf_conn *c)
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
            if (c->out_len + keep > c->out_cap) {
                keep = c->out_cap - c->out_len;
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

void pf_pump(struct pf_conn *c)
{
    int idle = 0;
    for (int i = 0; i < PF_MAX_ITERATIONS; i++) {
        int n = keel_loop_run_once(c->pw.loop, 0);
        PF_CHECK(n >= 0);
        bool got = pf_drain(c);
        if (c->service && c->service(c->service_arg))
            got = true;
        if (c->pw.conns == 0)
            return;
        if (n == 0 && !got) {
            if (++idle >= PF_IDLE_ITERATIONS)
                return;
        } else {
            idle = 0;
        }
    }
}

bool pf_send_all(struct pf_conn *c, const uint8_t *p, size_t n)
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
            pf_pump(c);
            if (c->pw.conns == 0 || ++stuck > 64)
                return false;
            continue;
        }
        return false; /* EPIPE/ECONNRESET: the proxy closed */
    }
    return true;
}

void pf_wait(struct pf_conn *c, int ms)
{
    if (!c->pw.conns)
        return;
    PF_CHECK(keel_loop_run_once(c->pw.loop, ms) >= 0);
    pf_drain(c);
    if (c->service)
        c->service(c->service_arg);
    pf_pump(c);
}

void pf_conn_end(struct pf_conn *c, bool close_it)
{
    /* the client goes away: the proxy must close its side within a bounded number of iterations */
    if (close_it) {
        close(c->fd);
        c->fd = -1;
    } else {
        shutdown(c->fd, SHUT_WR);
    }
    for (int i = 0; i < PF_MAX_ITERATIONS && c->pw.conns; i++) {
        PF_CHECK(keel_loop_run_once(c->pw.loop, 0) >= 0);
        pf_drain(c);
        if (c->service)
            c->service(c->service_arg);
    }
    /* a timer may be all that is left (the 1 ms fault delay): give time a chance before calling it a hang */
    for (int i = 0; i < 50 && c->pw.conns; i++) {
        PF_CHECK(keel_loop_run_once(c->pw.loop, 10) >= 0);
        pf_drain(c);
        if (c->service)
            c->service(c->service_arg);
    }
    if (c->pw.conns) {
        fprintf(stderr, "%s: the proxy kept the connection open after the client %s\n", pf_name,
                close_it ? "closed it" : "half-closed it");
        abort();
    }
    /* read the rest of what it wrote, up to its EOF */
    for (int i = 0; i < 1000 && c->fd >= 0 && !c->eof; i++)
        pf_drain(c);
}

void pf_conn_free(struct pf_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    pf_worker_free(&c->pw);
}

/* ---- the in-process upstream ---------------------------------------------------------------------------------- */

#define UP_IN_MAX (1u << 20)
#define UP_OUT_MAX (1u << 20)
#define UP_BIG 100000
#define UP_HUGE_CHUNK 16000
#define UP_HUGE_CHUNKS 20

void pf_upstream_listen(struct pf_upstream *u)
{
    memset(u, 0, sizeof(*u));
    for (size_t i = 0; i < PF_UP_MAX_CONNS; i++)
        u->conns[i].fd = -1;
    u->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    PF_CHECK(u->lfd >= 0);
    int one = 1;
    PF_CHECK(setsockopt(u->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    PF_CHECK(bind(u->lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
    PF_CHECK(listen(u->lfd, 128) == 0);
    socklen_t alen = sizeof(a);
    PF_CHECK(getsockname(u->lfd, (struct sockaddr *)&a, &alen) == 0);
    u->port = ntohs(a.sin_port);
}

void pf_upstream_begin(struct pf_upstream *u, const uint8_t plans[PF_UP_PLANS], const uint8_t *script,
                       size_t script_len)
{
    memcpy(u->plans, plans, PF_UP_PLANS);
    u->script = script;
    u->script_len = script_len;
    u->accepted = u->requests = u->responses = 0;
}

/* Closes with a reset (SO_LINGER 0): neither end keeps the connection in TIME_WAIT, so a long run does not
 * pile up tens of thousands of them on a machine others use. The proxy reads a reset as the end of the
 * connection, as it reads EOF (keel_sock_read: KEEL_ECLOSED); what it had not read yet is still delivered,
 * since a connection is only closed with nothing of ours left unsent (up_unsent). */
static void close_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* Bytes of ours the kernel has not yet handed to the proxy's socket. */
static int up_unsent(int fd)
{
    int n = 0;
    return ioctl(fd, SIOCOUTQ, &n) == 0 ? n : 0;
}

static void up_close(struct pf_upconn *c)
{
    if (c->fd < 0)
        return;
    close_reset(c->fd);
    c->fd = -1;
    keel_buf_free(&c->in);
    keel_buf_free(&c->out);
}

static void up_violation(const struct pf_upconn *c, const char *what, const char *at, size_t n)
{
    fprintf(stderr, "%s: upstream request %u on this connection: %s: \"%.*s\"\n", pf_name, c->requests, what,
            (int)(n < 600 ? n : 600), at);
    abort();
}

static const char *up_body_pattern(void)
{
    static char body[UP_BIG];
    if (!body[0])
        for (size_t i = 0; i < sizeof(body); i++)
            body[i] = (char)('a' + i % 26);
    return body;
}

/* Queues the answer to the current request per its plan. */
static void up_respond(struct pf_upstream *u, struct pf_upconn *c)
{
    unsigned kind = c->plan & PF_UP_KIND;
    bool close_it = !(c->plan & PF_UP_KEEP_ALIVE);
    bool body = !c->head_req; /* a HEAD request gets the head only */
    struct keel_buf *o = &c->out;
    const char *head = NULL, *payload = "";
    size_t before = o->len;
    switch (kind) {
    case PF_UP_OK:
        head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-upstream: keel-fuzz\r\ncontent-length: 6\r\n";
        payload = "hello\n";
        break;
    case PF_UP_CHUNKED:
        head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n";
        payload = "5\r\nhello\r\n1;ext=1\r\n\n\r\n0\r\nx-trailer: 1\r\n\r\n";
        break;
    case PF_UP_NO_CONTENT:
        head = "HTTP/1.1 204 No Content\r\nx-upstream: keel-fuzz\r\n";
        break;
    case PF_UP_UNTIL_CLOSE:
        head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n";
        payload = "until close\n";
        c->close_after = true;
        break;
    case PF_UP_CONTINUE:
        keel_buf_puts(o, "HTTP/1.1 100 Continue\r\n\r\n");
        head = "HTTP/1.1 201 Created\r\ncontent-length: 2\r\n";
        payload = "ok";
        break;
    case PF_UP_NOT_MODIFIED:
        head = "HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 100\r\n";
        break;
    case PF_UP_BIG:
        head = "HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n";
        break;
    case PF_UP_HUGE_CHUNKED:
        head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n";
        break;
    case PF_UP_GARBAGE:
        keel_buf_puts(o, "HTTP/1.1 2OO OK\r\n\r\n");
        c->close_after = true;
        break;
    case PF_UP_CLOSE:
        c->close_after = true;
        break;
    case PF_UP_HOP_HEADERS:
        head = "HTTP/1.1 200 OK\r\nConnection: x-drop, keep-alive\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\n"
               "Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: x-t\r\nUpgrade: h2c\r\nSet-Cookie: a=1\r\n"
               "Set-Cookie: b=2\r\nX-Mixed-CASE: Value\r\nServer: upstream\r\nContent-Length: 2\r\n";
        payload = "ok";
        break;
    case PF_UP_UNAVAILABLE:
        head = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n";
        payload = "busy";
        break;
    case PF_UP_CUT:
        head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n";
        payload = "0123456789";
        c->close_after = true;
        break;
    case PF_UP_SCRIPT:
        if (u->script_len)
            keel_buf_append(o, u->script, u->script_len);
        else
            keel_buf_puts(o, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        c->close_after |= close_it;
        break;
    case PF_UP_SILENT:
        return; /* never answered */
    case PF_UP_SWITCHING:
        keel_buf_puts(o, "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
                         "\x81\x05hello");
        c->close_after = true;
        break;
    }
    if (head) {
        keel_buf_puts(o, head);
        if (close_it)
            keel_buf_puts(o, "connection: close\r\n");
        keel_buf_puts(o, "\r\n");
        if (body && kind == PF_UP_BIG) {
            keel_buf_append(o, up_body_pattern(), UP_BIG);
        } else if (body && kind == PF_UP_HUGE_CHUNKED) {
            for (int i = 0; i < UP_HUGE_CHUNKS; i++)
                keel_h1_write_chunk(o, up_body_pattern(), UP_HUGE_CHUNK);
            keel_h1_write_last_chunk(o, NULL, 0);
        } else if (body) {
            keel_buf_puts(o, payload);
        }
        c->close_after |= close_it;
    }
    if ((c->plan & PF_UP_SPLIT) && o->len > before + 1)
        c->split_at = before + (o->len - before) / 2;
    c->answered = true;
    u->responses++;
}

/* Parses what the proxy sent: request heads (each must parse as HTTP/1.1) and bodies (their framing must hold). */
static void up_process(struct pf_upstream *u, struct pf_upconn *c)
{
    static struct keel_http_head head; /* 4 KiB: static, not on the stack */
    for (;;) {
        if (c->close_after) {
            keel_buf_reset(&c->in); /* closing: nothing more is read as a request */
            return;
        }
        if (!c->in_body) {
            if (c->in.len == 0)
                return;
            /* (a script may hold a whole response and more: the proxy may rightly be done with it early) */
            if (c->requests && (!c->answered || (c->out.len && (c->plan & PF_UP_KIND) != PF_UP_SCRIPT)))
                up_violation(c, "a new request before the previous response was sent in full", c->in.data, c->in.len);
            struct keel_h1_request h1;
            size_t used = 0;
            int rc = keel_h1_parse_request_ex(c->in.data, c->in.len, NULL, &head, &h1, &used);
            if (rc == KEEL_EAGAIN)
                return;
            if (rc == KEEL_H1_E_HEAD_TOO_LARGE || rc == KEEL_H1_E_TOO_MANY_HEADERS || rc == KEEL_H1_E_TARGET_TOO_LONG) {
                /* size limits, not malformed: answered as a strict server would */
                keel_buf_puts(&c->out, "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n"
                                       "content-length: 0\r\n\r\n");
                c->requests++;
                c->answered = c->close_after = true;
                continue;
            }
            if (rc != 0 && u->tolerate && u->tolerate(rc)) {
                keel_buf_puts(&c->out, "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
                c->requests++;
                c->answered = c->close_after = true;
                continue;
            }
            if (rc != 0)
                up_violation(c, keel_h1_strerror(rc), c->in.data, c->in.len);
            if (head.version != KEEL_HTTP_11)
                up_violation(c, "not an HTTP/1.1 request", c->in.data, used);
            c->requests++;
            c->head_req = keel_str_eq_c(head.method, "HEAD");
            c->body_mode = head.chunked                                     ? KEEL_BODY_CHUNKED
                           : head.has_content_length && head.content_length ? KEEL_BODY_LENGTH
                                                                            : KEEL_BODY_NONE;
            c->body_left = head.content_length;
            keel_h1_chunked_init(&c->ch);
            keel_buf_consume(&c->in, used);
            c->plan = u->plans[u->requests % PF_UP_PLANS];
            u->requests++;
            c->answered = false;
            c->in_body = true;
            if (c->plan & PF_UP_EARLY)
                up_respond(u, c);
            if (c->plan & PF_UP_STALL) {
                c->stall = 64;
                return; /* what is already in c->in waits too */
            }
            continue;
        }
        /* the body */
        bool done = false;
        if (c->body_mode == KEEL_BODY_NONE) {
            done = true;
        } else if (c->body_mode == KEEL_BODY_LENGTH) {
            size_t take = c->body_left < c->in.len ? (size_t)c->body_left : c->in.len;
            keel_buf_consume(&c->in, take);
            c->body_left -= take;
            done = c->body_left == 0;
        } else {
            for (;;) {
                size_t used = 0, dlen = 0;
                const char *data;
                int rc = keel_h1_chunked_feed(&c->ch, c->in.data, c->in.len, &used, &data, &dlen);
                if (rc < 0 && rc != KEEL_EAGAIN)
                    up_violation(c, keel_h1_strerror(rc), c->in.data, c->in.len);
                keel_buf_consume(&c->in, used);
                if (rc == KEEL_H1_CHUNKED_END) {
                    done = true;
                    break;
                }
                if (rc == KEEL_EAGAIN || used == 0)
                    break;
            }
        }
        if (!done)
            return;
        c->in_body = false;
        if (!c->answered)
            up_respond(u, c); /* silent: stays unanswered, and a further request on this connection is a violation */
    }
}

/* Writes what is queued (the first part only, when split). Returns true when it wrote anything. */
static bool up_flush(struct pf_upconn *c)
{
    bool did = false;
    while (c->out.len) {
        size_t n = c->split_at ? c->split_at : c->out.len;
        ssize_t w = send(c->fd, c->out.data, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                c->peer_closed = true;
            break;
        }
        did = true;
        keel_buf_consume(&c->out, (size_t)w);
        if (c->split_at) {
            c->split_at -= (size_t)w;
            if (c->split_at == 0)
                break; /* the rest in a later call, after the proxy ran */
        }
    }
    return did;
}

bool pf_upstream_service(void *arg)
{
    struct pf_upstream *u = arg;
    bool did = false;
    for (;;) {
        int fd = accept4(u->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        did = true;
        u->accepted++;
        struct pf_upconn *c = NULL;
        for (size_t i = 0; i < PF_UP_MAX_CONNS && !c; i++)
            if (u->conns[i].fd < 0)
                c = &u->conns[i];
        if (!c) {
            close_reset(fd); /* more than PF_UP_MAX_CONNS at once: refused */
            continue;
        }
        memset(c, 0, sizeof(*c));
        c->fd = fd;
        keel_buf_init(&c->in, UP_IN_MAX);
        keel_buf_init(&c->out, UP_OUT_MAX);
    }
    for (size_t i = 0; i < PF_UP_MAX_CONNS; i++) {
        struct pf_upconn *c = &u->conns[i];
        if (c->fd < 0)
            continue;
        if (c->stall) {
            c->stall--; /* not reading: the proxy's writes back up */
            if (up_flush(c))
                did = true;
            continue;
        }
        for (;;) {
            char buf[65536];
            size_t room = c->in.max - c->in.len;
            if (room == 0)
                break;
            ssize_t n = recv(c->fd, buf, room < sizeof(buf) ? room : sizeof(buf), MSG_DONTWAIT);
            if (n > 0) {
                did = true;
                keel_buf_append(&c->in, buf, (size_t)n);
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                did = true;
                c->peer_closed = true;
            }
            break;
        }
        up_process(u, c);
        if (up_flush(c))
            did = true;
        if (c->peer_closed || (c->close_after && c->out.len == 0 && up_unsent(c->fd) == 0)) {
            up_close(c);
            did = true;
        }
    }
    return did;
}

void pf_upstream_reset_all(struct pf_upstream *u)
{
    pf_upstream_service(u); /* accepts what is waiting, so that it is reset too */
    for (size_t i = 0; i < PF_UP_MAX_CONNS; i++)
        up_close(&u->conns[i]);
}

void pf_upstream_end(struct pf_upstream *u)
{
    for (size_t i = 0; i < PF_UP_MAX_CONNS; i++)
        up_close(&u->conns[i]);
    for (;;) {
        int fd = accept4(u->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            break;
        close_reset(fd);
    }
    u->script = NULL;
    u->script_len = 0;
}

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
 * The config, the worker set-up and the socketpair driving are shared with proxy_h2_fuzz.c
 * (proxy_fuzz_common.c); app.example.com's endpoints are 127.0.0.1:1 and 127.0.0.1:9 here.
 *
 * Build: cmake --preset fuzz && cmake --build --preset fuzz --target proxy_conn_fuzz;
 * run: tests/fuzz/run.sh (corpus tests/fuzz/corpus/proxy_conn, dictionary tests/fuzz/proxy_conn.dict).
 */
#include "proxy_fuzz_common.h"

#include "base/err.h"
#include "base/str.h"
#include "http/h1.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK PF_CHECK

/* what is kept of the proxy's output for the response check */
#define OUT_CAP (1u << 20)

enum {
    F_WRITES = 0x03,
    F_LOG = 0x0c,
    F_NO_PUMP = 0x10,
    F_CLOSE = 0x20,
    F_DRAINING = 0x40,
    F_WAIT = 0x80,
};

static char g_out[OUT_CAP];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static char config[8192];
    size_t len = pf_config(config, sizeof(config), 1, 9); /* nothing listens on either port */
    pf_init("proxy_conn_fuzz", "PROXY_CONN_FUZZ_VERBOSE", config, len);
    return 0;
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

    static struct pf_conn c;
    memset(&c, 0, sizeof(c));
    c.out = g_out;
    c.out_cap = OUT_CAP;
    pf_conn_open(&c, (flags & F_LOG) >> 2, (flags & F_DRAINING) != 0);

    for (unsigned i = 0; i < 3; i++) {
        if (cuts[i + 1] > cuts[i] && !pf_send_all(&c, msg + cuts[i], cuts[i + 1] - cuts[i]))
            break;
        if (!(flags & F_NO_PUMP) || i == 2)
            pf_pump(&c);
        if (c.pw.conns == 0)
            break;
    }
    if (flags & F_WAIT)
        pf_wait(&c, 2);

    pf_conn_end(&c, (flags & F_CLOSE) != 0);
    if (pf_verbose)
        fprintf(stderr, "proxy_conn_fuzz: %zu bytes from the proxy:\n%.*s\n", c.out_len, (int)c.out_len, c.out);
    /* a connection that starts with the HTTP/2 preface is http2.c's (its output is frames: proxy_h2_fuzz checks
     * those); only its closing is checked here */
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    bool h2 = len >= sizeof(preface) - 1 && memcmp(msg, preface, sizeof(preface) - 1) == 0;
    if (c.fd >= 0) {
        CHECK(c.eof);
        if (!h2)
            check_responses(c.out, c.out_len, contains(msg, len, "HEAD"));
    }
    pf_conn_free(&c);
    return 0;
}

/*
 * proxy_h2_fuzz.c - libFuzzer target: whole downstream HTTP/2 client connections
 * (h2c with prior knowledge) through the proxy's request path
 * (proxy/http1.c's preface hand-over, proxy/http2.c on nghttp2, proxy/exchange.c,
 * proxy/upstream.c, proxy/accesslog.c, mesh/routes.c), in-process, with an
 * upstream that answers.
 *
 * Set-up (proxy_fuzz_common.c, shared with proxy_conn_fuzz.c): once per process a
 * listening socket on an ephemeral 127.0.0.1 port is opened for the in-process
 * upstream, and a snapshot is compiled from proxy_conn_fuzz's config - app.example.com
 * subset v1 on that live port, subset v2 on port 9 where nothing listens (connect
 * failures, retries) - plus a VirtualService for live.example.com (and
 * *.live.example.com) whose routes all go to the live port (gRPC match with a timeout,
 * retries on reset/5xx, header operations). Each input gets a fresh worker by hand;
 * one end of a socketpair goes to keel_http1_accept() as an accepted Gateway
 * connection, and the fuzzer writes the HTTP/2 connection preface and then the frames
 * decoded from the input into the other end. Between loop iterations the fuzzer also
 * serves the upstream: it accepts the proxy's connections, parses each request (it must
 * be well-formed HTTP/1.1 with a body that keeps its framing) and answers per a plan
 * (200, chunked, 204, 304, 100 Continue, read-until-close, 100 KB, 320 KB chunked,
 * garbage, close, 503, a cut body, hop-by-hop fields, 101, silence, or the input's own
 * bytes), early or after the body, keep-alive or not, in one write or two.
 *
 * Input layout: 5 header bytes, then the client's bytes.
 *   byte 0    flags
 *     bits 0-1  0: frames, after an automatic empty SETTINGS; 1: the same plus a connection WINDOW_UPDATE of
 *               16 MiB; 2: frames only (no automatic SETTINGS); 3: raw: the rest is written as is after the preface
 *     bit 2     the preface in two writes with the loop run between them
 *     bit 3     end with close() (the client vanishes) instead of shutdown(SHUT_WR)
 *     bit 4     the worker is draining (GOAWAY at once, close when the streams are done)
 *     bit 5     before ending, poll once with a 2 ms timeout (lets the 1 ms fault delay fire)
 *     bits 6-7  access log: off, Istio text, Istio JSON, a custom format with most operators
 *   bytes 1-4 upstream plans: request k to the upstream is answered per byte 1 + k % 4
 *             (bits 0-3 enum pf_up_kind, bit 4 answer once the head is in, bit 5 keep-alive, bit 6 two writes,
 *             bit 7 stop reading for 64 loop iterations after the head)
 *   then records, each [type][flags][stream][len][payload: len bytes] (len 255: two more bytes, big-endian):
 *     type % 16  0 HEADERS from a header program   1 DATA (payload)        2 RST_STREAM     3 SETTINGS
 *                4 WINDOW_UPDATE                   5 PING                  6 GOAWAY         7 PRIORITY
 *                8 CONTINUATION (program)          9 raw frame (payload[0] is the type)  10 raw bytes
 *               11 WINDOW_UPDATE storm            12 the upstream script (PF_UP_SCRIPT), not sent
 *               13 flush: write what was built, run the loop (flag 1: also poll 2 ms; flag 2: then drain the
 *                  worker as runtime.c does; flag 4: then shut its connections down; flag 8: then reset every
 *                  upstream connection, as an upstream that restarts)
 *               14 a request: HEADERS with :method/:path/:authority picked by payload[0..2], :scheme http,
 *                  then the rest as a header program    15 DATA of a size payload[0..1] (pattern bytes)
 *     flags      wire flags of the frame (END_STREAM 0x1, ACK 0x1, PADDED 0x8, PRIORITY 0x20); for HEADERS,
 *                CONTINUATION and requests END_HEADERS is set unless 0x80 (the block continues); for the
 *                fixed-size frames 0x80 sends the payload verbatim instead of the canonical encoding
 *     stream     0 -> 0; 1..127 -> 2n-1 (1..253); 128..191 -> even ids 0..126; 192..253 -> 255..377;
 *                254 -> 0x80000001 (reserved bit); 255 -> 2^31-1
 *   A header program is a byte code: op < 0xF0 is a field of the dictionary below (name op % count,
 *   representation by op / count: literal without indexing, with incremental indexing, never indexed)
 *   followed by a value byte (bit 7: a literal of the next (v & 0x7f) bytes, else value v of the name's
 *   list); 0xF0 literal name (len, bytes) and value; 0xF1 raw HPACK bytes (len, bytes); 0xF2 indexed field
 *   (index byte); 0xF3 dynamic table size update (byte * 64); 0xF4 x-big with a value of byte * 256 bytes;
 *   0xF5 a field whose value claims Huffman coding; 0xF6-0xFF the pseudo-header fields of a GET.
 *   Header blocks longer than 16384 bytes are split into HEADERS + CONTINUATION frames.
 *
 * Invariants (abort() on failure, besides ASan/UBSan/LSan):
 *   - the proxy closes the connection once the client has gone (bounded loop iterations);
 *   - when the worker is torn down nothing is left (LeakSanitizer);
 *   - the proxy's output (after close(), what was read before it) is a sequence of HTTP/2 frames starting
 *     with a SETTINGS frame (when there is any output), each no longer than the largest
 *     SETTINGS_MAX_FRAME_SIZE the client offered (16384 by default), the fixed-size ones of their size, on
 *     the right streams (DATA and HEADERS on odd streams the client opened, never after the stream
 *     ended; no PUSH_PROMISE); header blocks are contiguous (CONTINUATION) and decode with HPACK; a response
 *     starts with :status (no 101, no 1xx that ends the stream), has no other pseudo-header, no upper-case
 *     name, no connection-specific field, no CR/LF/NUL and no leading or trailing whitespace in a value, at
 *     most one content-length, no DATA on a 204/304, and a stream that ends after DATA carried exactly its
 *     content-length (a HEAD response has no DATA, so it is not checked);
 *   - what the proxy sends the upstream is HTTP/1.1 requests (keel's strict parser) with well-framed bodies,
 *     and never a request on a connection whose previous response it cannot have read in full.
 *
 * Bugs this target found in src/ are fixed; their reproducers stay in corpus/proxy_h2/ as regress-<id>. g_bugs
 * below lists any that must be let through while being fixed (none now); PROXY_H2_FUZZ_STRICT=1 makes the
 * listed ones fatal.
 *
 * PROXY_H2_FUZZ_VERBOSE=1 prints the frames the proxy wrote (and debug logs), to read a reproducer.
 *
 * Build: cmake --preset fuzz && cmake --build --preset fuzz --target proxy_h2_fuzz;
 * run: tests/fuzz/run.sh, or build/fuzz/proxy_h2_fuzz -dict=tests/fuzz/proxy_h2.dict NEW_DIR
 * tests/fuzz/corpus/proxy_h2 (seeds: tests/fuzz/gen_proxy_h2_corpus.py).
 */
#include "proxy_fuzz_common.h"

#include "base/buf.h"

#include <nghttp2/nghttp2.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK PF_CHECK

#define OUT_CAP (4u << 20)  /* what is kept of the proxy's output */
#define SENT_CAP (8u << 20) /* what the client may send in one input */
#define BLOCK_CAP (1u << 20)
#define MAX_PAYLOAD 16384

enum {
    F_MODE = 0x03,
    F_SPLIT_PREFACE = 0x04,
    F_CLOSE = 0x08,
    F_DRAINING = 0x10,
    F_WAIT = 0x20,
    F_LOG = 0xc0,
};
enum { MODE_SETTINGS, MODE_SETTINGS_WINDOW, MODE_FRAMES, MODE_RAW };

enum {
    T_DATA,
    T_HEADERS,
    T_PRIORITY,
    T_RST_STREAM,
    T_SETTINGS,
    T_PUSH_PROMISE,
    T_PING,
    T_GOAWAY,
    T_WINDOW_UPDATE,
    T_CONTINUATION
};
enum {
    FL_END_STREAM = 0x1,
    FL_ACK = 0x1,
    FL_END_HEADERS = 0x4,
    FL_PADDED = 0x8,
    FL_PRIORITY = 0x20,
    FL_CONTINUED = 0x80,
    FL_VERBATIM = 0x80
};

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static const char LIVE_CONFIG_FMT[] = /* appended to pf_config()'s */
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: VirtualService\n"
    "metadata: {name: live, namespace: istio-system}\n"
    "spec:\n"
    "  hosts: [live.example.com, \"*.live.example.com\"]\n"
    "  gateways: [gw]\n"
    "  http:\n"
    "  - name: live-grpc\n"
    "    match: [{headers: {content-type: {prefix: application/grpc}}}]\n"
    "    timeout: 3s\n"
    "    route: [{destination: {host: live.example.com}}]\n"
    "  - name: live-retry\n"
    "    match: [{uri: {prefix: /retry}}]\n"
    "    retries: {attempts: 3, retryOn: \"connect-failure,reset,5xx\"}\n"
    "    route: [{destination: {host: live.example.com}}]\n"
    "  - name: live\n"
    "    headers:\n"
    "      request: {set: {x-h2: \"1\"}, remove: [x-drop-me]}\n"
    "      response: {add: {x-via: keel}, remove: [x-upstream]}\n"
    "    route: [{destination: {host: live.example.com}}]\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: ServiceEntry\n"
    "metadata: {name: live, namespace: istio-system}\n"
    "spec:\n"
    "  hosts: [live.example.com]\n"
    "  location: MESH_INTERNAL\n"
    "  ports: [{number: 80, name: http, protocol: HTTP}]\n"
    "  resolution: STATIC\n"
    "  endpoints: [{address: 127.0.0.1, ports: {http: %u}}]\n";

/* ---- dictionaries for the header programs ---------------------------------------------------------------------- */

#define NV(...) ((const char *const[]){__VA_ARGS__, NULL})

static const char *const METHODS[] = {"GET", "POST", "HEAD", "CONNECT", "PUT", "DELETE", "OPTIONS", "PATCH"};
static const char *const PATHS[] = {
    "/u/ok",          "/exact",        "/re/abc/12", "/x?debug=1", "/h/x",
    "/H/x",           "/old/page?q=1", "/secure",    "/abort",     "/flaky",
    "/api/v1/x?id=7", "/nc",           "/dns",       "/uh",        "/u",
    "/live/x",        "/retry/1",      "/",          "*",          "/u/%2e%2e/x",
    "/u/\xc3\xa9",    "/u/a#frag",     "/u?x=1&x=2", "//u",
};
static const char *const AUTHS[] = {
    "live.example.com",      "example.com",
    "admin.example.com",     "example.com:8080",
    "127.0.0.1:80",          "[::1]",
    "a.live.example.com",    "live.example.com:8080",
    "user@live.example.com", "",
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct field {
    const char *name;
    const char *const *values; /* NULL-terminated */
};

static const struct field FIELDS[] = {
    {":method", NV("GET", "POST", "HEAD", "CONNECT", "PUT", "OPTIONS")},
    {":path", NV("/u/ok", "/live/x", "/exact", "/api/v1/x", "/", "/retry/1", "*", "/u/\x80")},
    {":authority", NV("live.example.com", "example.com", "admin.example.com", "", "x.live.example.com:80")},
    {":scheme", NV("http", "https", "")},
    {":protocol", NV("websocket")},
    {":status", NV("200")},
    {"content-length", NV("0", "5", "6", "16384", "100000", "-1", "1, 1", "")},
    {"te", NV("trailers", "gzip")},
    {"cookie", NV("a=1", "b=2", "c")},
    {"x-user", NV("jason")},
    {"x-tier", NV("gold", "silver")},
    {"x-debug", NV("on", "yes")},
    {"content-type", NV("application/grpc", "application/grpc+proto", "text/plain")},
    {"grpc-timeout", NV("1S", "10m", "1H")},
    {"user-agent", NV("keel-fuzz")},
    {"x-request-id", NV("1b4e28ba-2fa1-11d2-883f-0016d3cca427", "")},
    {"x-forwarded-for", NV("1.2.3.4", "::1")},
    {"host", NV("live.example.com", "admin.example.com")},
    {"connection", NV("close", "keep-alive")},
    {"transfer-encoding", NV("chunked")},
    {"upgrade", NV("websocket", "h2c")},
    {"expect", NV("100-continue")},
    {"x-forwarded-proto", NV("https")},
    {"x-envoy-attempt-count", NV("3")},
    {"accept", NV("*/*")},
    {"grpc-encoding", NV("identity", "gzip")},
    {"x-drop-me", NV("1")},
    {"keep-alive", NV("timeout=5")},
    {"proxy-connection", NV("keep-alive")},
    {"Upper", NV("x")},
    {"x-empty", NV("")},
    {"x-ws", NV(" lead", "trail ", "a\tb")},
};

/* ---- state of one input -------------------------------------------------------------------------------------------
 */

static struct pf_upstream g_up;
static char g_out[OUT_CAP];
static uint8_t g_sent[SENT_CAP]; /* everything the client sends, in order */
static size_t g_sent_len, g_flushed;
static uint8_t g_block[BLOCK_CAP]; /* header block being built */
static size_t g_block_len;

struct reader {
    const uint8_t *p;
    size_t n;
};

static uint8_t rd(struct reader *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static struct reader take(struct reader *r, size_t n)
{
    struct reader s = {r->p, n < r->n ? n : r->n};
    r->p += s.n;
    r->n -= s.n;
    return s;
}

static void put(const void *p, size_t n)
{
    if (n > SENT_CAP - g_sent_len)
        n = SENT_CAP - g_sent_len;
    memcpy(g_sent + g_sent_len, p, n);
    g_sent_len += n;
}

static void put_u8(uint8_t b)
{
    put(&b, 1);
}

static void put_u32(uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, 4);
}

static void frame_head(size_t len, uint8_t type, uint8_t flags, uint32_t sid)
{
    uint8_t h[9] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8),  (uint8_t)len,        type,        flags,
                    (uint8_t)(sid >> 24), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8), (uint8_t)sid};
    put(h, 9);
}

static uint32_t stream_of(uint8_t s)
{
    if (s < 0x80)
        return s ? 2u * s - 1 : 0;
    if (s < 0xC0)
        return 2u * (s - 0x80);
    if (s == 0xFF)
        return 0x7fffffffu;
    if (s == 0xFE)
        return 0x80000001u;
    return 255 + 2u * (s - 0xC0);
}

/* ---- HPACK by hand (RFC 7541) -------------------------------------------------------------------------------------
 */

static void blk(const void *p, size_t n)
{
    if (n > BLOCK_CAP - g_block_len)
        n = BLOCK_CAP - g_block_len;
    memcpy(g_block + g_block_len, p, n);
    g_block_len += n;
}

static void blk_u8(uint8_t b)
{
    blk(&b, 1);
}

/* An integer with an N-bit prefix; `first` holds the representation's high bits. */
static void hp_int(uint8_t first, unsigned prefix, uint64_t v)
{
    uint64_t max = (1u << prefix) - 1;
    if (v < max) {
        blk_u8((uint8_t)(first | v));
        return;
    }
    blk_u8((uint8_t)(first | max));
    v -= max;
    while (v >= 128) {
        blk_u8((uint8_t)(0x80 | (v & 0x7f)));
        v >>= 7;
    }
    blk_u8((uint8_t)v);
}

static void hp_str(const void *p, size_t n, bool huffman)
{
    hp_int(huffman ? 0x80 : 0, 7, n);
    blk(p, n);
}

/* A literal field with a new name: rep 0x00 without indexing, 0x40 with incremental indexing, 0x10 never. */
static void hp_field(uint8_t rep, const char *name, size_t nlen, const void *value, size_t vlen)
{
    blk_u8(rep);
    hp_str(name, nlen, false);
    hp_str(value, vlen, false);
}

static void hp_field_c(const char *name, const char *value)
{
    hp_field(0, name, strlen(name), value, strlen(value));
}

static size_t nvalues(const struct field *f)
{
    size_t n = 0;
    while (f->values[n])
        n++;
    return n;
}

/* A value: bit 7 of the selector byte picks a literal from the program, else one of the name's list. */
static void hp_value_of(struct reader *r, uint8_t rep, const char *name, size_t nlen, const struct field *f)
{
    uint8_t v = rd(r);
    if (v & 0x80 || !f) {
        struct reader lit = take(r, v & 0x7f);
        hp_field(rep, name, nlen, lit.p, lit.n);
        return;
    }
    const char *val = f->values[v % nvalues(f)];
    hp_field(rep, name, nlen, val, strlen(val));
}

static void hp_program(struct reader *r)
{
    static const uint8_t REPS[] = {0x00, 0x40, 0x10};
    static char big[65280];
    while (r->n) {
        uint8_t op = rd(r);
        if (op < 0xF0) {
            const struct field *f = &FIELDS[op % COUNT(FIELDS)];
            hp_value_of(r, REPS[(op / COUNT(FIELDS)) % 3], f->name, strlen(f->name), f);
            continue;
        }
        switch (op) {
        case 0xF0: {
            struct reader name = take(r, rd(r) & 0x3f);
            hp_value_of(r, 0, (const char *)name.p, name.n, NULL);
            break;
        }
        case 0xF1: {
            struct reader raw = take(r, rd(r));
            blk(raw.p, raw.n);
            break;
        }
        case 0xF2:
            hp_int(0x80, 7, rd(r));
            break;
        case 0xF3:
            hp_int(0x20, 5, (uint64_t)rd(r) * 64);
            break;
        case 0xF4: {
            size_t n = (size_t)rd(r) * 256;
            if (!big[0])
                memset(big, 'v', sizeof(big));
            hp_field(0, "x-big", 5, big, n);
            break;
        }
        case 0xF5: {
            const struct field *f = &FIELDS[rd(r) % COUNT(FIELDS)];
            struct reader lit = take(r, rd(r) & 0x3f);
            blk_u8(0);
            hp_str(f->name, strlen(f->name), false);
            hp_str(lit.p, lit.n, true);
            break;
        }
        default:
            hp_field_c(":method", "GET");
            hp_field_c(":scheme", "http");
            hp_field_c(":path", "/u/ok");
            hp_field_c(":authority", "live.example.com");
            break;
        }
    }
}

/* Frames g_block as HEADERS (or CONTINUATION) + CONTINUATIONs of at most MAX_PAYLOAD bytes. */
static void put_header_block(uint8_t type, uint8_t fl, uint32_t sid)
{
    uint8_t wire = fl & (type == T_HEADERS ? (FL_END_STREAM | FL_PADDED | FL_PRIORITY) : 0);
    bool end = !(fl & FL_CONTINUED);
    size_t pre = (wire & FL_PADDED ? 1 : 0) + (wire & FL_PRIORITY ? 5 : 0), pad = wire & FL_PADDED ? 4 : 0;
    size_t off = 0, first = MAX_PAYLOAD - pre - pad;
    size_t n = g_block_len < first ? g_block_len : first;
    bool last = n == g_block_len;
    frame_head(pre + n + pad, type, (uint8_t)(wire | (last && end ? FL_END_HEADERS : 0)), sid);
    if (wire & FL_PADDED)
        put_u8((uint8_t)pad);
    if (wire & FL_PRIORITY) {
        put_u32(sid > 2 ? sid - 2 : 0);
        put_u8(15);
    }
    put(g_block, n);
    for (size_t i = 0; i < pad; i++)
        put_u8(0);
    off = n;
    while (off < g_block_len) {
        n = g_block_len - off < MAX_PAYLOAD ? g_block_len - off : MAX_PAYLOAD;
        last = off + n == g_block_len;
        frame_head(n, T_CONTINUATION, (uint8_t)(last && end ? FL_END_HEADERS : 0), sid);
        put(g_block + off, n);
        off += n;
    }
}

/* ---- driving ------------------------------------------------------------------------------------------------------
 */

static struct pf_conn g_c;

static bool flush_sent(void)
{
    bool ok = true;
    if (g_sent_len > g_flushed && g_c.fd >= 0 && g_c.pw.conns)
        ok = pf_send_all(&g_c, g_sent + g_flushed, g_sent_len - g_flushed);
    g_flushed = g_sent_len;
    pf_pump(&g_c);
    return ok && g_c.pw.conns;
}

/* Builds the frames of one record into g_sent (a flush record writes them). False when the proxy is gone. */
static bool record(struct reader *in)
{
    uint8_t type = rd(in) % 16, fl = rd(in), ss = rd(in);
    size_t len = rd(in);
    if (len == 0xff) {
        len = (size_t)rd(in) << 8;
        len |= rd(in);
    }
    struct reader p = take(in, len);
    uint32_t sid = stream_of(ss);
    bool verbatim = (fl & FL_VERBATIM) != 0;
    switch (type) {
    case 0: /* HEADERS */
        g_block_len = 0;
        hp_program(&p);
        put_header_block(T_HEADERS, fl, sid);
        break;
    case 1: { /* DATA */
        uint8_t wire = fl & (FL_END_STREAM | FL_PADDED);
        size_t pad = (fl >> 4) & 0x7;
        frame_head(p.n + (wire & FL_PADDED ? 1 + pad : 0), T_DATA, wire, sid);
        if (wire & FL_PADDED)
            put_u8((uint8_t)pad);
        put(p.p, p.n);
        for (size_t i = 0; (wire & FL_PADDED) && i < pad; i++)
            put_u8(0);
        break;
    }
    case 2: /* RST_STREAM */
        if (verbatim) {
            frame_head(p.n, T_RST_STREAM, 0, sid);
            put(p.p, p.n);
        } else {
            frame_head(4, T_RST_STREAM, 0, sid);
            put_u32(rd(&p));
        }
        break;
    case 3: /* SETTINGS: entries of 1 id byte (id % 10) and 4 value bytes */
        if (verbatim || (fl & FL_ACK)) {
            frame_head(p.n, T_SETTINGS, fl & FL_ACK, sid);
            put(p.p, p.n);
        } else {
            size_t n = p.n / 5;
            frame_head(n * 6, T_SETTINGS, 0, sid);
            for (size_t i = 0; i < n; i++) {
                uint8_t id = rd(&p) % 10;
                uint32_t v = (uint32_t)rd(&p) << 24;
                v |= (uint32_t)rd(&p) << 16;
                v |= (uint32_t)rd(&p) << 8;
                v |= rd(&p);
                uint8_t e[2] = {0, id};
                put(e, 2);
                put_u32(v);
            }
        }
        break;
    case 4: /* WINDOW_UPDATE */
        if (verbatim) {
            frame_head(p.n, T_WINDOW_UPDATE, 0, sid);
            put(p.p, p.n);
        } else {
            uint32_t inc = p.n >= 4 ? ((uint32_t)p.p[0] << 24 | (uint32_t)p.p[1] << 16 | (uint32_t)p.p[2] << 8 | p.p[3])
                                    : 65535u * (1u + (uint32_t)p.n * 64);
            frame_head(4, T_WINDOW_UPDATE, 0, sid);
            put_u32(inc & 0x7fffffffu);
        }
        break;
    case 5: { /* PING */
        uint8_t b[8] = {0};
        memcpy(b, p.p, p.n < 8 ? p.n : 8);
        frame_head(verbatim ? p.n : 8, T_PING, fl & FL_ACK, sid);
        if (verbatim)
            put(p.p, p.n);
        else
            put(b, 8);
        break;
    }
    case 6: /* GOAWAY: last stream, code, debug data */
        if (verbatim) {
            frame_head(p.n, T_GOAWAY, 0, sid);
            put(p.p, p.n);
        } else {
            uint32_t last = stream_of(rd(&p));
            uint32_t code = rd(&p);
            frame_head(8 + p.n, T_GOAWAY, 0, sid);
            put_u32(last);
            put_u32(code);
            put(p.p, p.n);
        }
        break;
    case 7: /* PRIORITY */
        if (verbatim) {
            frame_head(p.n, T_PRIORITY, 0, sid);
            put(p.p, p.n);
        } else {
            uint8_t dep = rd(&p), excl = rd(&p);
            frame_head(5, T_PRIORITY, 0, sid);
            put_u32(stream_of(dep) | (excl & 0x80 ? 0x80000000u : 0));
            put_u8(rd(&p));
        }
        break;
    case 8: /* CONTINUATION */
        g_block_len = 0;
        hp_program(&p);
        put_header_block(T_CONTINUATION, fl, sid);
        break;
    case 9: { /* raw frame */
        uint8_t t = rd(&p);
        frame_head(p.n, t, fl, sid);
        put(p.p, p.n);
        break;
    }
    case 10: /* raw bytes */
        put(p.p, p.n);
        break;
    case 11: { /* WINDOW_UPDATE storm */
        unsigned n = rd(&p);
        uint32_t inc = p.n ? (uint32_t)rd(&p) << 8 | rd(&p) : 1;
        for (unsigned i = 0; i < n; i++) {
            frame_head(4, T_WINDOW_UPDATE, 0, (fl & 1) && (i & 1) ? 0 : sid);
            put_u32(inc ? inc : 1);
        }
        break;
    }
    case 12: /* the upstream's script */
        g_up.script = p.p;
        g_up.script_len = p.n;
        break;
    case 13: /* flush */
        if (!flush_sent())
            return false;
        if (fl & 1)
            pf_wait(&g_c, 2);
        if (fl & 2) {
            pf_worker_drain(&g_c.pw);
            pf_pump(&g_c);
        }
        if (fl & 4) {
            pf_worker_shutdown(&g_c.pw);
            pf_pump(&g_c);
        }
        if (fl & 8) {
            pf_upstream_reset_all(&g_up);
            pf_pump(&g_c);
        }
        return g_c.pw.conns != 0;
    case 14: { /* a request */
        g_block_len = 0;
        hp_field_c(":method", METHODS[rd(&p) % COUNT(METHODS)]);
        hp_field_c(":scheme", "http");
        hp_field_c(":path", PATHS[rd(&p) % COUNT(PATHS)]);
        hp_field_c(":authority", AUTHS[rd(&p) % COUNT(AUTHS)]);
        hp_program(&p);
        put_header_block(T_HEADERS, fl, sid);
        break;
    }
    case 15: { /* DATA of a given size */
        static uint8_t pattern[65535];
        if (!pattern[0])
            for (size_t i = 0; i < sizeof(pattern); i++)
                pattern[i] = (uint8_t)('A' + i % 26);
        size_t n = (size_t)rd(&p) << 8;
        n |= rd(&p);
        if (!verbatim)
            n %= MAX_PAYLOAD + 1;
        frame_head(n, T_DATA, fl & FL_END_STREAM, sid);
        put(pattern, n);
        break;
    }
    }
    return true;
}

/* ---- known bugs -----------------------------------------------------------------------------------------------------
 */

/* Bugs in src/ this target found are fixed (upstream-101, h2-authority; their reproducers stay in the corpus as
 * regress-*). A new one that must be let through while it is being fixed goes in this list (id, what, false);
 * PROXY_H2_FUZZ_STRICT=1 makes the listed ones fatal again. */
static struct pf_known_bug g_bugs[] = {
    {"none", "(no open bug)", false},
};

static bool tolerate_upstream_error(int err)
{
    return err == KEEL_H1_E_HOST_INVALID && pf_known_bug("h2-authority");
}

/* ---- the output check ----------------------------------------------------------------------------------------------
 */

struct frame {
    uint32_t len;
    uint8_t type, flags;
    uint32_t sid;
    const uint8_t *p;
};

/* The next whole frame at *off, or false at the end (or a frame cut short). */
static bool next_frame(const uint8_t *buf, size_t n, size_t *off, struct frame *f)
{
    if (n - *off < 9)
        return false;
    const uint8_t *h = buf + *off;
    f->len = (uint32_t)h[0] << 16 | (uint32_t)h[1] << 8 | h[2];
    f->type = h[3];
    f->flags = h[4];
    f->sid = ((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8]) & 0x7fffffffu;
    if (n - *off - 9 < f->len)
        return false;
    f->p = h + 9;
    *off += 9 + f->len;
    return true;
}

/* What the client offered: the largest frame size the proxy may send, the highest stream it opened. */
static void client_facts(uint32_t *max_frame, uint32_t *max_sid)
{
    *max_frame = MAX_PAYLOAD;
    *max_sid = 0;
    size_t off = sizeof(PREFACE) - 1;
    struct frame f;
    while (off <= g_sent_len && next_frame(g_sent, g_sent_len, &off, &f)) {
        if (f.type == T_HEADERS && (f.sid & 1) && f.sid > *max_sid)
            *max_sid = f.sid;
        if (f.type == T_SETTINGS && !(f.flags & FL_ACK) && f.len % 6 == 0) {
            for (uint32_t i = 0; i < f.len; i += 6) {
                uint32_t id = (uint32_t)f.p[i] << 8 | f.p[i + 1];
                uint32_t v =
                    (uint32_t)f.p[i + 2] << 24 | (uint32_t)f.p[i + 3] << 16 | (uint32_t)f.p[i + 4] << 8 | f.p[i + 5];
                if (id == NGHTTP2_SETTINGS_MAX_FRAME_SIZE && v > *max_frame && v <= 16777215)
                    *max_frame = v;
            }
        }
    }
}

struct sstate {
    uint32_t sid; /* 0: free */
    int status;   /* final status, 0 until the response head */
    bool ended;
    int64_t content_length; /* -1: none */
    uint64_t data;
};

#define MAX_TRACKED 1024
static struct sstate g_streams[MAX_TRACKED];

static struct sstate *stream_state(uint32_t sid)
{
    for (size_t i = 0; i < MAX_TRACKED; i++) {
        size_t k = (sid + i) % MAX_TRACKED;
        if (g_streams[k].sid == sid)
            return &g_streams[k];
        if (g_streams[k].sid == 0) {
            g_streams[k] = (struct sstate){.sid = sid, .content_length = -1};
            return &g_streams[k];
        }
    }
    static struct sstate spare;
    spare = (struct sstate){.sid = sid, .content_length = -1};
    return &spare; /* table full: not tracked across frames */
}

static void violation(const char *what, const struct frame *f, const uint8_t *p, size_t n)
{
    fprintf(stderr, "%s: output: %s (frame type %u flags 0x%02x stream %u length %u): \"%.*s\"\n", pf_name, what,
            f->type, f->flags, f->sid, f->len, (int)(n < 200 ? n : 200), (const char *)p);
    abort();
}

static bool has_ws_edge(const uint8_t *v, size_t n)
{
    return n && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t');
}

static bool is_connection_specific(const uint8_t *name, size_t n, const uint8_t *v, size_t vn)
{
    static const char *const bad[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < COUNT(bad); i++)
        if (n == strlen(bad[i]) && memcmp(name, bad[i], n) == 0)
            return true;
    return n == 2 && memcmp(name, "te", 2) == 0 && !(vn == 8 && memcmp(v, "trailers", 8) == 0);
}

/* Checks one response header block (HPACK-decoded with the connection's inflater). */
static void check_block(nghttp2_hd_inflater *inf, const struct frame *f, const uint8_t *block, size_t len,
                        bool end_stream)
{
    struct sstate *s = stream_state(f->sid);
    bool trailers = s->status != 0;
    size_t i = 0, nfields = 0;
    int status = 0, content_lengths = 0;
    for (;;) {
        nghttp2_nv nv;
        int flags = 0;
        ssize_t rv = nghttp2_hd_inflate_hd2(inf, &nv, &flags, block + i, len - i, 1);
        if (rv < 0)
            violation("header block does not decode (HPACK)", f, block, len);
        i += (size_t)rv;
        if (flags & NGHTTP2_HD_INFLATE_EMIT) {
            const uint8_t *n = nv.name, *v = nv.value;
            if (pf_verbose)
                fprintf(stderr, "    %.*s: %.*s\n", (int)nv.namelen, n, (int)nv.valuelen, v);
            if (nv.namelen == 0)
                violation("empty field name", f, n, 0);
            if (n[0] == ':') {
                if (trailers || nfields || nv.namelen != 7 || memcmp(n, ":status", 7) != 0)
                    violation("pseudo-header field that is not a leading :status", f, n, nv.namelen);
                if (nv.valuelen != 3 || v[0] < '1' || v[0] > '5' || v[1] < '0' || v[1] > '9' || v[2] < '0' ||
                    v[2] > '9')
                    violation(":status is not a 3-digit code", f, v, nv.valuelen);
                status = (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
            } else if (!trailers && nfields == 0) {
                violation("response without a leading :status", f, n, nv.namelen);
            }
            for (size_t k = 0; k < nv.namelen; k++)
                if (n[k] >= 'A' && n[k] <= 'Z')
                    violation("upper-case field name", f, n, nv.namelen);
            if (is_connection_specific(n, nv.namelen, v, nv.valuelen))
                violation("connection-specific field", f, n, nv.namelen);
            if (memchr(v, '\r', nv.valuelen) || memchr(v, '\n', nv.valuelen) || memchr(v, 0, nv.valuelen))
                violation("CR, LF or NUL in a field value", f, v, nv.valuelen);
            if (has_ws_edge(v, nv.valuelen))
                violation("field value with leading or trailing whitespace", f, v, nv.valuelen);
            if (nv.namelen == 14 && memcmp(n, "content-length", 14) == 0) {
                if (++content_lengths > 1)
                    violation("more than one content-length", f, v, nv.valuelen);
                uint64_t cl = 0;
                if (nv.valuelen == 0 || nv.valuelen > 18)
                    violation("content-length is not a number", f, v, nv.valuelen);
                for (size_t k = 0; k < nv.valuelen; k++) {
                    if (v[k] < '0' || v[k] > '9')
                        violation("content-length is not a number", f, v, nv.valuelen);
                    cl = cl * 10 + (uint64_t)(v[k] - '0');
                }
                if (!trailers)
                    s->content_length = (int64_t)cl;
            }
            nfields++;
        }
        if (flags & NGHTTP2_HD_INFLATE_FINAL) {
            nghttp2_hd_inflate_end_headers(inf);
            break;
        }
        if (rv == 0 && i >= len)
            violation("header block does not end", f, block, len);
    }
    if (!trailers) {
        if (!status)
            violation("response head without :status", f, block, len);
        if (status == 101 && !pf_known_bug("upstream-101"))
            violation(":status 101 (Switching Protocols does not exist in HTTP/2)", f, block, len);
        if (status < 200 && status != 101 && end_stream)
            violation("an interim (1xx) response ends the stream", f, block, len);
        if (status >= 200 || status == 101)
            s->status = status; /* a final response (101 only while it is a known bug) */
    } else if (!end_stream) {
        violation("trailers that do not end the stream", f, block, len);
    }
}

static void check_output(const uint8_t *out, size_t n)
{
    uint32_t max_frame, max_sid;
    client_facts(&max_frame, &max_sid);
    memset(g_streams, 0, sizeof(g_streams));
    nghttp2_hd_inflater *inf = NULL;
    CHECK(nghttp2_hd_inflate_new(&inf) == 0);
    static struct keel_buf block;
    keel_buf_init(&block, 16u << 20);
    uint32_t cont_sid = 0; /* a header block is open on this stream */
    bool cont_end_stream = false;
    struct frame open_f = {0};
    size_t off = 0;
    struct frame f;
    bool first = true;
    if (n > 0 && n < 9) {
        fprintf(stderr, "%s: output: %zu bytes, not even a SETTINGS frame\n", pf_name, n);
        abort();
    }
    while (next_frame(out, n, &off, &f)) {
        if (pf_verbose)
            fprintf(stderr, "  frame type %u flags 0x%02x stream %u length %u\n", f.type, f.flags, f.sid, f.len);
        if (first && (f.type != T_SETTINGS || f.sid != 0 || (f.flags & FL_ACK)))
            violation("the first frame is not SETTINGS", &f, f.p, f.len);
        first = false;
        if (f.len > max_frame)
            violation("frame longer than the client's SETTINGS_MAX_FRAME_SIZE", &f, f.p, 0);
        if (cont_sid && (f.type != T_CONTINUATION || f.sid != cont_sid))
            violation("header block interrupted (CONTINUATION expected)", &f, f.p, 0);
        bool stream_frame = f.type == T_DATA || f.type == T_HEADERS;
        if (stream_frame && (f.sid == 0 || !(f.sid & 1) || f.sid > max_sid))
            violation("DATA or HEADERS on a stream the client did not open", &f, f.p, 0);
        const uint8_t *p = f.p;
        size_t plen = f.len;
        if (stream_frame && (f.flags & FL_PADDED)) {
            if (plen < 1 || p[0] >= plen)
                violation("bad padding", &f, p, plen);
            plen -= 1 + p[0];
            p++;
        }
        switch (f.type) {
        case T_DATA: {
            struct sstate *s = stream_state(f.sid);
            if (s->ended || !s->status)
                violation("DATA before the response head or after the stream ended", &f, p, 0);
            if (plen && (s->status == 204 || s->status == 304))
                violation("DATA on a 204/304 response", &f, p, plen);
            s->data += plen;
            if (f.flags & FL_END_STREAM) {
                s->ended = true;
                if (s->content_length >= 0 && s->data && s->data != (uint64_t)s->content_length)
                    violation("DATA length differs from content-length", &f, p, 0);
            }
            break;
        }
        case T_HEADERS:
            if (stream_state(f.sid)->ended)
                violation("HEADERS after the stream ended", &f, p, 0);
            if (f.flags & FL_PRIORITY) {
                if (plen < 5)
                    violation("bad priority", &f, p, plen);
                p += 5;
                plen -= 5;
            }
            keel_buf_reset(&block);
            CHECK(keel_buf_append(&block, p, plen) == 0);
            cont_end_stream = (f.flags & FL_END_STREAM) != 0;
            open_f = f;
            cont_sid = f.sid;
            break;
        case T_CONTINUATION:
            if (cont_sid != f.sid)
                violation("CONTINUATION without a header block", &f, p, 0);
            CHECK(keel_buf_append(&block, p, plen) == 0);
            break;
        case T_RST_STREAM:
            if (f.len != 4 || f.sid == 0)
                violation("bad RST_STREAM", &f, p, plen);
            stream_state(f.sid)->ended = true;
            break;
        case T_SETTINGS:
            if (f.sid != 0 || ((f.flags & FL_ACK) ? f.len != 0 : f.len % 6 != 0))
                violation("bad SETTINGS", &f, p, plen);
            break;
        case T_PUSH_PROMISE:
            violation("PUSH_PROMISE", &f, p, plen);
            break;
        case T_PING:
            if (f.sid != 0 || f.len != 8 || !(f.flags & FL_ACK))
                violation("bad PING (the proxy only answers them)", &f, p, plen);
            break;
        case T_GOAWAY:
            if (f.sid != 0 || f.len < 8)
                violation("bad GOAWAY", &f, p, plen);
            break;
        case T_WINDOW_UPDATE:
            if (f.len != 4)
                violation("bad WINDOW_UPDATE", &f, p, plen);
            break;
        default:
            break; /* PRIORITY, unknown types: allowed */
        }
        if ((f.type == T_HEADERS || f.type == T_CONTINUATION) && (f.flags & FL_END_HEADERS)) {
            cont_sid = 0;
            check_block(inf, &open_f, (const uint8_t *)block.data, block.len, cont_end_stream);
            if (cont_end_stream)
                stream_state(open_f.sid)->ended = true;
        }
    }
    keel_buf_free(&block);
    nghttp2_hd_inflate_del(inf);
}

/* ---- one input ----------------------------------------------------------------------------------------------------
 */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    pf_upstream_listen(&g_up);
    static char config[12288];
    size_t len = pf_config(config, sizeof(config), g_up.port, 9);
    int n = snprintf(config + len, sizeof(config) - len, LIVE_CONFIG_FMT, g_up.port);
    CHECK(n > 0 && (size_t)n < sizeof(config) - len);
    pf_init("proxy_h2_fuzz", "PROXY_H2_FUZZ_VERBOSE", config, len + (size_t)n);
    pf_set_known_bugs(g_bugs, COUNT(g_bugs), "PROXY_H2_FUZZ_STRICT");
    g_up.tolerate = tolerate_upstream_error;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    uint8_t flags = data[0];
    unsigned mode = flags & F_MODE;
    struct reader in = {data + 5, size - 5};

    g_sent_len = g_flushed = 0;
    pf_upstream_begin(&g_up, data + 1, NULL, 0);
    memset(&g_c, 0, sizeof(g_c));
    g_c.out = g_out;
    g_c.out_cap = OUT_CAP;
    g_c.service = pf_upstream_service;
    g_c.service_arg = &g_up;
    pf_conn_open(&g_c, (flags & F_LOG) >> 6, (flags & F_DRAINING) != 0);

    /* the preface, and the client's first SETTINGS */
    size_t cut = (flags & F_SPLIT_PREFACE) ? 10 : 0;
    if (cut) {
        put(PREFACE, cut);
        flush_sent();
    }
    put(PREFACE + cut, sizeof(PREFACE) - 1 - cut);
    if (mode == MODE_SETTINGS || mode == MODE_SETTINGS_WINDOW)
        frame_head(0, T_SETTINGS, 0, 0);
    if (mode == MODE_SETTINGS_WINDOW) {
        frame_head(4, T_WINDOW_UPDATE, 0, 0);
        put_u32(16u << 20);
    }
    bool alive = true;
    if (mode == MODE_RAW) {
        put(in.p, in.n);
    } else {
        while (alive && in.n && g_sent_len < SENT_CAP)
            alive = record(&in);
    }
    if (alive)
        flush_sent();
    if (flags & F_WAIT)
        pf_wait(&g_c, 2);

    pf_conn_end(&g_c, (flags & F_CLOSE) != 0);
    if (pf_verbose)
        fprintf(stderr,
                "%s: client sent %zu bytes, the proxy wrote %zu%s; upstream: %u connections, %u requests, %u "
                "responses\n",
                pf_name, g_sent_len, g_c.out_len, g_c.out_cut ? " (cut)" : "", g_up.accepted, g_up.requests,
                g_up.responses);
    CHECK(g_c.fd < 0 || g_c.eof);
    CHECK(g_c.pw.downstreams == NULL);
    /* after close() the output is what was read before: a prefix, checked the same way */
    check_output((const uint8_t *)g_c.out, g_c.out_len);
    pf_conn_free(&g_c);
    pf_upstream_end(&g_up);
    return 0;
}

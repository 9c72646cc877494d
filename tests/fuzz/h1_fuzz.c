/*
 * h1_fuzz.c - libFuzzer target: the HTTP/1.1 codec (http/h1.c) on hostile bytes.
 *
 * Input layout: byte 0 picks the mode (low two bits) and a variant (the
 * rest), bytes 1-2 a split point, the remaining bytes are the message:
 *   0  request head, default limits        2  chunked body
 *   1  response head to GET, HEAD or       3  request head, small limits
 *      CONNECT (variant % 3)                  (max_head 512, target 64, 8 fields)
 * Every parse runs on an exact-size heap copy, so ASan catches any read
 * past the bytes given. Invariants checked (abort() on failure):
 *   - *consumed <= len; every slice of a parsed head lies inside the input
 *     (path may be the static "/"); names are tokens, values hold no CR, LF,
 *     NUL nor edge whitespace; never both chunked and Content-Length;
 *   - the bytes split at the chosen point give KEEL_EAGAIN for the prefix or
 *     the same result, and the prefix up to *consumed parses the same;
 *   - keel_h1_has_head() agrees with the parser and resumes correctly;
 *   - a parsed head written back with the writers parses to the same head;
 *   - a chunked body decodes to the same bytes, end and trailers whether fed
 *     whole or in two parts, errors are sticky, and re-encoding the decoded
 *     body with the chunk writers decodes back to it.
 * tests/unit/http/h1_test.c replays the corpus through this file in every
 * unit test run (debug and ASan), without libFuzzer.
 *
 * Build: cmake --preset fuzz && cmake --build --preset fuzz --target h1_fuzz;
 * run: tests/fuzz/run.sh (corpus tests/fuzz/corpus/h1, dictionary tests/fuzz/h1.dict).
 */
#include "base/buf.h"
#include "base/err.h"
#include "http/h1.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "h1_fuzz: invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);                     \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

enum { MODE_REQUEST, MODE_RESPONSE, MODE_CHUNKED, MODE_REQUEST_SMALL };

static const struct keel_h1_limits small_limits = {512, 64, 8};
static const struct keel_h1_limits roomy_limits = {1 << 20, 1 << 20, 0};

/* Heads are 4 KiB each: static, not on the stack. a: the whole input, b: the others, c: scratch. */
static struct keel_http_head head_a, head_b, head_c;

static char *copy(const char *p, size_t n)
{
    char *c = malloc(n ? n : 1);
    CHECK(c != NULL);
    if (n)
        memcpy(c, p, n);
    return c;
}

static bool inside(struct keel_str s, const char *buf, size_t len)
{
    uintptr_t p = (uintptr_t)s.p, b = (uintptr_t)buf;
    return s.n == 0 || (p >= b && p - b <= len && s.n <= len - (p - b));
}

static bool is_root(struct keel_str s)
{
    return s.n == 1 && s.p[0] == '/';
}

static bool is_token_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void check_fields(const struct keel_http_head *h, const char *buf, size_t len)
{
    CHECK(h->nheaders <= KEEL_HTTP_MAX_HEADERS);
    for (size_t i = 0; i < h->nheaders; i++) {
        struct keel_str n = h->headers[i].name, v = h->headers[i].value;
        CHECK(inside(n, buf, len) && inside(v, buf, len) && n.n > 0);
        for (size_t j = 0; j < n.n; j++)
            CHECK(is_token_char(n.p[j]));
        for (size_t j = 0; j < v.n; j++)
            CHECK(v.p[j] != '\r' && v.p[j] != '\n' && v.p[j] != '\0');
        CHECK(v.n == 0 || (v.p[0] != ' ' && v.p[0] != '\t' && v.p[v.n - 1] != ' ' && v.p[v.n - 1] != '\t'));
    }
}

static void check_head(const struct keel_http_head *h, const char *buf, size_t len)
{
    CHECK(inside(h->method, buf, len) && inside(h->target, buf, len) && inside(h->query, buf, len));
    CHECK(inside(h->authority, buf, len) && inside(h->scheme, buf, len) && inside(h->reason, buf, len));
    CHECK(inside(h->path, buf, len) || is_root(h->path));
    check_fields(h, buf, len);
    CHECK(!(h->chunked && h->has_content_length));
    CHECK(h->content_length <= KEEL_H1_MAX_CONTENT_LENGTH);
    CHECK(h->has_content_length || h->content_length == 0);
}

/* Same slice at the same offset of its own buffer. */
static bool same_at(struct keel_str a, const char *abuf, struct keel_str b, const char *bbuf)
{
    if (a.n != b.n)
        return false;
    if (a.n == 0 || (is_root(a) && is_root(b))) /* "/" may be the static one of an absolute-form target */
        return true;
    return a.p - abuf == b.p - bbuf;
}

static bool same_bytes(struct keel_str a, struct keel_str b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static void check_same_head(const struct keel_http_head *a, const char *abuf, const struct keel_http_head *b,
                            const char *bbuf)
{
    CHECK(a->version == b->version && a->status == b->status && a->nheaders == b->nheaders);
    CHECK(same_at(a->method, abuf, b->method, bbuf) && same_at(a->target, abuf, b->target, bbuf));
    CHECK(same_at(a->path, abuf, b->path, bbuf) && same_at(a->query, abuf, b->query, bbuf));
    CHECK(same_at(a->authority, abuf, b->authority, bbuf) && same_at(a->scheme, abuf, b->scheme, bbuf));
    CHECK(same_at(a->reason, abuf, b->reason, bbuf));
    for (size_t i = 0; i < a->nheaders; i++)
        CHECK(same_at(a->headers[i].name, abuf, b->headers[i].name, bbuf) &&
              same_at(a->headers[i].value, abuf, b->headers[i].value, bbuf));
    CHECK(a->chunked == b->chunked && a->has_content_length == b->has_content_length);
    CHECK(a->content_length == b->content_length && a->keep_alive == b->keep_alive);
    CHECK(a->upgrade == b->upgrade && a->expect_continue == b->expect_continue);
}

/* Same content (for a head written back and parsed again). */
static void check_equal_head(const struct keel_http_head *a, const struct keel_http_head *b, bool request)
{
    CHECK(a->version == b->version && a->status == b->status && a->nheaders == b->nheaders);
    CHECK(same_bytes(a->method, b->method) && same_bytes(a->target, b->target) && same_bytes(a->path, b->path));
    CHECK(same_bytes(a->query, b->query) && same_bytes(a->authority, b->authority));
    CHECK(same_bytes(a->scheme, b->scheme));
    if (!request && a->reason.n)
        CHECK(same_bytes(a->reason, b->reason));
    for (size_t i = 0; i < a->nheaders; i++)
        CHECK(same_bytes(a->headers[i].name, b->headers[i].name) &&
              same_bytes(a->headers[i].value, b->headers[i].value));
    CHECK(a->chunked == b->chunked && a->has_content_length == b->has_content_length);
    CHECK(a->content_length == b->content_length && a->keep_alive == b->keep_alive);
    CHECK(a->upgrade == b->upgrade && a->expect_continue == b->expect_continue);
}

/* ASCII case-insensitive equality with a literal. */
static bool ci_is(const char *p, size_t n, const char *lit)
{
    if (strlen(lit) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char a = p[i] >= 'A' && p[i] <= 'Z' ? (char)(p[i] + 32) : p[i];
        if (a != lit[i])
            return false;
    }
    return true;
}

struct oracle {
    size_t hosts;
    bool cl;
    uint64_t cl_value;
    bool te;
    bool te_last_chunked;
};

/* The framing fields of a parsed head re-read the plain way (split, trim, compare): an independent
 * check that whatever the parser accepted is unambiguous. Aborts on anything a strict reader refuses. */
static struct oracle reread_framing(const struct keel_http_head *h)
{
    static const char *const codings[] = {"chunked", "gzip", "deflate", "compress", "x-gzip", "x-compress", "identity"};
    struct oracle o = {0};
    size_t chunked = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        struct keel_str n = h->headers[i].name, v = h->headers[i].value;
        if (ci_is(n.p, n.n, "host"))
            o.hosts++;
        if (ci_is(n.p, n.n, "content-length")) {
            uint64_t x = 0;
            CHECK(v.n > 0);
            for (size_t j = 0; j < v.n; j++) {
                CHECK(v.p[j] >= '0' && v.p[j] <= '9');
                CHECK(x <= (UINT64_MAX - 9) / 10);
                x = x * 10 + (uint64_t)(v.p[j] - '0');
            }
            CHECK(x <= (uint64_t)INT64_MAX);
            CHECK(!o.cl || o.cl_value == x);
            o.cl = true;
            o.cl_value = x;
        }
        if (ci_is(n.p, n.n, "transfer-encoding")) {
            o.te = true;
            size_t j = 0;
            for (;;) {
                size_t s = j;
                while (j < v.n && v.p[j] != ',')
                    j++;
                size_t a = s, b = j;
                while (a < b && (v.p[a] == ' ' || v.p[a] == '\t'))
                    a++;
                while (b > a && (v.p[b - 1] == ' ' || v.p[b - 1] == '\t'))
                    b--;
                bool known = false;
                for (size_t k = 0; k < sizeof(codings) / sizeof(codings[0]); k++)
                    known = known || ci_is(v.p + a, b - a, codings[k]);
                CHECK(known);
                o.te_last_chunked = ci_is(v.p + a, b - a, "chunked");
                chunked += o.te_last_chunked;
                if (j == v.n)
                    break;
                j++;
            }
        }
    }
    CHECK(chunked <= 1);
    return o;
}

static void check_request_framing(const struct keel_http_head *h)
{
    struct oracle o = reread_framing(h);
    CHECK(o.hosts <= 1 && (h->version != KEEL_HTTP_11 || o.hosts == 1));
    if (o.te) {
        CHECK(!o.cl && h->version == KEEL_HTTP_11 && o.te_last_chunked && h->chunked);
    } else {
        CHECK(!h->chunked && h->has_content_length == o.cl && h->content_length == o.cl_value);
    }
}

static void check_response_framing(const struct keel_http_head *h, struct keel_str method,
                                   const struct keel_h1_response *res)
{
    bool head = keel_str_eq_c(method, "HEAD"), connect = keel_str_eq_c(method, "CONNECT");
    int s = h->status;
    if (connect && s >= 200 && s < 300) {
        CHECK(res->tunnel);
        return;
    }
    struct oracle o = reread_framing(h);
    CHECK(!(o.te && o.cl) && !(o.te && h->version == KEEL_HTTP_10));
    if (s == 101)
        CHECK(res->tunnel);
    else if (s < 200 || s == 204 || s == 304 || head)
        CHECK(res->no_body);
    else if (o.te)
        CHECK(o.te_last_chunked ? h->chunked : res->body_until_close);
    else if (o.cl)
        CHECK(h->has_content_length && h->content_length == o.cl_value);
    else
        CHECK(res->body_until_close);
}

struct parse_result {
    int rc;
    size_t consumed;
    struct keel_h1_request req;
    struct keel_h1_response res;
};

static struct parse_result parse(int mode, struct keel_str method, const char *buf, size_t len,
                                 struct keel_http_head *h, const struct keel_h1_limits *roomy)
{
    struct parse_result r;
    memset(&r, 0, sizeof(r));
    r.consumed = (size_t)-1;
    if (mode == MODE_RESPONSE) {
        r.rc = keel_h1_parse_response(buf, len, method, roomy, h, &r.res, &r.consumed);
    } else if (mode == MODE_REQUEST && !roomy) {
        size_t c = (size_t)-1;
        r.rc = keel_h1_parse_request(buf, len, h, &c); /* the short form must agree with _ex */
        int rc2 = keel_h1_parse_request_ex(buf, len, NULL, &head_c, &r.req, &r.consumed);
        CHECK(rc2 == r.rc && (r.rc != 0 || c == r.consumed));
        if (r.rc == 0)
            check_same_head(h, buf, &head_c, buf);
    } else {
        const struct keel_h1_limits *lim = roomy ? roomy : mode == MODE_REQUEST_SMALL ? &small_limits : NULL;
        r.rc = keel_h1_parse_request_ex(buf, len, lim, h, &r.req, &r.consumed);
    }
    CHECK(r.rc == 0 || r.rc == KEEL_EAGAIN || (r.rc > KEEL__H1_E_FIRST && r.rc < KEEL__H1_E_LAST));
    if (r.rc == 0) {
        CHECK(r.consumed > 0 && r.consumed <= len);
        check_head(h, buf, r.consumed);
        if (mode == MODE_RESPONSE) {
            int kinds = r.res.no_body + r.res.tunnel + r.res.body_until_close + h->chunked + h->has_content_length;
            CHECK(kinds == 1);
            check_response_framing(h, method, &r.res);
        } else {
            check_request_framing(h);
        }
    }
    return r;
}

static void check_write_back(int mode, struct keel_str method, const struct keel_http_head *h)
{
    struct keel_buf out;
    keel_buf_init(&out, 1 << 21);
    int rc = mode == MODE_RESPONSE ? keel_h1_write_response_head(&out, h, NULL, 0)
                                   : keel_h1_write_request_head(&out, h, NULL, 0);
    CHECK(rc == 0);
    char *again = copy(out.data, out.len);
    struct parse_result r = parse(mode, method, again, out.len, &head_b, &roomy_limits);
    CHECK(r.rc == 0 && r.consumed == out.len);
    check_equal_head(h, &head_b, mode != MODE_RESPONSE);
    free(again);
    keel_buf_free(&out);
}

static void fuzz_head(int mode, unsigned variant, const char *msg, size_t len, size_t split)
{
    static const char *const methods[] = {"GET", "HEAD", "CONNECT"};
    struct keel_str method = keel_str_c(methods[variant % 3]);
    char *buf = copy(msg, len);
    struct parse_result whole = parse(mode, method, buf, len, &head_a, NULL);

    size_t scanned = 0;
    bool found = keel_h1_has_head(buf, len, &scanned);
    if (whole.rc == 0)
        CHECK(found);
    size_t resumed = 0;
    if (keel_h1_has_head(buf, split, &resumed))
        CHECK(found && resumed == scanned);
    else
        CHECK(keel_h1_has_head(buf, len, &resumed) == found && resumed == scanned);

    /* the same bytes delivered in two reads: the first read sees a prefix */
    char *prefix = copy(msg, split);
    struct parse_result part = parse(mode, method, prefix, split, &head_b, NULL);
    CHECK(part.rc == KEEL_EAGAIN || part.rc == whole.rc);
    if (part.rc == 0) {
        CHECK(part.consumed == whole.consumed);
        check_same_head(&head_a, buf, &head_b, prefix);
    }
    free(prefix);

    if (whole.rc == 0) {
        /* a head is self-delimiting: its own bytes parse the same */
        char *own = copy(msg, whole.consumed);
        struct parse_result again = parse(mode, method, own, whole.consumed, &head_b, NULL);
        CHECK(again.rc == 0 && again.consumed == whole.consumed);
        check_same_head(&head_a, buf, &head_b, own);
        free(own);
        if (mode != MODE_RESPONSE)
            CHECK(whole.req.form != KEEL_H1_FORM_ABSOLUTE || head_a.scheme.n > 0);
        check_write_back(mode, method, &head_a);
    }
    free(buf);
}

struct decoded {
    int rc;
    char *data;
    size_t ndata;
    size_t end;  /* bytes consumed in all when the body ended */
    size_t toff; /* trailer section: offset and length in the input */
    size_t tlen;
};

/* Decodes msg delivered as [0, split) then the rest, keeping unconsumed bytes as a connection would. */
static struct decoded decode(const char *msg, size_t len, size_t split)
{
    struct decoded d = {0};
    struct keel_h1_chunked st;
    keel_h1_chunked_init(&st);
    d.data = malloc(len ? len : 1);
    CHECK(d.data != NULL);
    size_t pos = 0, avail = split;
    for (;;) {
        size_t n = avail - pos, used = (size_t)-1, dn = 1;
        char *win = copy(msg + pos, n);
        const char *dp = NULL;
        int rc = keel_h1_chunked_feed(&st, win, n, &used, &dp, &dn);
        CHECK(used <= n);
        CHECK(dn == 0 || rc == 0);
        if (rc == 0) {
            CHECK(dn > 0 && dp >= win && dp + dn <= win + used);
            CHECK(d.ndata + dn <= len);
            memcpy(d.data + d.ndata, dp, dn);
            d.ndata += dn;
        }
        if (rc == KEEL_H1_CHUNKED_END) {
            struct keel_str t = st.trailers;
            CHECK(inside(t, win, used));
            d.toff = t.n ? pos + (size_t)(t.p - win) : 0;
            d.tlen = t.n;
            CHECK(keel_h1_parse_trailers(t, &head_c) == 0);
            check_fields(&head_c, win, used);
        }
        free(win);
        pos += used;
        if (rc == 0)
            continue;
        if (rc == KEEL_EAGAIN && avail < len) {
            avail = len;
            continue;
        }
        d.rc = rc;
        d.end = pos;
        if (rc != KEEL_EAGAIN && rc != KEEL_H1_CHUNKED_END) {
            CHECK(rc > KEEL__H1_E_FIRST && rc < KEEL__H1_E_LAST);
            const char *dp2;
            size_t u2, dn2;
            CHECK(keel_h1_chunked_feed(&st, "0\r\n\r\n", 5, &u2, &dp2, &dn2) == rc); /* errors are sticky */
        }
        return d;
    }
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The chunked grammar read the plain way, whole input at once, for bodies without chunk extensions
 * or trailer fields: 1 complete (*end, data), 0 incomplete, -1 invalid, 2 not covered. */
static int reference_chunked(const char *m, size_t len, char *data, size_t *ndata, size_t *end)
{
    size_t i = 0;
    *ndata = 0;
    for (;;) {
        size_t digits = 0;
        uint64_t size = 0;
        for (; i < len && hex_digit(m[i]) >= 0; i++) {
            uint64_t d = (uint64_t)hex_digit(m[i]);
            if (++digits > KEEL_H1_MAX_CHUNK_DIGITS || size > ((uint64_t)INT64_MAX - d) / 16)
                return -1;
            size = size * 16 + d;
        }
        if (i == len)
            return 0;
        if (digits == 0)
            return -1;
        if (m[i] == ';' || m[i] == ' ' || m[i] == '\t')
            return 2;
        if (m[i++] != '\r')
            return -1;
        if (i == len)
            return 0;
        if (m[i++] != '\n')
            return -1;
        if (size == 0)
            break;
        if (len - i < size)
            return 0;
        memcpy(data + *ndata, m + i, (size_t)size);
        *ndata += (size_t)size;
        i += (size_t)size;
        if (i == len)
            return 0;
        if (m[i++] != '\r')
            return -1;
        if (i == len)
            return 0;
        if (m[i++] != '\n')
            return -1;
    }
    if (i == len)
        return 0;
    if (m[i] != '\r')
        return 2;
    if (++i == len)
        return 0;
    if (m[i++] != '\n')
        return -1;
    *end = i;
    return 1;
}

static void fuzz_chunked(const char *msg, size_t len, size_t split)
{
    struct decoded whole = decode(msg, len, len);
    struct decoded part = decode(msg, len, split);
    CHECK(whole.rc == part.rc && whole.ndata == part.ndata && whole.end == part.end);
    CHECK(whole.ndata == 0 || memcmp(whole.data, part.data, whole.ndata) == 0);
    CHECK(whole.toff == part.toff && whole.tlen == part.tlen);

    char *ref = malloc(len ? len : 1);
    CHECK(ref != NULL);
    size_t nref = 0, ref_end = 0;
    int want = reference_chunked(msg, len, ref, &nref, &ref_end);
    if (want == 1)
        CHECK(whole.rc == KEEL_H1_CHUNKED_END && whole.end == ref_end && whole.ndata == nref &&
              (nref == 0 || memcmp(ref, whole.data, nref) == 0));
    else if (want == 0)
        CHECK(whole.rc == KEEL_EAGAIN);
    else if (want == -1)
        CHECK(whole.rc < 0 && whole.rc != KEEL_EAGAIN);
    free(ref);

    if (whole.rc == KEEL_H1_CHUNKED_END) {
        /* re-encode: the body in chunks of `split % 7 + 1` bytes, then the trailers */
        struct keel_buf out;
        keel_buf_init(&out, 1 << 22);
        size_t step = split % 7 + 1;
        for (size_t i = 0; i < whole.ndata; i += step)
            CHECK(keel_h1_write_chunk(&out, whole.data + i, whole.ndata - i < step ? whole.ndata - i : step) == 0);
        struct keel_str t = {msg + whole.toff, whole.tlen};
        CHECK(keel_h1_parse_trailers(t, &head_c) == 0);
        CHECK(keel_h1_write_last_chunk(&out, head_c.headers, head_c.nheaders) == 0);
        struct decoded again = decode(out.data, out.len, out.len / 2);
        CHECK(again.rc == KEEL_H1_CHUNKED_END && again.end == out.len && again.ndata == whole.ndata);
        CHECK(whole.ndata == 0 || memcmp(again.data, whole.data, whole.ndata) == 0);
        free(again.data);
        keel_buf_free(&out);
    }
    free(whole.data);
    free(part.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    int mode = data[0] & 3;
    unsigned variant = data[0] >> 2;
    const char *msg = (const char *)data + 3;
    size_t len = size - 3;
    size_t split = ((size_t)data[1] << 8 | data[2]) % (len + 1);
    if (mode == MODE_CHUNKED)
        fuzz_chunked(msg, len, split);
    else
        fuzz_head(mode, variant, msg, len, split);
    return 0;
}

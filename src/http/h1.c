/*
 * h1.c - HTTP/1.1 codec: strict head parser, chunked decoder, writers (see h1.h).
 *
 * The head parser is one left-to-right pass over at most max_head bytes:
 * start line, then field lines stored as slices, then a second, short pass
 * over the stored fields for the ones that decide framing and routing
 * (Host, Content-Length, Transfer-Encoding, Connection, Upgrade, Expect).
 * Character classes come from one 256-entry table, so the inner loops are
 * a load and a test per byte. Running out of bytes anywhere returns the
 * internal NEED_MORE, which the entry points turn into KEEL_EAGAIN or, when
 * the head limit is what cut the input, into KEEL_H1_E_HEAD_TOO_LARGE.
 * No decision looks past the last byte it has, which is what makes a
 * prefix parse to KEEL_EAGAIN or to the whole input's result.
 *
 * The chunked decoder is a byte state machine for the size lines (which
 * are short) that jumps over chunk data in one step; the trailer section
 * reuses the field-line parser and therefore needs to be contiguous.
 */
#include "http/h1.h"

#include "base/err.h"

#include <string.h>

#define NEED_MORE 1 /* internal: the input ended before a decision */

/* Character classes (RFC 9110 section 5.6.2 tchar, 5.5 field-vchar, RFC 3986 for targets and hosts),
 * one bit each. The table is written out from these definitions; h1_test.c checks every byte of the
 * token, field-value and request-target classes against the RFC grammar through the parser. */
enum {
    C_TCHAR = 0x01,   /* token: ALPHA DIGIT ! # $ % & ' * + - . ^ _ ` | ~ */
    C_FVAL = 0x02,    /* field value: HTAB SP VCHAR obs-text (no CTL, no DEL) */
    C_TARGET = 0x04,  /* request-target: VCHAR but '#' (see docs/http1.md) */
    C_HEX = 0x08,     /* HEXDIG */
    C_REGNAME = 0x10, /* reg-name: unreserved, sub-delims ('%' is checked apart) */
    C_QDTEXT = 0x20,  /* quoted-string qdtext: HTAB SP ! %x23-5B %x5D-7E obs-text */
    C_SCHEME = 0x40,  /* scheme: ALPHA DIGIT + - . */
};

static const unsigned char cls[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 00-0f */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 10-1f */
    0x22, 0x37, 0x06, 0x23, 0x37, 0x27, 0x37, 0x37, 0x36, 0x36, 0x37, 0x77, 0x36, 0x77, 0x77, 0x26, /* 20-2f */
    0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x26, 0x36, 0x26, 0x36, 0x26, 0x26, /* 30-3f */
    0x26, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, /* 40-4f */
    0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x26, 0x06, 0x26, 0x27, 0x37, /* 50-5f */
    0x27, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, /* 60-6f */
    0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x26, 0x27, 0x26, 0x37, 0x00, /* 70-7f */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 80-8f */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 90-9f */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* a0-af */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* b0-bf */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* c0-cf */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* d0-df */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* e0-ef */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* f0-ff */
};

static inline bool is(unsigned char c, unsigned cls_bit)
{
    return (cls[c] & cls_bit) != 0;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline unsigned hex_value(unsigned char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

/* ASCII case-insensitive comparison with a literal made of lower-case letters, digits and '-'. For
 * any byte that is not a CTL (names and values hold none), c | 0x20 equals such a literal character
 * only when c is that character or its upper-case letter. */
static bool token_is(const char *p, size_t n, const char *lc, size_t lcn)
{
    if (n != lcn)
        return false;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)p[i] | 0x20) != (unsigned char)lc[i])
            return false;
    return true;
}

#define TOKEN_IS(p, n, lit) token_is((p), (n), lit, sizeof(lit) - 1)

static bool str_is(struct keel_str s, const char *lit, size_t n)
{
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

#define STR_IS(s, lit) str_is((s), lit, sizeof(lit) - 1)

static struct keel_str slice(const char *p, const char *end)
{
    struct keel_str s = {p, (size_t)(end - p)};
    return s;
}

/* ---- errors ------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    const char *msg;
    int status;
} errors[] = {
#define KEEL_H1_ERR_ROW(name, status, msg) {"KEEL_H1_E_" #name, msg, status},
    KEEL_H1_ERROR_MAP(KEEL_H1_ERR_ROW)
#undef KEEL_H1_ERR_ROW
};

static int error_index(int err)
{
    return err > KEEL__H1_E_FIRST && err < KEEL__H1_E_LAST ? err - KEEL__H1_E_FIRST - 1 : -1;
}

const char *keel_h1_strerror(int err)
{
    int i = error_index(err);
    return i >= 0 ? errors[i].msg : keel_strerror(err);
}

const char *keel_h1_error_name(int err)
{
    int i = error_index(err);
    return i >= 0 ? errors[i].name : keel_err_name(err);
}

int keel_h1_error_status(int err)
{
    int i = error_index(err);
    return i >= 0 ? errors[i].status : 400;
}

/* ---- authority (Host, absolute-form, authority-form) ------------------------------------------- */

/* dec-octet "." dec-octet "." dec-octet "." dec-octet (RFC 3986 section 3.2.2: no leading zeros). */
static bool valid_ipv4(const char *p, size_t n)
{
    const char *end = p + n;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (p == end || *p != '.')
                return false;
            p++;
        }
        const char *s = p;
        unsigned v = 0;
        while (p < end && is_digit(*p) && p - s < 3)
            v = v * 10 + (unsigned)(*p++ - '0');
        if (p == s || v > 255 || (p - s > 1 && *s == '0'))
            return false;
    }
    return p == end;
}

/* IPv6address (RFC 3986 section 3.2.2), without zone identifiers. */
static bool valid_ipv6(const char *p, size_t n)
{
    size_t i = 0, groups = 0;
    bool elided = false;
    if (n >= 2 && p[0] == ':' && p[1] == ':') {
        elided = true;
        i = 2;
    } else if (n == 0 || p[0] == ':') {
        return false;
    }
    while (i < n) {
        size_t s = i;
        while (i < n && is((unsigned char)p[i], C_HEX) && i - s < 5)
            i++;
        if (i < n && p[i] == '.') { /* embedded IPv4 ends the address */
            if (!valid_ipv4(p + s, n - s))
                return false;
            groups += 2;
            i = n;
            break;
        }
        if (i == s || i - s > 4)
            return false;
        groups++;
        if (i == n)
            break;
        if (p[i] != ':')
            return false;
        i++;
        if (i < n && p[i] == ':') {
            if (elided)
                return false;
            elided = true;
            i++;
        } else if (i == n) {
            return false; /* one trailing colon */
        }
    }
    return elided ? groups <= 7 : groups == 8;
}

enum { AUTH_HOST_REQUIRED = 1, AUTH_PORT_REQUIRED = 2 };

/* uri-host [ ":" port ] (RFC 3986 section 3.2, without userinfo; RFC 9110 section 4.2). The port, when
 * its colon is there, must have 1-5 digits and be at most 65535. */
static bool valid_authority(const char *p, size_t n, unsigned flags)
{
    const char *end = p + n, *q = p;
    if (q < end && *q == '[') {
        const char *rb = memchr(q, ']', n);
        if (!rb || !valid_ipv6(q + 1, (size_t)(rb - q - 1)))
            return false;
        q = rb + 1;
    } else {
        while (q < end && *q != ':') {
            unsigned char c = (unsigned char)*q;
            if (c == '%') {
                if (end - q < 3 || !is((unsigned char)q[1], C_HEX) || !is((unsigned char)q[2], C_HEX))
                    return false;
                q += 3;
                continue;
            }
            if (!is(c, C_REGNAME))
                return false;
            q++;
        }
        if (q == p && ((flags & AUTH_HOST_REQUIRED) || q != end))
            return false; /* an empty host only as an empty value (RFC 9112 section 3.2) */
    }
    if (q == end)
        return !(flags & AUTH_PORT_REQUIRED);
    if (*q++ != ':' || q == end || end - q > 5)
        return false;
    unsigned port = 0;
    for (; q < end; q++) {
        if (!is_digit(*q))
            return false;
        port = port * 10 + (unsigned)(*q - '0');
    }
    return port <= 65535;
}

bool keel_h1_authority_valid(const char *p, size_t n)
{
    return valid_authority(p, n, AUTH_HOST_REQUIRED);
}

/* ---- field lines --------------------------------------------------------------------------------- */

/* Why a field line stopped at p (not a colon) after a name that started at ns. */
static int field_name_error(const char *ns, const char *p)
{
    char c = *p;
    if (p == ns) {
        if (is_ows(c))
            return KEEL_H1_E_OBS_FOLD; /* RFC 9112 sections 2.2 and 5.2 */
        return c == '\n' ? KEEL_H1_E_BARE_LF : KEEL_H1_E_HEADER_NAME;
    }
    if (is_ows(c))
        return KEEL_H1_E_HEADER_SPACE; /* RFC 9112 section 5.1 */
    if (c == '\r')
        return KEEL_H1_E_HEADER_COLON;
    return c == '\n' ? KEEL_H1_E_BARE_LF : KEEL_H1_E_HEADER_NAME;
}

/*
 * Field lines from p up to and including the empty line (RFC 9112 section 5). Stores at most max
 * of them in hdrs (which may be NULL: count only), sets *count and *next (after the empty line).
 * Returns 0, NEED_MORE or a KEEL_H1_E_* code. When the input ends exactly at the start of a line,
 * NEED_MORE comes with *count and *next set to that line (keel_h1_parse_trailers uses it).
 */
static int parse_fields(const char *p, const char *end, struct keel_http_header *hdrs, size_t max, size_t *count,
                        const char **next)
{
    size_t n = 0;
    for (;;) {
        if (p >= end) {
            *count = n;
            *next = p;
            return NEED_MORE;
        }
        if (*p == '\r') {
            if (p + 1 >= end)
                return NEED_MORE;
            if (p[1] != '\n')
                return KEEL_H1_E_LONE_CR;
            *count = n;
            *next = p + 2;
            return 0;
        }
        if (n == max)
            return KEEL_H1_E_TOO_MANY_HEADERS;
        const char *ns = p;
        while (p < end && is((unsigned char)*p, C_TCHAR))
            p++;
        if (p == end)
            return NEED_MORE;
        if (*p != ':' || p == ns)
            return field_name_error(ns, p);
        const char *ne = p++;
        while (p < end && is_ows(*p))
            p++;
        const char *vs = p;
        while (p < end && is((unsigned char)*p, C_FVAL))
            p++;
        if (p == end)
            return NEED_MORE;
        if (*p != '\r') /* RFC 9110 section 5.5: CR, LF, NUL and other CTLs are invalid */
            return *p == '\n' ? KEEL_H1_E_BARE_LF : KEEL_H1_E_HEADER_VALUE;
        if (p + 1 >= end)
            return NEED_MORE;
        if (p[1] != '\n')
            return KEEL_H1_E_LONE_CR;
        const char *ve = p;
        while (ve > vs && is_ows(ve[-1]))
            ve--;
        if (hdrs) {
            hdrs[n].name = slice(ns, ne);
            hdrs[n].value = slice(vs, ve);
        }
        n++;
        p += 2;
    }
}

/* ---- framing fields -------------------------------------------------------------------------- */

/* What the framing-related fields of a head say, gathered in one pass. */
struct framing {
    unsigned hosts;
    bool te;              /* a Transfer-Encoding field was received */
    bool te_chunked;      /* chunked was among its codings */
    bool te_chunked_last; /* the last coding so far is chunked */
    bool cl;
    uint64_t cl_value;
    bool conn_close;
    bool conn_keep_alive;
    bool conn_upgrade;
    bool upgrade_field;
    bool expect_continue;
};

/* Content-Length = 1*DIGIT (RFC 9110 section 8.6); repeated fields must agree. */
static int content_length(struct framing *f, struct keel_str v)
{
    if (v.n == 0)
        return KEEL_H1_E_CONTENT_LENGTH;
    uint64_t x = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (!is_digit(v.p[i]))
            return KEEL_H1_E_CONTENT_LENGTH;
        unsigned d = (unsigned)(v.p[i] - '0');
        if (x > (KEEL_H1_MAX_CONTENT_LENGTH - d) / 10)
            return KEEL_H1_E_CONTENT_LENGTH;
        x = x * 10 + d;
    }
    if (f->cl && f->cl_value != x)
        return KEEL_H1_E_CONTENT_LENGTH_CONFLICT;
    f->cl = true;
    f->cl_value = x;
    return 0;
}

/* Transfer-Encoding = #transfer-coding (RFC 9112 section 6.1), read strictly: every element a bare
 * token (no parameters, no empty elements), chunked at most once, only registered codings. */
static int transfer_encoding(struct framing *f, struct keel_str v)
{
    const char *p = v.p, *end = v.p + v.n;
    f->te = true;
    for (;;) {
        const char *s = p;
        while (p < end && is((unsigned char)*p, C_TCHAR))
            p++;
        size_t n = (size_t)(p - s);
        if (n == 0)
            return KEEL_H1_E_TE_INVALID;
        if (TOKEN_IS(s, n, "chunked")) {
            if (f->te_chunked)
                return KEEL_H1_E_TE_INVALID; /* RFC 9112 section 6.1: chunked at most once */
            f->te_chunked = f->te_chunked_last = true;
        } else if (TOKEN_IS(s, n, "gzip") || TOKEN_IS(s, n, "deflate") || TOKEN_IS(s, n, "compress") ||
                   TOKEN_IS(s, n, "x-gzip") || TOKEN_IS(s, n, "x-compress") || TOKEN_IS(s, n, "identity")) {
            f->te_chunked_last = false;
        } else {
            return KEEL_H1_E_TE_UNKNOWN;
        }
        while (p < end && is_ows(*p))
            p++;
        if (p == end)
            return 0;
        if (*p++ != ',')
            return KEEL_H1_E_TE_INVALID;
        while (p < end && is_ows(*p))
            p++;
    }
}

/* Connection = #connection-option (RFC 9110 section 7.6.1); only close, keep-alive and upgrade matter. */
static void connection(struct framing *f, struct keel_str v)
{
    const char *p = v.p, *end = v.p + v.n;
    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && is_ows(e[-1]))
            e--;
        size_t n = (size_t)(e - s);
        if (TOKEN_IS(s, n, "close"))
            f->conn_close = true;
        else if (TOKEN_IS(s, n, "keep-alive"))
            f->conn_keep_alive = true;
        else if (TOKEN_IS(s, n, "upgrade"))
            f->conn_upgrade = true;
    }
}

/* One pass over the stored fields. Host is checked for requests only. */
static int scan_framing(const struct keel_http_head *h, bool request, struct framing *f)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < h->nheaders; i++) {
        struct keel_str name = h->headers[i].name, v = h->headers[i].value;
        int rc = 0;
        switch (name.n) {
        case 4:
            if (request && TOKEN_IS(name.p, name.n, "host")) {
                if (++f->hosts > 1)
                    return KEEL_H1_E_HOST_DUPLICATE; /* RFC 9112 section 3.2 */
                if (!valid_authority(v.p, v.n, 0))
                    return KEEL_H1_E_HOST_INVALID;
            }
            break;
        case 6:
            if (request && TOKEN_IS(name.p, name.n, "expect"))
                f->expect_continue = f->expect_continue || TOKEN_IS(v.p, v.n, "100-continue");
            break;
        case 7:
            if (TOKEN_IS(name.p, name.n, "upgrade"))
                f->upgrade_field = f->upgrade_field || v.n > 0;
            break;
        case 10:
            if (TOKEN_IS(name.p, name.n, "connection"))
                connection(f, v);
            break;
        case 14:
            if (TOKEN_IS(name.p, name.n, "content-length"))
                rc = content_length(f, v);
            break;
        case 17:
            if (TOKEN_IS(name.p, name.n, "transfer-encoding")) {
                if (h->version == KEEL_HTTP_10)
                    return KEEL_H1_E_TE_HTTP10; /* RFC 9112 section 6.1 */
                rc = transfer_encoding(f, v);
            }
            break;
        default:
            break;
        }
        if (rc)
            return rc;
    }
    return 0;
}

static bool keep_alive(enum keel_http_version v, const struct framing *f)
{
    if (f->conn_close)
        return false;
    return v == KEEL_HTTP_11 || f->conn_keep_alive; /* RFC 9112 section 9.3 */
}

/* ---- start lines --------------------------------------------------------------------------------- */

/* "HTTP/" DIGIT "." DIGIT at p (8 bytes available). */
static int parse_version(const char *p, enum keel_http_version *v)
{
    if (memcmp(p, "HTTP/", 5) != 0 || !is_digit(p[5]) || p[6] != '.' || !is_digit(p[7]))
        return KEEL_H1_E_VERSION;
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return KEEL_H1_E_VERSION_UNSUPPORTED;
    *v = p[7] == '1' ? KEEL_HTTP_11 : KEEL_HTTP_10;
    return 0;
}

/* CRLF at p (2 bytes available). */
static int expect_crlf(const char *p, int otherwise)
{
    if (p[0] == '\r')
        return p[1] == '\n' ? 0 : KEEL_H1_E_LONE_CR;
    return p[0] == '\n' ? KEEL_H1_E_BARE_LF : otherwise;
}

static void split_path_query(struct keel_http_head *h, const char *p, const char *end)
{
    const char *q = memchr(p, '?', (size_t)(end - p));
    if (q) {
        h->path = slice(p, q);
        h->query = slice(q + 1, end);
    } else {
        h->path = slice(p, end);
    }
}

static const char root_path[] = "/";

/* Request-target forms (RFC 9112 section 3.2) and what each allows. */
static int analyze_target(struct keel_http_head *h, enum keel_h1_form *form)
{
    const char *p = h->target.p, *end = p + h->target.n;
    bool connect = STR_IS(h->method, "CONNECT");
    if (*p == '/') {
        if (connect)
            return KEEL_H1_E_TARGET_FORM; /* RFC 9110 section 9.3.6 */
        *form = KEEL_H1_FORM_ORIGIN;
        split_path_query(h, p, end);
        return 0;
    }
    if (h->target.n == 1 && *p == '*') {
        if (!STR_IS(h->method, "OPTIONS"))
            return KEEL_H1_E_TARGET_FORM; /* RFC 9112 section 3.2.4 */
        *form = KEEL_H1_FORM_ASTERISK;
        h->path = h->target;
        return 0;
    }
    if (connect) { /* authority-form = uri-host ":" port (RFC 9112 section 3.2.3) */
        if (!valid_authority(p, h->target.n, AUTH_HOST_REQUIRED | AUTH_PORT_REQUIRED))
            return KEEL_H1_E_TARGET;
        *form = KEEL_H1_FORM_AUTHORITY;
        h->authority = h->target;
        return 0;
    }
    /* absolute-form: an "http" or "https" URI (RFC 9112 section 3.2.2, RFC 9110 section 4.2) */
    const char *s = p;
    if (!((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'))
        return KEEL_H1_E_TARGET;
    while (p < end && is((unsigned char)*p, C_SCHEME))
        p++;
    if (!(TOKEN_IS(s, (size_t)(p - s), "http") || TOKEN_IS(s, (size_t)(p - s), "https")))
        return KEEL_H1_E_TARGET;
    h->scheme = slice(s, p);
    if (end - p < 3 || memcmp(p, "://", 3) != 0)
        return KEEL_H1_E_TARGET;
    p += 3;
    const char *a = p;
    while (p < end && *p != '/' && *p != '?')
        p++;
    /* no userinfo ('@' is not a reg-name character) and no empty host (RFC 9110 section 4.2.1, 4.2.4) */
    if (!valid_authority(a, (size_t)(p - a), AUTH_HOST_REQUIRED))
        return KEEL_H1_E_TARGET;
    h->authority = slice(a, p);
    *form = KEEL_H1_FORM_ABSOLUTE;
    split_path_query(h, p, end);
    if (h->path.n == 0) { /* RFC 9112 section 3.2.1: an empty path is "/" */
        h->path.p = root_path;
        h->path.n = 1;
    }
    return 0;
}

static void reset_head(struct keel_http_head *h, const char *buf)
{
    struct keel_str empty = {buf, 0};
    h->method = h->target = h->path = h->query = h->authority = h->scheme = h->reason = empty;
    h->status = 0;
    h->nheaders = 0;
    h->chunked = h->has_content_length = h->keep_alive = h->upgrade = h->expect_continue = false;
    h->content_length = 0;
}

static size_t max_headers(const struct keel_h1_limits *lim)
{
    return lim && lim->max_headers && lim->max_headers < KEEL_HTTP_MAX_HEADERS ? lim->max_headers
                                                                               : KEEL_HTTP_MAX_HEADERS;
}

/* The request head in [buf, end); NEED_MORE when it is not all there. */
static int request_head(const char *buf, const char *end, size_t max_target, size_t nmax, struct keel_http_head *h,
                        struct keel_h1_request *rq, const char **next)
{
    const char *p = buf;
    /* RFC 9112 section 2.2: empty lines (CRLF) before the request-line are ignored */
    while (p < end && *p == '\r') {
        if (p + 1 >= end)
            return NEED_MORE;
        if (p[1] != '\n')
            return KEEL_H1_E_LONE_CR;
        p += 2;
    }
    /* method = token, then exactly one SP (RFC 9112 section 3) */
    const char *m = p;
    while (p < end && is((unsigned char)*p, C_TCHAR))
        p++;
    if (p == end)
        return NEED_MORE;
    if (*p != ' ' || p == m) {
        if (p == m)
            return *p == '\n' ? KEEL_H1_E_BARE_LF : KEEL_H1_E_METHOD;
        return *p == '\r' || *p == '\n' || *p == '\t' ? KEEL_H1_E_REQUEST_LINE : KEEL_H1_E_METHOD;
    }
    h->method = slice(m, p++);

    const char *t = p;
    const char *stop = (size_t)(end - p) > max_target ? p + max_target + 1 : end;
    while (p < stop && is((unsigned char)*p, C_TARGET))
        p++;
    if ((size_t)(p - t) > max_target)
        return KEEL_H1_E_TARGET_TOO_LONG;
    if (p == end)
        return NEED_MORE;
    if (*p != ' ' || p == t)
        return *p == ' ' || *p == '\r' || *p == '\n' || *p == '\t' ? KEEL_H1_E_REQUEST_LINE : KEEL_H1_E_TARGET;
    h->target = slice(t, p++);

    if (end - p < 10)
        return NEED_MORE;
    int rc = parse_version(p, &h->version);
    if (rc)
        return rc;
    if ((rc = expect_crlf(p + 8, KEEL_H1_E_VERSION)) != 0)
        return rc;
    p += 10;

    enum keel_h1_form form;
    if ((rc = analyze_target(h, &form)) != 0)
        return rc;
    if (rq)
        rq->form = form;

    if ((rc = parse_fields(p, end, h->headers, nmax, &h->nheaders, next)) != 0)
        return rc;

    struct framing f;
    if ((rc = scan_framing(h, true, &f)) != 0)
        return rc;
    if (h->version == KEEL_HTTP_11 && f.hosts == 0)
        return KEEL_H1_E_HOST_MISSING; /* RFC 9112 section 3.2 */
    if (f.te && f.cl)
        return KEEL_H1_E_TE_WITH_CONTENT_LENGTH; /* RFC 9112 section 6.3 item 3 */
    if (f.te && !f.te_chunked_last)
        return KEEL_H1_E_TE_NOT_CHUNKED; /* RFC 9112 section 6.3 item 4 */
    bool connect = form == KEEL_H1_FORM_AUTHORITY;
    if (connect && (f.te || f.cl_value > 0))
        return KEEL_H1_E_CONNECT_BODY; /* RFC 9110 section 9.3.6 */

    if (form == KEEL_H1_FORM_ORIGIN || form == KEEL_H1_FORM_ASTERISK) {
        for (size_t i = 0; f.hosts && i < h->nheaders; i++)
            if (TOKEN_IS(h->headers[i].name.p, h->headers[i].name.n, "host")) {
                h->authority = h->headers[i].value;
                break;
            }
    }
    if (rq)
        rq->host_ignored = f.hosts > 0 && (form == KEEL_H1_FORM_ABSOLUTE || form == KEEL_H1_FORM_AUTHORITY);
    h->chunked = f.te;
    h->has_content_length = f.cl;
    h->content_length = f.cl_value;
    h->keep_alive = keep_alive(h->version, &f);
    bool v11 = h->version == KEEL_HTTP_11;
    h->upgrade = connect || (v11 && f.conn_upgrade && f.upgrade_field); /* RFC 9110 section 7.8 */
    h->expect_continue = v11 && f.expect_continue;                      /* RFC 9110 section 10.1.1 */
    return 0;
}

int keel_h1_parse_request_ex(const char *buf, size_t len, const struct keel_h1_limits *lim, struct keel_http_head *out,
                             struct keel_h1_request *req, size_t *consumed)
{
    size_t max_head = lim && lim->max_head ? lim->max_head : KEEL_H1_MAX_HEAD;
    size_t max_target = lim && lim->max_target ? lim->max_target : KEEL_H1_MAX_TARGET;
    const char *end = buf + (len < max_head ? len : max_head), *next = NULL;
    reset_head(out, buf);
    if (req) {
        req->form = KEEL_H1_FORM_ORIGIN;
        req->host_ignored = false;
    }
    int rc = request_head(buf, end, max_target, max_headers(lim), out, req, &next);
    if (rc == NEED_MORE)
        return len >= max_head ? KEEL_H1_E_HEAD_TOO_LARGE : KEEL_EAGAIN;
    if (rc)
        return rc;
    *consumed = (size_t)(next - buf);
    return 0;
}

int keel_h1_parse_request(const char *buf, size_t len, struct keel_http_head *out, size_t *consumed)
{
    return keel_h1_parse_request_ex(buf, len, NULL, out, NULL, consumed);
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 section 4). */
static int response_head(const char *buf, const char *end, struct keel_str method, size_t nmax,
                         struct keel_http_head *h, struct keel_h1_response *res, const char **next)
{
    const char *p = buf;
    if (end - p < 13)
        return NEED_MORE;
    int rc = parse_version(p, &h->version);
    if (rc)
        return rc;
    if (p[8] != ' ' || !is_digit(p[9]) || !is_digit(p[10]) || !is_digit(p[11]))
        return KEEL_H1_E_STATUS_LINE;
    h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (h->status < 100 || h->status > 599) /* RFC 9110 section 15 */
        return KEEL_H1_E_STATUS_LINE;
    p += 12;
    if (*p == ' ') { /* the SP before an empty reason is often left out: accepted */
        const char *r = ++p;
        while (p < end && is((unsigned char)*p, C_FVAL))
            p++;
        h->reason = slice(r, p);
    }
    if (end - p < 2)
        return NEED_MORE;
    if ((rc = expect_crlf(p, KEEL_H1_E_STATUS_LINE)) != 0)
        return rc;
    p += 2;

    if ((rc = parse_fields(p, end, h->headers, nmax, &h->nheaders, next)) != 0)
        return rc;

    int s = h->status;
    res->no_body = res->tunnel = res->body_until_close = false;
    bool connect = STR_IS(method, "CONNECT");
    if (connect && s >= 200 && s < 300) {
        /* RFC 9110 section 9.3.6: Content-Length and Transfer-Encoding are ignored; the tunnel starts */
        res->tunnel = h->upgrade = true;
        return 0;
    }
    struct framing f;
    if ((rc = scan_framing(h, false, &f)) != 0)
        return rc;
    if (f.te && f.cl) /* RFC 9112 section 6.3 item 3: "ought to be handled as an error" */
        return KEEL_H1_E_TE_WITH_CONTENT_LENGTH;
    if (f.te_chunked && !f.te_chunked_last)
        return KEEL_H1_E_TE_INVALID; /* RFC 9112 section 6.1: chunked must be the final coding */
    h->keep_alive = keep_alive(h->version, &f);
    if (s == 101) {
        res->tunnel = h->upgrade = true;
        h->keep_alive = false;
    } else if (s < 200 || s == 204 || s == 304 || STR_IS(method, "HEAD")) {
        res->no_body = true; /* RFC 9112 section 6.3 item 1 */
    } else if (f.te_chunked) {
        h->chunked = true;
    } else if (f.te) {
        res->body_until_close = true; /* RFC 9112 section 6.3 item 4 */
    } else if (f.cl) {
        h->has_content_length = true;
        h->content_length = f.cl_value;
    } else {
        res->body_until_close = true; /* RFC 9112 section 6.3 item 8 */
    }
    if (res->body_until_close)
        h->keep_alive = false;
    return 0;
}

int keel_h1_parse_response(const char *buf, size_t len, struct keel_str req_method, const struct keel_h1_limits *lim,
                           struct keel_http_head *out, struct keel_h1_response *res, size_t *consumed)
{
    size_t max_head = lim && lim->max_head ? lim->max_head : KEEL_H1_MAX_HEAD;
    const char *end = buf + (len < max_head ? len : max_head), *next = NULL;
    reset_head(out, buf);
    int rc = response_head(buf, end, req_method, max_headers(lim), out, res, &next);
    if (rc == NEED_MORE)
        return len >= max_head ? KEEL_H1_E_HEAD_TOO_LARGE : KEEL_EAGAIN;
    if (rc)
        return rc;
    *consumed = (size_t)(next - buf);
    return 0;
}

bool keel_h1_has_head(const char *buf, size_t len, size_t *scanned)
{
    size_t j = *scanned < 3 ? 3 : *scanned; /* candidate index of the final LF */
    while (j < len) {
        const char *q = memchr(buf + j, '\n', len - j);
        if (!q)
            break;
        j = (size_t)(q - buf);
        if (buf[j - 1] == '\r' && buf[j - 2] == '\n' && buf[j - 3] == '\r') {
            *scanned = j + 1;
            return true;
        }
        j++;
    }
    if (len > *scanned)
        *scanned = len;
    return false;
}

/* ---- chunked decoder (RFC 9112 section 7.1) ------------------------------------------------------ */

enum {
    CH_SIZE_START,   /* first hex digit of a chunk-size */
    CH_SIZE,         /* more hex digits, ';', BWS or CR */
    CH_BWS,          /* BWS after the size or a value: ';' must follow */
    CH_EXT_PRE_NAME, /* after ';': BWS, then the name */
    CH_EXT_NAME,
    CH_EXT_NAME_BWS, /* BWS after a name: '=' or ';' must follow */
    CH_EXT_PRE_VAL,  /* after '=': BWS, then a token or a quoted-string */
    CH_EXT_VAL,
    CH_EXT_QUOTED,
    CH_EXT_QUOTED_PAIR,
    CH_EXT_AFTER_QUOTE,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILERS,
    CH_DONE,
    CH_ERROR,
};

void keel_h1_chunked_init(struct keel_h1_chunked *st)
{
    memset(st, 0, sizeof(*st));
    st->trailers.p = "";
    st->max_trailers = KEEL_H1_MAX_TRAILERS;
    st->_state = CH_SIZE_START;
}

/* The next state after byte c of a chunk-size line (any state from CH_SIZE to CH_SIZE_LF), or a
 * negative KEEL_H1_E_* code. */
static int size_line(struct keel_h1_chunked *st, unsigned char c)
{
    switch (st->_state) {
    case CH_SIZE:
        if (is(c, C_HEX)) {
            unsigned d = hex_value(c);
            if (++st->_count > KEEL_H1_MAX_CHUNK_DIGITS)
                return KEEL_H1_E_CHUNK_SIZE;
            if (st->_size > (KEEL_H1_MAX_CHUNK_SIZE - d) / 16)
                return KEEL_H1_E_CHUNK_TOO_BIG;
            st->_size = st->_size * 16 + d;
            return CH_SIZE;
        }
        st->_count = 0;
        if (c == '\r')
            return CH_SIZE_LF;
        if (c == '\n')
            return KEEL_H1_E_BARE_LF;
        st->_count = 1;
        if (c == ';')
            return CH_EXT_PRE_NAME;
        if (is_ows((char)c))
            return CH_BWS;
        return KEEL_H1_E_CHUNK_SIZE;
    case CH_SIZE_LF:
        return c == '\n' ? (st->_size ? CH_DATA : CH_TRAILERS) : KEEL_H1_E_LONE_CR;
    default:
        break;
    }
    /* chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ), ext-val = token / quoted-string */
    if (c != '\r' && ++st->_count > KEEL_H1_MAX_CHUNK_EXT)
        return KEEL_H1_E_CHUNK_EXT_TOO_LONG;
    if (c == '\n')
        return KEEL_H1_E_BARE_LF;
    bool ws = is_ows((char)c), tchar = is(c, C_TCHAR);
    switch (st->_state) {
    case CH_BWS:
        return ws ? CH_BWS : c == ';' ? CH_EXT_PRE_NAME : KEEL_H1_E_CHUNK_EXT;
    case CH_EXT_PRE_NAME:
        return ws ? CH_EXT_PRE_NAME : tchar ? CH_EXT_NAME : KEEL_H1_E_CHUNK_EXT;
    case CH_EXT_NAME:
        if (tchar)
            return CH_EXT_NAME;
        if (c == '\r')
            return CH_SIZE_LF;
        return ws ? CH_EXT_NAME_BWS : c == '=' ? CH_EXT_PRE_VAL : c == ';' ? CH_EXT_PRE_NAME : KEEL_H1_E_CHUNK_EXT;
    case CH_EXT_NAME_BWS:
        return ws ? CH_EXT_NAME_BWS : c == '=' ? CH_EXT_PRE_VAL : c == ';' ? CH_EXT_PRE_NAME : KEEL_H1_E_CHUNK_EXT;
    case CH_EXT_PRE_VAL:
        return ws ? CH_EXT_PRE_VAL : c == '"' ? CH_EXT_QUOTED : tchar ? CH_EXT_VAL : KEEL_H1_E_CHUNK_EXT;
    case CH_EXT_VAL:
    case CH_EXT_AFTER_QUOTE:
        if (tchar && st->_state == CH_EXT_VAL)
            return CH_EXT_VAL;
        if (c == '\r')
            return CH_SIZE_LF;
        return ws ? CH_BWS : c == ';' ? CH_EXT_PRE_NAME : KEEL_H1_E_CHUNK_EXT;
    case CH_EXT_QUOTED:
        if (c == '"')
            return CH_EXT_AFTER_QUOTE;
        if (c == '\\')
            return CH_EXT_QUOTED_PAIR;
        return is(c, C_QDTEXT) ? CH_EXT_QUOTED : KEEL_H1_E_CHUNK_EXT;
    case CH_EXT_QUOTED_PAIR: /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
        return is(c, C_FVAL) ? CH_EXT_QUOTED : KEEL_H1_E_CHUNK_EXT;
    default:
        return KEEL_H1_E_CHUNK_EXT;
    }
}

int keel_h1_chunked_feed(struct keel_h1_chunked *st, const char *in, size_t len, size_t *consumed, const char **data,
                         size_t *data_len)
{
    const char *p = in, *end = in + len;
    int rc;
    *data = in;
    *data_len = 0;
    if (st->_state == CH_ERROR || st->_state == CH_DONE) {
        *consumed = 0;
        return st->_state == CH_DONE ? KEEL_H1_CHUNKED_END : st->_err;
    }
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        switch (st->_state) {
        case CH_DATA: {
            size_t n = (size_t)(end - p);
            if (n > st->_size)
                n = (size_t)st->_size;
            *data = p;
            *data_len = n;
            st->_size -= n;
            if (st->_size == 0)
                st->_state = CH_DATA_CR;
            *consumed = (size_t)(p + n - in);
            return 0;
        }
        case CH_SIZE_START:
            if (!is(c, C_HEX)) {
                rc = c == '\n' ? KEEL_H1_E_BARE_LF : KEEL_H1_E_CHUNK_SIZE;
                goto fail;
            }
            st->_size = hex_value(c);
            st->_count = 1;
            st->_state = CH_SIZE;
            break;
        case CH_DATA_CR:
            if (c != '\r') {
                rc = KEEL_H1_E_CHUNK_CRLF;
                goto fail;
            }
            st->_state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (c != '\n') {
                rc = KEEL_H1_E_CHUNK_CRLF;
                goto fail;
            }
            st->_state = CH_SIZE_START;
            break;
        case CH_TRAILERS: {
            /* trailer-section = *( field-line CRLF ) CRLF, parsed whole (RFC 9112 section 7.1.2) */
            size_t max = st->max_trailers ? st->max_trailers : KEEL_H1_MAX_TRAILERS, n;
            bool capped = (size_t)(end - p) >= max;
            const char *next = NULL;
            rc = parse_fields(p, capped ? p + max : end, NULL, KEEL_HTTP_MAX_HEADERS, &n, &next);
            if (rc == NEED_MORE) {
                if (capped) {
                    rc = KEEL_H1_E_TRAILERS_TOO_LARGE;
                    goto fail;
                }
                *consumed = (size_t)(p - in);
                return KEEL_EAGAIN;
            }
            if (rc)
                goto fail;
            st->trailers = slice(p, next - 2);
            st->_state = CH_DONE;
            *consumed = (size_t)(next - in);
            return KEEL_H1_CHUNKED_END;
        }
        default:
            rc = size_line(st, c);
            if (rc < 0)
                goto fail;
            st->_state = (uint8_t)rc;
            break;
        }
        p++;
    }
    *consumed = len;
    return KEEL_EAGAIN;
fail:
    st->_state = CH_ERROR;
    st->_err = rc;
    *consumed = (size_t)(p - in);
    return rc;
}

int keel_h1_parse_trailers(struct keel_str section, struct keel_http_head *out)
{
    /* the section lacks the final empty line, so a complete one ends in NEED_MORE at a line start */
    const char *end = section.p + section.n, *next = NULL;
    size_t n = 0;
    int rc = parse_fields(section.p, end, out->headers, KEEL_HTTP_MAX_HEADERS, &n, &next);
    if (rc == 0)
        return KEEL_H1_E_HEADER_NAME; /* an empty line inside the section */
    if (rc != NEED_MORE)
        return rc;
    if (next != end)
        return KEEL_H1_E_HEADER_COLON; /* the last line has no CRLF */
    out->nheaders = n;
    return 0;
}

/* ---- writers ------------------------------------------------------------------------------------- */

static bool valid_token(struct keel_str s)
{
    if (s.n == 0)
        return false;
    for (size_t i = 0; i < s.n; i++)
        if (!is((unsigned char)s.p[i], C_TCHAR))
            return false;
    return true;
}

static bool valid_chars(struct keel_str s, unsigned bit)
{
    for (size_t i = 0; i < s.n; i++)
        if (!is((unsigned char)s.p[i], bit))
            return false;
    return true;
}

static bool valid_fields(const struct keel_http_header *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!valid_token(f[i].name) || !valid_chars(f[i].value, C_FVAL))
            return false;
    return true;
}

static int put(struct keel_buf *out, const void *p, size_t n)
{
    return keel_buf_append(out, p, n);
}

static int put_fields(struct keel_buf *out, const struct keel_http_header *f, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = put(out, f[i].name.p, f[i].name.n);
        if (rc == 0)
            rc = put(out, ": ", 2);
        if (rc == 0)
            rc = put(out, f[i].value.p, f[i].value.n);
        if (rc == 0)
            rc = put(out, "\r\n", 2);
    }
    return rc;
}

/* Leaves out as it was before a failed write. */
static int finish(struct keel_buf *out, size_t start, int rc)
{
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

int keel_h1_write_request_head(struct keel_buf *out, const struct keel_http_head *h,
                               const struct keel_http_header *headers, size_t n)
{
    if (!headers) {
        headers = h->headers;
        n = h->nheaders;
    }
    struct keel_str target = h->target, query = {"", 0};
    if (target.n == 0) {
        target = h->path;
        query = h->query;
    }
    if (!valid_token(h->method) || target.n == 0 || !valid_chars(target, C_TARGET) || !valid_chars(query, C_TARGET) ||
        !valid_fields(headers, n))
        return KEEL_EINVAL;
    size_t start = out->len;
    int rc = put(out, h->method.p, h->method.n);
    if (rc == 0)
        rc = put(out, " ", 1);
    if (rc == 0)
        rc = put(out, target.p, target.n);
    if (rc == 0 && query.n)
        rc = put(out, "?", 1);
    if (rc == 0 && query.n)
        rc = put(out, query.p, query.n);
    if (rc == 0)
        rc = put(out, h->version == KEEL_HTTP_10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n", 11);
    if (rc == 0)
        rc = put_fields(out, headers, n);
    if (rc == 0)
        rc = put(out, "\r\n", 2);
    return finish(out, start, rc);
}

int keel_h1_write_response_head(struct keel_buf *out, const struct keel_http_head *h,
                                const struct keel_http_header *headers, size_t n)
{
    if (!headers) {
        headers = h->headers;
        n = h->nheaders;
    }
    struct keel_str reason = h->reason;
    if (reason.n == 0)
        reason = keel_str_c(keel_h1_reason(h->status));
    if (h->status < 100 || h->status > 599 || !valid_chars(reason, C_FVAL) || !valid_fields(headers, n))
        return KEEL_EINVAL;
    char line[13];
    memcpy(line, h->version == KEEL_HTTP_10 ? "HTTP/1.0 " : "HTTP/1.1 ", 9);
    line[9] = (char)('0' + h->status / 100);
    line[10] = (char)('0' + h->status / 10 % 10);
    line[11] = (char)('0' + h->status % 10);
    line[12] = ' ';
    size_t start = out->len;
    int rc = put(out, line, sizeof(line));
    if (rc == 0)
        rc = put(out, reason.p, reason.n);
    if (rc == 0)
        rc = put(out, "\r\n", 2);
    if (rc == 0)
        rc = put_fields(out, headers, n);
    if (rc == 0)
        rc = put(out, "\r\n", 2);
    return finish(out, start, rc);
}

int keel_h1_write_chunk(struct keel_buf *out, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    char size[sizeof(size_t) * 2 + 2];
    size_t i = sizeof(size);
    size[--i] = '\n';
    size[--i] = '\r';
    for (size_t v = len; v; v >>= 4)
        size[--i] = "0123456789abcdef"[v & 15];
    size_t start = out->len;
    int rc = put(out, size + i, sizeof(size) - i);
    if (rc == 0)
        rc = put(out, data, len);
    if (rc == 0)
        rc = put(out, "\r\n", 2);
    return finish(out, start, rc);
}

int keel_h1_write_last_chunk(struct keel_buf *out, const struct keel_http_header *trailers, size_t n)
{
    if (trailers && !valid_fields(trailers, n))
        return KEEL_EINVAL;
    size_t start = out->len;
    int rc = put(out, "0\r\n", 3);
    if (rc == 0 && trailers)
        rc = put_fields(out, trailers, n);
    if (rc == 0)
        rc = put(out, "\r\n", 2);
    return finish(out, start, rc);
}

/* RFC 9110 section 15 and the IANA status code registry. */
static const char *const reasons[600] = {
    [100] = "Continue",
    [101] = "Switching Protocols",
    [102] = "Processing",
    [103] = "Early Hints",
    [200] = "OK",
    [201] = "Created",
    [202] = "Accepted",
    [203] = "Non-Authoritative Information",
    [204] = "No Content",
    [205] = "Reset Content",
    [206] = "Partial Content",
    [207] = "Multi-Status",
    [300] = "Multiple Choices",
    [301] = "Moved Permanently",
    [302] = "Found",
    [303] = "See Other",
    [304] = "Not Modified",
    [307] = "Temporary Redirect",
    [308] = "Permanent Redirect",
    [400] = "Bad Request",
    [401] = "Unauthorized",
    [402] = "Payment Required",
    [403] = "Forbidden",
    [404] = "Not Found",
    [405] = "Method Not Allowed",
    [406] = "Not Acceptable",
    [407] = "Proxy Authentication Required",
    [408] = "Request Timeout",
    [409] = "Conflict",
    [410] = "Gone",
    [411] = "Length Required",
    [412] = "Precondition Failed",
    [413] = "Content Too Large",
    [414] = "URI Too Long",
    [415] = "Unsupported Media Type",
    [416] = "Range Not Satisfiable",
    [417] = "Expectation Failed",
    [421] = "Misdirected Request",
    [422] = "Unprocessable Content",
    [425] = "Too Early",
    [426] = "Upgrade Required",
    [428] = "Precondition Required",
    [429] = "Too Many Requests",
    [431] = "Request Header Fields Too Large",
    [451] = "Unavailable For Legal Reasons",
    [500] = "Internal Server Error",
    [501] = "Not Implemented",
    [502] = "Bad Gateway",
    [503] = "Service Unavailable",
    [504] = "Gateway Timeout",
    [505] = "HTTP Version Not Supported",
    [507] = "Insufficient Storage",
    [511] = "Network Authentication Required",
};

const char *keel_h1_reason(int status)
{
    const char *r = status >= 0 && status < 600 ? reasons[status] : NULL;
    return r ? r : "";
}

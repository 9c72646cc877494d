/*
 * accesslog.c - access-log formats: compile Envoy command operators once, render one line per request.
 *
 * A format compiles into an array of segments, each a literal or one command operator with its parsed arguments
 * (header names, a strftime pattern, a maximum length). TEXT formats are one template; JSON formats are a flat
 * object whose values are templates, with keys sorted (Envoy builds its JSON line from a protobuf Struct, whose
 * keys come out sorted, which is what Istio users see). Everything a format needs is allocated from one arena at
 * compile time.
 *
 * Rendering evaluates each operator into a small value on the stack (a missing value, a number, or up to three
 * borrowed slices, e.g. path "?" query for :PATH) and appends it to the output buffer: the request path allocates
 * nothing beyond the buffer's own growth. Missing values render "-" in TEXT; in JSON a value that is exactly one
 * operator keeps Envoy's types (null when missing, unquoted numbers for RESPONSE_CODE, BYTES_* and DURATION),
 * while a value that mixes text and operators is a string with "-" for missing parts.
 *
 * Compile errors name the operator and its offset, in Envoy's wording where Envoy has one ("Not supported field in
 * StreamInfo: X"); the text lives in a per-thread buffer so the header's `const char **err` stays static-looking
 * to the caller (valid until the next compile on the same thread).
 */
#include "proxy/accesslog.h"

#include "base/arena.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/str.h"
#include "http/message.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Longest format string accepted (Istio's default TEXT format is ~500 bytes). */
#define KEEL_ACCESSLOG_MAX_FORMAT (64 * 1024)
/* Most keys in a JSON format. */
#define KEEL_ACCESSLOG_MAX_JSON_KEYS 256
/* Longest rendered custom %START_TIME(...)% value; longer renders "-". */
#define KEEL_ACCESSLOG_MAX_TIME 256

/* ---- response flags --------------------------------------------------------------------------------------------- */

static const char *const flag_names[] = {
#define FLAG_NAME(name, str) str,
    KEEL_RESPONSE_FLAGS(FLAG_NAME)
#undef FLAG_NAME
};
#define NFLAGS (sizeof(flag_names) / sizeof(flag_names[0]))

int keel_response_flags_format(uint32_t flags, struct keel_buf *out)
{
    size_t start = out->len;
    int rc = 0;
    bool any = false;
    for (size_t i = 0; !rc && i < NFLAGS; i++) {
        if (!(flags & (1u << i)))
            continue;
        if (any)
            rc = keel_buf_putc(out, ',');
        if (!rc)
            rc = keel_buf_puts(out, flag_names[i]);
        any = true;
    }
    if (!rc && !any)
        rc = keel_buf_putc(out, '-');
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

/* ---- operators -------------------------------------------------------------------------------------------------- */

enum op {
    OP_LITERAL,
    OP_START_TIME,
    OP_REQ,
    OP_RESP,
    OP_REQ_WITHOUT_QUERY,
    OP_PROTOCOL,
    OP_RESPONSE_CODE,
    OP_RESPONSE_FLAGS,
    OP_RESPONSE_CODE_DETAILS,
    OP_CONNECTION_TERMINATION_DETAILS,
    OP_UPSTREAM_TRANSPORT_FAILURE_REASON,
    OP_BYTES_RECEIVED,
    OP_BYTES_SENT,
    OP_DURATION,
    OP_UPSTREAM_HOST,
    OP_UPSTREAM_CLUSTER,
    OP_UPSTREAM_LOCAL_ADDRESS,
    OP_DOWNSTREAM_LOCAL_ADDRESS,
    OP_DOWNSTREAM_REMOTE_ADDRESS,
    OP_REQUESTED_SERVER_NAME,
    OP_ROUTE_NAME,
};

enum arg_kind {
    ARG_NONE,     /* no (...) allowed */
    ARG_HEADER,   /* (X) or (X?Y), required */
    ARG_OPTIONAL, /* (...) optional, free text (START_TIME's strftime pattern) */
};

struct op_desc {
    const char *name;
    enum op op;
    enum arg_kind arg;
    bool strip_port; /* the *_WITHOUT_PORT variants */
};

/* The registry of supported operators (Envoy's names). */
static const struct op_desc op_table[] = {
    {"START_TIME", OP_START_TIME, ARG_OPTIONAL, false},
    {"REQ", OP_REQ, ARG_HEADER, false},
    {"RESP", OP_RESP, ARG_HEADER, false},
    {"REQ_WITHOUT_QUERY", OP_REQ_WITHOUT_QUERY, ARG_HEADER, false},
    {"PROTOCOL", OP_PROTOCOL, ARG_NONE, false},
    {"RESPONSE_CODE", OP_RESPONSE_CODE, ARG_NONE, false},
    {"RESPONSE_FLAGS", OP_RESPONSE_FLAGS, ARG_NONE, false},
    {"RESPONSE_CODE_DETAILS", OP_RESPONSE_CODE_DETAILS, ARG_NONE, false},
    {"CONNECTION_TERMINATION_DETAILS", OP_CONNECTION_TERMINATION_DETAILS, ARG_NONE, false},
    {"UPSTREAM_TRANSPORT_FAILURE_REASON", OP_UPSTREAM_TRANSPORT_FAILURE_REASON, ARG_NONE, false},
    {"BYTES_RECEIVED", OP_BYTES_RECEIVED, ARG_NONE, false},
    {"BYTES_SENT", OP_BYTES_SENT, ARG_NONE, false},
    {"DURATION", OP_DURATION, ARG_NONE, false},
    {"UPSTREAM_HOST", OP_UPSTREAM_HOST, ARG_NONE, false},
    {"UPSTREAM_REMOTE_ADDRESS", OP_UPSTREAM_HOST, ARG_NONE, false},
    {"UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", OP_UPSTREAM_HOST, ARG_NONE, true},
    {"UPSTREAM_CLUSTER", OP_UPSTREAM_CLUSTER, ARG_NONE, false},
    {"UPSTREAM_CLUSTER_RAW", OP_UPSTREAM_CLUSTER, ARG_NONE, false},
    {"UPSTREAM_LOCAL_ADDRESS", OP_UPSTREAM_LOCAL_ADDRESS, ARG_NONE, false},
    {"UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", OP_UPSTREAM_LOCAL_ADDRESS, ARG_NONE, true},
    {"DOWNSTREAM_LOCAL_ADDRESS", OP_DOWNSTREAM_LOCAL_ADDRESS, ARG_NONE, false},
    {"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", OP_DOWNSTREAM_LOCAL_ADDRESS, ARG_NONE, true},
    {"DOWNSTREAM_REMOTE_ADDRESS", OP_DOWNSTREAM_REMOTE_ADDRESS, ARG_NONE, false},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", OP_DOWNSTREAM_REMOTE_ADDRESS, ARG_NONE, true},
    {"REQUESTED_SERVER_NAME", OP_REQUESTED_SERVER_NAME, ARG_NONE, false},
    {"ROUTE_NAME", OP_ROUTE_NAME, ARG_NONE, false},
};
#define NOPS (sizeof(op_table) / sizeof(op_table[0]))

/* One piece of a template. */
struct seg {
    enum op op;
    bool strip_port;
    const char *text; /* OP_LITERAL: the bytes; OP_START_TIME: the pattern or NULL */
    size_t text_n;
    const char *hdr, *alt; /* header operators: X and Y of (X?Y), NUL-terminated; alt may be NULL */
    size_t max_len;        /* SIZE_MAX: no limit */
};

/* One key of a JSON format: a template, or a raw JSON constant (number, true, false, null). */
struct jfield {
    const char *key;
    size_t key_n;
    const struct seg *segs;
    size_t nsegs;
    const char *raw;
    size_t raw_n;
};

struct keel_accesslog_format {
    struct keel_arena *arena;
    bool json;
    const struct seg *segs; /* TEXT */
    size_t nsegs;
    struct jfield *fields; /* JSON, sorted by key */
    size_t nfields;
};

/* ---- compile ---------------------------------------------------------------------------------------------------- */

static _Thread_local char err_text[320];

static const char *set_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *set_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_text, sizeof(err_text), fmt, ap);
    va_end(ap);
    return err_text;
}

static bool is_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static const struct op_desc *find_op(const char *name, size_t n)
{
    for (size_t i = 0; i < NOPS; i++)
        if (strlen(op_table[i].name) == n && memcmp(op_table[i].name, name, n) == 0)
            return &op_table[i];
    return NULL;
}

static const char *suggest_op(const char *name)
{
    const char *best = NULL;
    unsigned best_d = 4;
    for (size_t i = 0; i < NOPS; i++) {
        unsigned d = keel_str_edit_distance(name, op_table[i].name, best_d);
        if (d < best_d) {
            best_d = d;
            best = op_table[i].name;
        }
    }
    return best;
}

/*
 * Compiles fmt[0..n) into segs (room for at least count('%') + 1 of them). The grammar is Envoy's:
 * %NAME%, %NAME(arg)%, %NAME(arg):LEN%, NAME in [A-Z0-9_]+, arg without ')'; "%%" is a literal '%'.
 * Returns the number of segments, or -1 with *err set.
 */
static long compile_template(struct keel_arena *ar, const char *fmt, size_t n, struct seg *segs, const char **err)
{
    char *lit = keel_arena_xalloc(ar, n + 1); /* literal bytes, "%%" collapsed */
    size_t lit_n = 0, lit_start = 0, nsegs = 0;
    size_t i = 0;
    while (i < n) {
        if (fmt[i] != '%') {
            lit[lit_n++] = fmt[i++];
            continue;
        }
        if (i + 1 < n && fmt[i + 1] == '%') {
            lit[lit_n++] = '%';
            i += 2;
            continue;
        }
        size_t at = i, j = i + 1;
        while (j < n && is_name_char(fmt[j]))
            j++;
        if (j == at + 1) {
            *err = set_err("invalid access log format at offset %zu: '%%' must start a command operator such as "
                           "%%START_TIME%%; write %%%% for a literal '%%'",
                           at);
            return -1;
        }
        char name[64];
        size_t name_n = j - at - 1;
        snprintf(name, sizeof(name), "%.*s", (int)(name_n < 63 ? name_n : 63), fmt + at + 1);
        const char *arg = NULL;
        size_t arg_n = 0;
        if (j < n && fmt[j] == '(') {
            arg = fmt + j + 1;
            const char *close = memchr(arg, ')', n - j - 1);
            if (!close) {
                *err = set_err("invalid access log format at offset %zu: %%%s( has no closing ')'", at, name);
                return -1;
            }
            arg_n = (size_t)(close - arg);
            j = (size_t)(close - fmt) + 1;
        }
        size_t max_len = SIZE_MAX;
        if (j < n && fmt[j] == ':') {
            size_t d = ++j;
            uint64_t v = 0;
            while (j < n && fmt[j] >= '0' && fmt[j] <= '9' && v < 100000000)
                v = v * 10 + (uint64_t)(fmt[j++] - '0');
            if (j == d || (j < n && fmt[j] >= '0' && fmt[j] <= '9')) {
                *err = set_err("invalid access log format at offset %zu: the length after %%%s...: must be a decimal "
                               "number below 100000000",
                               at, name);
                return -1;
            }
            max_len = (size_t)v;
        }
        if (j >= n || fmt[j] != '%') {
            *err = set_err("invalid access log format at offset %zu: command operator %%%s is not terminated by '%%'",
                           at, name);
            return -1;
        }
        const struct op_desc *d = find_op(fmt + at + 1, name_n);
        if (!d) {
            const char *s = suggest_op(name);
            if (s)
                *err = set_err("Not supported field in StreamInfo: %s (access log format offset %zu; did you mean "
                               "%%%s%%?)",
                               name, at, s);
            else
                *err = set_err("Not supported field in StreamInfo: %s (access log format offset %zu)", name, at);
            return -1;
        }
        if (d->arg == ARG_NONE && arg) {
            *err = set_err("invalid access log format at offset %zu: %%%s%% takes no argument", at, name);
            return -1;
        }
        if (d->arg == ARG_HEADER && arg_n == 0) {
            *err = set_err("invalid access log format at offset %zu: %%%s(...)%% needs a header name, e.g. "
                           "%%%s(X-REQUEST-ID)%%",
                           at, name, name);
            return -1;
        }
        struct seg *s;
        if (lit_n > lit_start) {
            s = &segs[nsegs++];
            s->op = OP_LITERAL;
            s->text = lit + lit_start;
            s->text_n = lit_n - lit_start;
            s->max_len = SIZE_MAX;
            lit_start = lit_n;
        }
        s = &segs[nsegs++];
        s->op = d->op;
        s->strip_port = d->strip_port;
        s->max_len = max_len;
        if (d->arg == ARG_HEADER) {
            const char *q = memchr(arg, '?', arg_n);
            size_t xn = q ? (size_t)(q - arg) : arg_n;
            if (xn == 0 || (q && (size_t)(q - arg) + 1 == arg_n) || (q && memchr(q + 1, '?', arg_n - xn - 1))) {
                *err = set_err("invalid access log format at offset %zu: %%%s(%.*s)%% must name a header X or "
                               "X?Y (Y when X is absent)",
                               at, name, (int)(arg_n > 100 ? 100 : arg_n), arg);
                return -1;
            }
            s->hdr = keel_arena_strndup(ar, arg, xn);
            if (q)
                s->alt = keel_arena_strndup(ar, q + 1, arg_n - xn - 1);
        } else if (arg && arg_n) {
            if (arg_n >= KEEL_ACCESSLOG_MAX_TIME) {
                *err = set_err("invalid access log format at offset %zu: %%%s(...)%% pattern longer than %d bytes", at,
                               name, KEEL_ACCESSLOG_MAX_TIME - 1);
                return -1;
            }
            s->text = keel_arena_strndup(ar, arg, arg_n);
            s->text_n = arg_n;
        }
        i = j + 1;
    }
    if (lit_n > lit_start) {
        struct seg *s = &segs[nsegs++];
        s->op = OP_LITERAL;
        s->text = lit + lit_start;
        s->text_n = lit_n - lit_start;
        s->max_len = SIZE_MAX;
    }
    return (long)nsegs;
}

static struct seg *alloc_segs(struct keel_arena *ar, const char *fmt, size_t n)
{
    size_t count = 1;
    for (size_t i = 0; i < n; i++)
        count += fmt[i] == '%';
    return keel_arena_xalloc(ar, count * sizeof(struct seg));
}

/* ---- a minimal JSON object reader for JSON formats (flat object; string, number, true/false/null values) ----- */

struct jreader {
    const char *p, *end, *start;
    struct keel_arena *ar;
    const char *err;
};

static void jws(struct jreader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static bool jfail(struct jreader *r, const char *what)
{
    if (!r->err)
        r->err = set_err("invalid JSON access log format at offset %zu: %s", (size_t)(r->p - r->start), what);
    return false;
}

static bool jhex4(struct jreader *r, unsigned *out)
{
    if (r->end - r->p < 4)
        return jfail(r, "truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = keel_hex_value((unsigned char)r->p[k]);
        if (h < 0)
            return jfail(r, "bad \\u escape");
        v = v * 16 + (unsigned)h;
    }
    r->p += 4;
    *out = v;
    return true;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Reads a string literal at r->p into an arena copy (decoded; the decoded form is never longer than the source). */
static bool jstring(struct jreader *r, const char **out, size_t *out_n)
{
    if (r->p >= r->end || *r->p != '"')
        return jfail(r, "expected a string");
    r->p++;
    char *o = keel_arena_xalloc(r->ar, (size_t)(r->end - r->p) + 1);
    size_t n = 0;
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p;
        if (c < 0x20)
            return jfail(r, "control character in a string");
        if (c != '\\') {
            o[n++] = (char)c;
            r->p++;
            continue;
        }
        if (++r->p >= r->end)
            break;
        char e = *r->p++;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            o[n++] = e;
            break;
        case 'b':
            o[n++] = '\b';
            break;
        case 'f':
            o[n++] = '\f';
            break;
        case 'n':
            o[n++] = '\n';
            break;
        case 'r':
            o[n++] = '\r';
            break;
        case 't':
            o[n++] = '\t';
            break;
        case 'u': {
            unsigned cp;
            if (!jhex4(r, &cp))
                return false;
            if (cp >= 0xd800 && cp < 0xdc00) {
                unsigned lo;
                if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u')
                    return jfail(r, "unpaired surrogate in \\u escape");
                r->p += 2;
                if (!jhex4(r, &lo))
                    return false;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return jfail(r, "unpaired surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return jfail(r, "unpaired surrogate in \\u escape");
            }
            if (cp == 0)
                return jfail(r, "\\u0000 in a string");
            n += put_utf8(o + n, cp);
            break;
        }
        default:
            r->p--;
            return jfail(r, "bad escape in a string");
        }
    }
    if (r->p >= r->end)
        return jfail(r, "unterminated string");
    r->p++;
    o[n] = '\0';
    *out = o;
    *out_n = n;
    return true;
}

/* A number, true, false or null: returns its source text. */
static bool jconst(struct jreader *r, const char **out, size_t *out_n)
{
    const char *s = r->p;
    static const char *const words[] = {"true", "false", "null"};
    for (size_t k = 0; k < 3; k++) {
        size_t wn = strlen(words[k]);
        if ((size_t)(r->end - r->p) >= wn && memcmp(r->p, words[k], wn) == 0) {
            r->p += wn;
            *out = s;
            *out_n = wn;
            return true;
        }
    }
    /* JSON number: -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)? */
    const char *p = r->p;
    if (p < r->end && *p == '-')
        p++;
    if (p >= r->end || *p < '0' || *p > '9')
        return jfail(r, *r->p == '{' || *r->p == '[' ? "nested objects and arrays are not supported in an access log "
                                                       "format; use a flat object of strings"
                                                     : "expected a string, a number, true, false or null");
    if (*p == '0')
        p++;
    else
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
    if (p < r->end && *p == '.') {
        const char *d = ++p;
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
        if (p == d)
            return jfail(r, "bad number");
    }
    if (p < r->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < r->end && (*p == '+' || *p == '-'))
            p++;
        const char *d = p;
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
        if (p == d)
            return jfail(r, "bad number");
    }
    r->p = p;
    *out = s;
    *out_n = (size_t)(p - s);
    return true;
}

static int cmp_field(const void *a, const void *b)
{
    const struct jfield *x = a, *y = b;
    size_t n = x->key_n < y->key_n ? x->key_n : y->key_n;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->key_n > y->key_n) - (x->key_n < y->key_n);
}

static bool compile_json(struct keel_accesslog_format *f, const char *fmt, size_t n, const char **err)
{
    struct jreader r = {.p = fmt, .end = fmt + n, .start = fmt, .ar = f->arena};
    struct jfield *fields = keel_arena_xalloc(f->arena, KEEL_ACCESSLOG_MAX_JSON_KEYS * sizeof(*fields));
    size_t nf = 0;
    jws(&r);
    if (r.p >= r.end || *r.p != '{') {
        jfail(&r, "expected a JSON object such as {\"code\": \"%RESPONSE_CODE%\"}");
        goto fail;
    }
    r.p++;
    jws(&r);
    if (r.p < r.end && *r.p == '}') {
        r.p++;
    } else {
        for (;;) {
            jws(&r);
            if (nf == KEEL_ACCESSLOG_MAX_JSON_KEYS) {
                jfail(&r, "too many keys");
                goto fail;
            }
            struct jfield *fd = &fields[nf];
            if (!jstring(&r, &fd->key, &fd->key_n))
                goto fail;
            for (size_t k = 0; k < nf; k++)
                if (fields[k].key_n == fd->key_n && memcmp(fields[k].key, fd->key, fd->key_n) == 0) {
                    r.err = set_err("invalid JSON access log format: duplicate key \"%s\"", fd->key);
                    goto fail;
                }
            jws(&r);
            if (r.p >= r.end || *r.p != ':') {
                jfail(&r, "expected ':' after a key");
                goto fail;
            }
            r.p++;
            jws(&r);
            if (r.p < r.end && *r.p == '"') {
                const char *v;
                size_t vn;
                if (!jstring(&r, &v, &vn))
                    goto fail;
                struct seg *segs = alloc_segs(f->arena, v, vn);
                long ns = compile_template(f->arena, v, vn, segs, err);
                if (ns < 0)
                    return false;
                fd->segs = segs;
                fd->nsegs = (size_t)ns;
            } else if (!jconst(&r, &fd->raw, &fd->raw_n)) {
                goto fail;
            }
            nf++;
            jws(&r);
            if (r.p < r.end && *r.p == ',') {
                r.p++;
                continue;
            }
            if (r.p < r.end && *r.p == '}') {
                r.p++;
                break;
            }
            jfail(&r, "expected ',' or '}'");
            goto fail;
        }
    }
    jws(&r);
    if (r.p != r.end) {
        jfail(&r, "unexpected text after the object");
        goto fail;
    }
    qsort(fields, nf, sizeof(*fields), cmp_field);
    f->fields = fields;
    f->nfields = nf;
    return true;
fail:
    *err = r.err;
    return false;
}

/* Istio's EnvoyTextLogFormat (pilot/pkg/model/telemetry_logging.go). */
static const char istio_text_format[] =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% "
    "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% "
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% "
    "%ROUTE_NAME%\n";

/* Istio's EnvoyJSONLogFormatIstio (same file). */
static const char istio_json_format[] = "{"
                                        "\"start_time\": \"%START_TIME%\","
                                        "\"route_name\": \"%ROUTE_NAME%\","
                                        "\"method\": \"%REQ(:METHOD)%\","
                                        "\"path\": \"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%\","
                                        "\"protocol\": \"%PROTOCOL%\","
                                        "\"response_code\": \"%RESPONSE_CODE%\","
                                        "\"response_flags\": \"%RESPONSE_FLAGS%\","
                                        "\"response_code_details\": \"%RESPONSE_CODE_DETAILS%\","
                                        "\"connection_termination_details\": \"%CONNECTION_TERMINATION_DETAILS%\","
                                        "\"bytes_received\": \"%BYTES_RECEIVED%\","
                                        "\"bytes_sent\": \"%BYTES_SENT%\","
                                        "\"duration\": \"%DURATION%\","
                                        "\"upstream_service_time\": \"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%\","
                                        "\"x_forwarded_for\": \"%REQ(X-FORWARDED-FOR)%\","
                                        "\"user_agent\": \"%REQ(USER-AGENT)%\","
                                        "\"request_id\": \"%REQ(X-REQUEST-ID)%\","
                                        "\"authority\": \"%REQ(:AUTHORITY)%\","
                                        "\"upstream_host\": \"%UPSTREAM_HOST%\","
                                        "\"upstream_cluster\": \"%UPSTREAM_CLUSTER_RAW%\","
                                        "\"upstream_local_address\": \"%UPSTREAM_LOCAL_ADDRESS%\","
                                        "\"downstream_local_address\": \"%DOWNSTREAM_LOCAL_ADDRESS%\","
                                        "\"downstream_remote_address\": \"%DOWNSTREAM_REMOTE_ADDRESS%\","
                                        "\"requested_server_name\": \"%REQUESTED_SERVER_NAME%\","
                                        "\"upstream_transport_failure_reason\": "
                                        "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\""
                                        "}";

struct keel_accesslog_format *keel_accesslog_format_new(const char *format, bool encoding_json, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    bool dflt = keel_cstr_empty(format);
    const char *fmt = dflt ? (encoding_json ? istio_json_format : istio_text_format) : format;
    size_t n = strlen(fmt);
    if (n > KEEL_ACCESSLOG_MAX_FORMAT) {
        *err = set_err("access log format is %zu bytes long; the limit is %d", n, KEEL_ACCESSLOG_MAX_FORMAT);
        return NULL;
    }
    struct keel_arena *ar = keel_arena_new(0);
    if (!ar) {
        *err = "out of memory";
        return NULL;
    }
    struct keel_accesslog_format *f = keel_arena_xalloc(ar, sizeof(*f));
    f->arena = ar;
    f->json = encoding_json;
    if (encoding_json) {
        if (!compile_json(f, fmt, n, err))
            goto fail;
        return f;
    }
    /* Istio appends the newline to a TEXT format that lacks one (telemetry_logging.go). */
    if (n == 0 || fmt[n - 1] != '\n') {
        char *copy = keel_arena_xalloc(ar, n + 2);
        memcpy(copy, fmt, n);
        copy[n++] = '\n';
        fmt = copy;
    }
    struct seg *segs = alloc_segs(ar, fmt, n);
    long ns = compile_template(ar, fmt, n, segs, err);
    if (ns < 0)
        goto fail;
    f->segs = segs;
    f->nsegs = (size_t)ns;
    return f;
fail:
    keel_arena_free(ar);
    return NULL;
}

void keel_accesslog_format_free(struct keel_accesslog_format *f)
{
    if (f)
        keel_arena_free(f->arena);
}

/* ---- render ----------------------------------------------------------------------------------------------------- */

enum vkind { V_MISSING, V_STR, V_NUM };

/* One evaluated operator: up to three borrowed slices (or tmp's bytes). */
struct val {
    enum vkind kind;
    size_t nparts;
    struct keel_str part[3];
    char tmp[KEEL_ACCESSLOG_MAX_TIME];
};

static void v_str(struct val *v, const char *p, size_t n)
{
    v->kind = V_STR;
    v->part[0] = (struct keel_str){p, n};
    v->nparts = 1;
}

/* A C string field: NULL or "" is missing (Envoy renders those "-"). */
static void v_cstr(struct val *v, const char *s)
{
    if (s && *s)
        v_str(v, s, strlen(s));
}

static void v_u64(struct val *v, uint64_t x)
{
    int n = snprintf(v->tmp, sizeof(v->tmp), "%" PRIu64, x);
    v_str(v, v->tmp, (size_t)n);
    v->kind = V_NUM;
}

static void v_i64(struct val *v, int64_t x)
{
    int n = snprintf(v->tmp, sizeof(v->tmp), "%" PRId64, x);
    v_str(v, v->tmp, (size_t)n);
    v->kind = V_NUM;
}

/* "1.2.3.4:80" -> "1.2.3.4", "[::1]:80" -> "::1"; anything without a port is kept. */
static struct keel_str strip_port(struct keel_str s)
{
    if (s.n && s.p[0] == '[') {
        const char *close = memchr(s.p, ']', s.n);
        if (close)
            return (struct keel_str){s.p + 1, (size_t)(close - s.p - 1)};
        return s;
    }
    const char *colon = NULL;
    for (size_t i = 0; i < s.n; i++)
        if (s.p[i] == ':') {
            if (colon) /* bare IPv6 without brackets: no port to strip */
                return s;
            colon = s.p + i;
        }
    return colon ? (struct keel_str){s.p, (size_t)(colon - s.p)} : s;
}

static void split_civil(int64_t ms, struct tm *tm, int64_t *frac_ms)
{
    int64_t secs = ms / 1000, frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        secs--;
    }
    time_t t = (time_t)secs;
    gmtime_r(&t, tm);
    *frac_ms = frac;
}

/* Envoy's default START_TIME: "2026-01-02T03:04:05.678Z". */
static void v_start_time(struct val *v, int64_t ms)
{
    struct tm tm;
    int64_t frac;
    split_civil(ms, &tm, &frac);
    int n = snprintf(v->tmp, sizeof(v->tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    v_str(v, v->tmp, (size_t)n);
}

/* %START_TIME(pattern)%: strftime plus Envoy's extensions %s (epoch seconds), %f / %Nf (fraction, N digits, the
 * time is kept in ms so digits past the third are 0) and %EnS (seconds with n decimals). */
static void v_start_time_fmt(struct val *v, int64_t ms, const char *pat)
{
    struct tm tm;
    int64_t frac;
    split_civil(ms, &tm, &frac);
    char pre[KEEL_ACCESSLOG_MAX_TIME * 2];
    size_t o = 0;
    for (const char *p = pat; *p && o + 32 < sizeof(pre); p++) {
        if (p[0] != '%' || !p[1]) {
            pre[o++] = *p;
            continue;
        }
        int digits = -1;
        const char *q = p + 1;
        bool secs_too = false;
        if (*q == 's') {
            int64_t secs = (ms - frac) / 1000;
            o += (size_t)snprintf(pre + o, sizeof(pre) - o, "%" PRId64, secs);
            p = q;
            continue;
        }
        if (*q == 'f') {
            digits = 9;
        } else if (*q >= '1' && *q <= '9' && q[1] == 'f') {
            digits = *q - '0';
            q++;
        } else if (*q == 'E' && q[1] >= '1' && q[1] <= '9' && q[2] == 'S') {
            digits = q[1] - '0';
            secs_too = true;
            q += 2;
        }
        if (digits < 0) { /* plain strftime conversion (or "%%"): copy both bytes */
            pre[o++] = p[0];
            pre[o++] = p[1];
            p++;
            continue;
        }
        char fr[16];
        snprintf(fr, sizeof(fr), "%03d000000", (int)frac);
        if (secs_too)
            o += (size_t)snprintf(pre + o, sizeof(pre) - o, "%02d.%.*s", tm.tm_sec, digits, fr);
        else
            o += (size_t)snprintf(pre + o, sizeof(pre) - o, "%.*s", digits, fr);
        p = q;
    }
    pre[o] = '\0';
    size_t n = o ? strftime(v->tmp, sizeof(v->tmp), pre, &tm) : 0;
    if (n > 0)
        v_str(v, v->tmp, n);
}

/* A pseudo-header or header of a request/response head. */
static void v_header(struct val *v, const struct keel_http_head *h, const char *name, bool is_req, bool no_query)
{
    if (!h)
        return;
    if (name[0] == ':') {
        if (is_req && keel_cstr_caseeq(name, ":method")) {
            if (h->method.n)
                v_str(v, h->method.p, h->method.n);
        } else if (is_req && keel_cstr_caseeq(name, ":path")) {
            if (!h->path.n)
                return;
            v_str(v, h->path.p, h->path.n);
            if (h->query.n && !no_query) {
                v->part[1] = (struct keel_str){"?", 1};
                v->part[2] = h->query;
                v->nparts = 3;
            }
        } else if (is_req && keel_cstr_caseeq(name, ":authority")) {
            if (h->authority.n)
                v_str(v, h->authority.p, h->authority.n);
        } else if (is_req && keel_cstr_caseeq(name, ":scheme")) {
            if (h->scheme.n)
                v_str(v, h->scheme.p, h->scheme.n);
        } else if (!is_req && keel_cstr_caseeq(name, ":status")) {
            if (h->status > 0) {
                v_i64(v, h->status);
                v->kind = V_STR; /* a header value, even though it is digits */
            }
        }
        return;
    }
    const struct keel_str *val = keel_http_head_get(h, name);
    if (!val && is_req && keel_cstr_caseeq(name, "host") && h->authority.n)
        val = &h->authority; /* HTTP/2 has no Host field: Envoy maps Host to :authority */
    if (!val)
        return;
    struct keel_str s = *val;
    if (no_query) {
        const char *q = memchr(s.p, '?', s.n);
        if (q)
            s.n = (size_t)(q - s.p);
    }
    v_str(v, s.p, s.n);
}

static void eval(const struct seg *s, const struct keel_accesslog_entry *e, struct val *v)
{
    v->kind = V_MISSING;
    v->nparts = 0;
    switch (s->op) {
    case OP_LITERAL:
        v_str(v, s->text, s->text_n);
        break;
    case OP_START_TIME:
        if (s->text)
            v_start_time_fmt(v, e->start_unix_ms, s->text);
        else
            v_start_time(v, e->start_unix_ms);
        break;
    case OP_REQ:
    case OP_REQ_WITHOUT_QUERY:
        v_header(v, e->req, s->hdr, true, s->op == OP_REQ_WITHOUT_QUERY);
        if (v->kind == V_MISSING && s->alt)
            v_header(v, e->req, s->alt, true, s->op == OP_REQ_WITHOUT_QUERY);
        break;
    case OP_RESP:
        /* Keel measures the upstream service time itself instead of reading back the header it adds. */
        if (keel_cstr_caseeq(s->hdr, "x-envoy-upstream-service-time") && e->upstream_service_time_ms >= 0) {
            v_i64(v, e->upstream_service_time_ms);
            v->kind = V_STR; /* a header value: a JSON string, as in Envoy */
            break;
        }
        v_header(v, e->resp, s->hdr, false, false);
        if (v->kind == V_MISSING && s->alt)
            v_header(v, e->resp, s->alt, false, false);
        break;
    case OP_PROTOCOL:
        if (e->protocol.n)
            v_str(v, e->protocol.p, e->protocol.n);
        break;
    case OP_RESPONSE_CODE:
        v_i64(v, e->response_code);
        break;
    case OP_RESPONSE_FLAGS:
        break; /* rendered by the caller straight into the output */
    case OP_RESPONSE_CODE_DETAILS:
        v_cstr(v, e->response_code_details);
        break;
    case OP_CONNECTION_TERMINATION_DETAILS:
        v_cstr(v, e->termination_details);
        break;
    case OP_UPSTREAM_TRANSPORT_FAILURE_REASON:
        v_cstr(v, e->upstream_failure);
        break;
    case OP_BYTES_RECEIVED:
        v_u64(v, e->bytes_received);
        break;
    case OP_BYTES_SENT:
        v_u64(v, e->bytes_sent);
        break;
    case OP_DURATION:
        if (e->duration_ms >= 0)
            v_i64(v, e->duration_ms);
        break;
    case OP_UPSTREAM_HOST:
        v_cstr(v, e->upstream_host);
        break;
    case OP_UPSTREAM_CLUSTER:
        v_cstr(v, e->upstream_cluster);
        break;
    case OP_UPSTREAM_LOCAL_ADDRESS:
        v_cstr(v, e->upstream_local_address);
        break;
    case OP_DOWNSTREAM_LOCAL_ADDRESS:
        v_cstr(v, e->downstream_local_address);
        break;
    case OP_DOWNSTREAM_REMOTE_ADDRESS:
        v_cstr(v, e->downstream_remote_address);
        break;
    case OP_REQUESTED_SERVER_NAME:
        v_cstr(v, e->requested_server_name);
        break;
    case OP_ROUTE_NAME:
        v_cstr(v, e->route_name);
        break;
    }
    if (s->strip_port && v->kind == V_STR)
        v->part[0] = strip_port(v->part[0]);
}

/* Appends s, JSON-escaped (no quotes). */
static int put_json_bytes(struct keel_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    int rc = 0;
    size_t run = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
            continue;
        rc = keel_buf_append(out, s + run, i - run);
        run = i + 1;
        if (rc)
            break;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        switch (c) {
        case '"':
            rc = keel_buf_append(out, "\\\"", 2);
            break;
        case '\\':
            rc = keel_buf_append(out, "\\\\", 2);
            break;
        case '\n':
            rc = keel_buf_append(out, "\\n", 2);
            break;
        case '\r':
            rc = keel_buf_append(out, "\\r", 2);
            break;
        case '\t':
            rc = keel_buf_append(out, "\\t", 2);
            break;
        default:
            rc = keel_buf_append(out, esc, 6);
        }
    }
    return rc ? rc : keel_buf_append(out, s + run, n - run);
}

/* Appends the value's parts, at most max bytes in all, raw or JSON-escaped. */
static int put_parts(struct keel_buf *out, const struct val *v, size_t max, bool json)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < v->nparts && max; i++) {
        size_t n = v->part[i].n < max ? v->part[i].n : max;
        rc = json ? put_json_bytes(out, v->part[i].p, n) : keel_buf_append(out, v->part[i].p, n);
        max -= n;
    }
    return rc;
}

/* Response flags, cut to max bytes (JSON-escaping is never needed: flags are letters and commas). */
static int put_flags(struct keel_buf *out, uint32_t flags, size_t max)
{
    size_t start = out->len;
    int rc = keel_response_flags_format(flags, out);
    if (!rc && out->len - start > max) {
        out->len = start + max;
        out->data[out->len] = '\0';
    }
    return rc;
}

/* Renders segs as text ("-" for missing values), JSON-escaped when json (inside a JSON string). */
static int put_template(struct keel_buf *out, const struct seg *segs, size_t n, const struct keel_accesslog_entry *e,
                        bool json)
{
    int rc = 0;
    struct val v;
    for (size_t i = 0; !rc && i < n; i++) {
        const struct seg *s = &segs[i];
        if (s->op == OP_RESPONSE_FLAGS) {
            rc = put_flags(out, e->flags, s->max_len);
            continue;
        }
        eval(s, e, &v);
        if (v.kind == V_MISSING)
            rc = keel_buf_putc(out, '-');
        else
            rc = put_parts(out, &v, s->max_len, json);
    }
    return rc;
}

static int render_json(const struct keel_accesslog_format *f, const struct keel_accesslog_entry *e,
                       struct keel_buf *out)
{
    int rc = keel_buf_putc(out, '{');
    struct val v;
    for (size_t i = 0; !rc && i < f->nfields; i++) {
        const struct jfield *fd = &f->fields[i];
        if (i)
            rc = keel_buf_putc(out, ',');
        if (!rc)
            rc = keel_buf_putc(out, '"');
        if (!rc)
            rc = put_json_bytes(out, fd->key, fd->key_n);
        if (!rc)
            rc = keel_buf_append(out, "\":", 2);
        if (rc)
            break;
        if (fd->raw) {
            rc = keel_buf_append(out, fd->raw, fd->raw_n);
        } else if (fd->nsegs == 1 && fd->segs[0].op != OP_LITERAL && fd->segs[0].op != OP_RESPONSE_FLAGS) {
            /* exactly one operator: typed value */
            eval(&fd->segs[0], e, &v);
            if (v.kind == V_MISSING) {
                rc = keel_buf_append(out, "null", 4);
            } else if (v.kind == V_NUM && fd->segs[0].max_len == SIZE_MAX) {
                rc = put_parts(out, &v, SIZE_MAX, false);
            } else {
                rc = keel_buf_putc(out, '"');
                if (!rc)
                    rc = put_parts(out, &v, fd->segs[0].max_len, true);
                if (!rc)
                    rc = keel_buf_putc(out, '"');
            }
        } else {
            rc = keel_buf_putc(out, '"');
            if (!rc)
                rc = put_template(out, fd->segs, fd->nsegs, e, true);
            if (!rc)
                rc = keel_buf_putc(out, '"');
        }
    }
    return rc ? rc : keel_buf_append(out, "}\n", 2);
}

int keel_accesslog_render(const struct keel_accesslog_format *f, const struct keel_accesslog_entry *e,
                          struct keel_buf *out)
{
    size_t start = out->len;
    int rc = f->json ? render_json(f, e, out) : put_template(out, f->segs, f->nsegs, e, false);
    if (rc) { /* no partial line */
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

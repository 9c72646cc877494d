/*
 * validate_telemetry.c - istiod's rules for Telemetry, WasmPlugin and
 * TrafficExtension.
 *
 * Ports ValidateTelemetry (tracing, metrics overrides, access-log filters),
 * ValidateWasmPlugin and ValidateTrafficExtension from istio/istio
 * pkg/config/validation, together with the object-level CEL rules of their
 * CRDs that the schema decoder cannot express (selector/targetRef
 * exclusivity, tagOverrides value versus operation, the Wasm URL scheme rule,
 * env valueFrom, wasm xor lua). istiod's wording is kept; where the CRD and
 * the webhook phrase one mistake differently a single diagnostic carries
 * both texts. The metadata and selector/targetRef checks are shared with the
 * security kinds: keel_vcheck_annotations() and keel_vcheck_attachment()
 * (validate_common.h).
 *
 * A small parser lives here because istiod calls library code for it: a
 * syntax-only parser for CEL access-log filters (cel-go's Parse: grammar,
 * literals, reserved words and the has()/comprehension macro argument
 * rules), bounded in depth so hostile input cannot exhaust the stack; it
 * works on the stack and keeps no state. Wasm module URLs go through Go's
 * net/url rules (config/url.h) the way strictParseURL and the Kubernetes
 * isURL() CEL function apply them. Pointers from the decoder may be NULL
 * whenever decoding reported a problem, so everything is checked before use.
 */
#include "config/validate.h"

#include "config/url.h"
#include "config/validate_common.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static bool empty(const char *s)
{
    return !s || !*s;
}

/* ---- CEL syntax (cel-go parser.Parse) -------------------------------------- */

enum tok {
    T_EOF,
    T_ERR,
    T_IDENT,
    T_INT,
    T_UINT,
    T_FLOAT,
    T_STRING,
    T_BYTES,
    T_TRUE,
    T_FALSE,
    T_NULL,
    T_PUNCT, /* operators and punctuation; text in tok_text */
};

#define CEL_MAX_DEPTH 250          /* cel-go parser default maxRecursionDepth */
#define CEL_MAX_CODE_POINTS 100000 /* cel-go default expression size limit */

struct cel {
    const char *src;
    size_t pos;    /* scanner position */
    enum tok t;    /* current token */
    size_t tstart; /* its offset */
    size_t tlen;   /* its length */
    int depth;     /* recursion depth of the parser */
    char err[200]; /* first error */
};

static void cel_error(struct cel *c, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cel_error(struct cel *c, size_t at, const char *fmt, ...)
{
    if (c->err[0])
        return;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && c->src[i]; i++) {
        if (c->src[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    char detail[150];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    snprintf(c->err, sizeof(c->err), "ERROR: <input>:%zu:%zu: Syntax error: %s", line, col, detail);
}

static bool tok_is(const struct cel *c, const char *p)
{
    return c->t == T_PUNCT && strlen(p) == c->tlen && strncmp(c->src + c->tstart, p, c->tlen) == 0;
}

/* Scans a quoted string starting at c->pos (after any r/b prefix). */
static bool cel_scan_string(struct cel *c, bool raw)
{
    const char *s = c->src;
    char q = s[c->pos];
    bool triple = s[c->pos + 1] == q && s[c->pos + 2] == q;
    c->pos += triple ? 3 : 1;
    for (;;) {
        char ch = s[c->pos];
        if (ch == '\0') {
            cel_error(c, c->tstart, "token recognition error at: '%.20s'", s + c->tstart);
            return false;
        }
        if (triple) {
            if (ch == q && s[c->pos + 1] == q && s[c->pos + 2] == q) {
                c->pos += 3;
                return true;
            }
        } else {
            if (ch == q) {
                c->pos++;
                return true;
            }
            if (ch == '\n' || ch == '\r') {
                cel_error(c, c->tstart, "token recognition error at: '%.20s'", s + c->tstart);
                return false;
            }
        }
        if (ch == '\\' && !raw) {
            char e = s[c->pos + 1];
            size_t need = 0;
            if (strchr("abfnrtv\\'\"`?", e) && e != '\0') {
                c->pos += 2;
                continue;
            }
            if (e >= '0' && e <= '3') {
                for (int k = 1; k <= 2; k++)
                    if (s[c->pos + 1 + k] < '0' || s[c->pos + 1 + k] > '7')
                        goto bad_escape;
                c->pos += 4;
                continue;
            }
            if (e == 'x' || e == 'X')
                need = 2;
            else if (e == 'u')
                need = 4;
            else if (e == 'U')
                need = 8;
            else
                goto bad_escape;
            for (size_t k = 0; k < need; k++)
                if (!isxdigit((unsigned char)s[c->pos + 2 + k]))
                    goto bad_escape;
            c->pos += 2 + need;
            continue;
        bad_escape:
            cel_error(c, c->pos, "token recognition error at: '%.4s'", s + c->pos);
            return false;
        }
        c->pos++;
    }
}

static bool is_reserved(const char *p, size_t n)
{
    static const char *const words[] = {"as",        "break",  "const",  "continue", "else", "for",
                                        "function",  "if",     "import", "let",      "loop", "package",
                                        "namespace", "return", "var",    "void",     "while"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strlen(words[i]) == n && strncmp(words[i], p, n) == 0)
            return true;
    return false;
}

static void cel_next(struct cel *c)
{
    const char *s = c->src;
    for (;;) {
        while (s[c->pos] == ' ' || s[c->pos] == '\t' || s[c->pos] == '\n' || s[c->pos] == '\r' || s[c->pos] == '\f')
            c->pos++;
        if (s[c->pos] == '/' && s[c->pos + 1] == '/') {
            while (s[c->pos] && s[c->pos] != '\n')
                c->pos++;
            continue;
        }
        break;
    }
    c->tstart = c->pos;
    char ch = s[c->pos];
    if (ch == '\0') {
        c->t = T_EOF;
        c->tlen = 0;
        return;
    }
    /* string and bytes literals, with r/R and b/B prefixes */
    size_t p = c->pos;
    bool raw = false, bytes = false;
    for (int k = 0; k < 2; k++) {
        char pc = s[p];
        if ((pc == 'r' || pc == 'R') && !raw)
            raw = true;
        else if ((pc == 'b' || pc == 'B') && !bytes)
            bytes = true;
        else
            break;
        p++;
    }
    if (s[p] == '"' || s[p] == '\'') {
        c->pos = p;
        c->t = cel_scan_string(c, raw) ? (bytes ? T_BYTES : T_STRING) : T_ERR;
        c->tlen = c->pos - c->tstart;
        return;
    }
    if (isalpha((unsigned char)ch) || ch == '_') {
        while (isalnum((unsigned char)s[c->pos]) || s[c->pos] == '_')
            c->pos++;
        c->tlen = c->pos - c->tstart;
        const char *w = s + c->tstart;
        if (c->tlen == 4 && strncmp(w, "true", 4) == 0)
            c->t = T_TRUE;
        else if (c->tlen == 5 && strncmp(w, "false", 5) == 0)
            c->t = T_FALSE;
        else if (c->tlen == 4 && strncmp(w, "null", 4) == 0)
            c->t = T_NULL;
        else if (c->tlen == 2 && strncmp(w, "in", 2) == 0)
            c->t = T_PUNCT;
        else
            c->t = T_IDENT;
        return;
    }
    if (isdigit((unsigned char)ch) || (ch == '.' && isdigit((unsigned char)s[c->pos + 1]))) {
        bool is_float = false;
        if (ch == '0' && (s[c->pos + 1] == 'x' || s[c->pos + 1] == 'X') && isxdigit((unsigned char)s[c->pos + 2])) {
            c->pos += 2;
            while (isxdigit((unsigned char)s[c->pos]))
                c->pos++;
        } else {
            while (isdigit((unsigned char)s[c->pos]))
                c->pos++;
            if (s[c->pos] == '.' && isdigit((unsigned char)s[c->pos + 1])) {
                is_float = true;
                c->pos++;
                while (isdigit((unsigned char)s[c->pos]))
                    c->pos++;
            }
            if (s[c->pos] == 'e' || s[c->pos] == 'E') {
                size_t q = c->pos + 1;
                if (s[q] == '+' || s[q] == '-')
                    q++;
                if (isdigit((unsigned char)s[q])) {
                    is_float = true;
                    c->pos = q;
                    while (isdigit((unsigned char)s[c->pos]))
                        c->pos++;
                }
            }
        }
        c->t = is_float ? T_FLOAT : T_INT;
        if (!is_float && (s[c->pos] == 'u' || s[c->pos] == 'U')) {
            c->pos++;
            c->t = T_UINT;
        }
        c->tlen = c->pos - c->tstart;
        return;
    }
    static const char *const ops[] = {"==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*",
                                      "/",  "%",  "?",  ":",  ".",  ",",  "(", ")", "[", "]", "{", "}"};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        size_t n = strlen(ops[i]);
        if (strncmp(s + c->pos, ops[i], n) == 0) {
            c->pos += n;
            c->tlen = n;
            c->t = T_PUNCT;
            return;
        }
    }
    c->t = T_ERR;
    c->tlen = 1;
    cel_error(c, c->pos, "token recognition error at: '%c'", ch);
}

static void cel_expect(struct cel *c, const char *p)
{
    if (tok_is(c, p))
        cel_next(c);
    else if (c->t == T_EOF)
        cel_error(c, c->tstart, "mismatched input '<EOF>' expecting '%s'", p);
    else
        cel_error(c, c->tstart, "mismatched input '%.*s' expecting '%s'", (int)(c->tlen > 20 ? 20 : c->tlen),
                  c->src + c->tstart, p);
}

/* What the parser knows about a parsed sub-expression, for the macro rules. */
enum shape {
    S_OTHER,
    S_IDENT,  /* a bare identifier */
    S_SELECT, /* operand.field */
};

static enum shape cel_expr(struct cel *c);

/* exprList up to `close`; returns the argument count and records the first argument's shape. */
static int cel_args(struct cel *c, const char *close, enum shape *first, enum shape *last)
{
    int n = 0;
    if (tok_is(c, close)) {
        cel_next(c);
        return 0;
    }
    for (;;) {
        enum shape sh = cel_expr(c);
        if (n == 0 && first)
            *first = sh;
        if (last)
            *last = sh;
        n++;
        if (c->err[0])
            return n;
        if (tok_is(c, ",")) {
            cel_next(c);
            continue;
        }
        cel_expect(c, close);
        return n;
    }
}

/* Macro argument rules enforced by cel-go while parsing. */
static void cel_macro(struct cel *c, size_t at, const char *name, size_t nlen, bool member, int argc, enum shape first)
{
    if (!member && nlen == 3 && strncmp(name, "has", 3) == 0 && argc == 1 && first != S_SELECT)
        cel_error(c, at, "invalid argument to has() macro");
    if (!member)
        return;
    static const struct {
        const char *name;
        int argc;
    } macros[] = {{"all", 2}, {"exists", 2}, {"exists_one", 2}, {"map", 2}, {"map", 3}, {"filter", 2}};
    for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++)
        if (strlen(macros[i].name) == nlen && strncmp(macros[i].name, name, nlen) == 0 && argc == macros[i].argc &&
            first != S_IDENT)
            cel_error(c, at, "argument must be a simple name");
}

/* fieldInitializerList or mapInitializerList up to '}' */
static void cel_inits(struct cel *c, bool fields)
{
    if (tok_is(c, "}")) {
        cel_next(c);
        return;
    }
    for (;;) {
        if (fields) {
            if (c->t != T_IDENT) {
                cel_error(c, c->tstart, "mismatched input '%.*s' expecting IDENTIFIER",
                          (int)(c->tlen > 20 ? 20 : c->tlen), c->src + c->tstart);
                return;
            }
            cel_next(c);
        } else {
            cel_expr(c);
        }
        cel_expect(c, ":");
        cel_expr(c);
        if (c->err[0])
            return;
        if (tok_is(c, ",")) {
            cel_next(c);
            if (tok_is(c, "}")) {
                cel_next(c);
                return;
            }
            continue;
        }
        cel_expect(c, "}");
        return;
    }
}

static enum shape cel_primary(struct cel *c, bool *qualified)
{
    *qualified = false;
    size_t at = c->tstart;
    switch (c->t) {
    case T_INT:
    case T_UINT:
    case T_FLOAT:
    case T_STRING:
    case T_BYTES:
    case T_TRUE:
    case T_FALSE:
    case T_NULL:
        cel_next(c);
        return S_OTHER;
    case T_IDENT: {
        const char *name = c->src + c->tstart;
        size_t nlen = c->tlen;
        if (is_reserved(name, nlen)) {
            cel_error(c, at, "reserved identifier: %.*s", (int)nlen, name);
            return S_OTHER;
        }
        cel_next(c);
        if (tok_is(c, "(")) {
            cel_next(c);
            enum shape first = S_OTHER;
            int argc = cel_args(c, ")", &first, NULL);
            cel_macro(c, at, name, nlen, false, argc, first);
            return S_OTHER;
        }
        *qualified = true;
        return S_IDENT;
    }
    case T_PUNCT:
        if (tok_is(c, ".")) {
            cel_next(c);
            if (c->t != T_IDENT) {
                cel_error(c, c->tstart, "no viable alternative at input '.'");
                return S_OTHER;
            }
            return cel_primary(c, qualified);
        }
        if (tok_is(c, "(")) {
            cel_next(c);
            cel_expr(c);
            cel_expect(c, ")");
            return S_OTHER;
        }
        if (tok_is(c, "[")) {
            cel_next(c);
            if (tok_is(c, "]")) {
                cel_next(c);
                return S_OTHER;
            }
            for (;;) {
                cel_expr(c);
                if (c->err[0])
                    return S_OTHER;
                if (tok_is(c, ",")) {
                    cel_next(c);
                    if (tok_is(c, "]")) {
                        cel_next(c);
                        return S_OTHER;
                    }
                    continue;
                }
                cel_expect(c, "]");
                return S_OTHER;
            }
        }
        if (tok_is(c, "{")) {
            cel_next(c);
            cel_inits(c, false);
            return S_OTHER;
        }
        if (tok_is(c, "?")) {
            cel_error(c, at, "unsupported syntax '?'");
            return S_OTHER;
        }
        break;
    case T_EOF:
        cel_error(c, at, "mismatched input '<EOF>' expecting an expression");
        return S_OTHER;
    default:
        break;
    }
    if (!c->err[0])
        cel_error(c, at, "mismatched input '%.*s' expecting an expression", (int)(c->tlen > 20 ? 20 : c->tlen),
                  c->src + c->tstart);
    return S_OTHER;
}

static enum shape cel_member(struct cel *c)
{
    bool qualified;
    enum shape sh = cel_primary(c, &qualified);
    while (!c->err[0]) {
        if (tok_is(c, ".")) {
            size_t at = c->tstart;
            cel_next(c);
            if (tok_is(c, "?")) {
                cel_error(c, c->tstart, "unsupported syntax '.?'");
                break;
            }
            if (c->t != T_IDENT) {
                cel_error(c, c->tstart, "no viable alternative at input '.%.*s'", (int)(c->tlen > 20 ? 20 : c->tlen),
                          c->src + c->tstart);
                break;
            }
            const char *name = c->src + c->tstart;
            size_t nlen = c->tlen;
            cel_next(c);
            if (tok_is(c, "(")) {
                cel_next(c);
                enum shape first = S_OTHER;
                int argc = cel_args(c, ")", &first, NULL);
                cel_macro(c, at, name, nlen, true, argc, first);
                sh = S_OTHER;
                qualified = false;
            } else {
                sh = S_SELECT;
            }
        } else if (tok_is(c, "[")) {
            cel_next(c);
            if (tok_is(c, "?")) {
                cel_error(c, c->tstart, "unsupported syntax '[?'");
                break;
            }
            cel_expr(c);
            cel_expect(c, "]");
            sh = S_OTHER;
            qualified = false;
        } else if (tok_is(c, "{") && qualified) {
            /* message construction: pkg.Type{field: value} */
            cel_next(c);
            cel_inits(c, true);
            sh = S_OTHER;
            qualified = false;
        } else {
            break;
        }
    }
    return sh;
}

static enum shape cel_unary(struct cel *c)
{
    if (tok_is(c, "!") || tok_is(c, "-")) {
        char op = c->src[c->tstart];
        while (c->t == T_PUNCT && c->tlen == 1 && c->src[c->tstart] == op)
            cel_next(c);
        cel_member(c);
        return S_OTHER;
    }
    return cel_member(c);
}

static enum shape cel_binary(struct cel *c, int level)
{
    static const char *const levels[][7] = {
        {"||", NULL}, {"&&", NULL}, {"==", "!=", "<", "<=", ">", ">=", "in"}, {"+", "-", NULL}, {"*", "/", "%", NULL},
    };
    if (level == 5)
        return cel_unary(c);
    enum shape sh = cel_binary(c, level + 1);
    for (;;) {
        bool matched = false;
        for (size_t i = 0; i < 7 && levels[level][i]; i++)
            if (tok_is(c, levels[level][i]))
                matched = true;
        if (!matched || c->err[0])
            return sh;
        cel_next(c);
        cel_binary(c, level + 1);
        sh = S_OTHER;
    }
}

static enum shape cel_expr(struct cel *c)
{
    if (++c->depth > CEL_MAX_DEPTH) {
        cel_error(c, c->tstart, "expression recursion limit exceeded: %d", CEL_MAX_DEPTH);
        c->depth--;
        return S_OTHER;
    }
    enum shape sh = cel_binary(c, 0);
    if (!c->err[0] && tok_is(c, "?")) {
        cel_next(c);
        cel_binary(c, 0);
        cel_expect(c, ":");
        cel_expr(c);
        sh = S_OTHER;
    }
    c->depth--;
    return sh;
}

/* Returns NULL when expr parses as CEL, else cel-go-style error text in buf. */
static const char *cel_check(const char *expr, char *buf, size_t n)
{
    size_t points = 0;
    for (const unsigned char *p = (const unsigned char *)expr; *p; p++)
        points += (*p & 0xC0) != 0x80;
    if (points > CEL_MAX_CODE_POINTS) {
        snprintf(buf, n, "expression code point size exceeds limit: size: %zu, limit %d", points, CEL_MAX_CODE_POINTS);
        return buf;
    }
    struct cel c = {.src = expr};
    cel_next(&c);
    cel_expr(&c);
    if (!c.err[0] && c.t != T_EOF)
        cel_error(&c, c.tstart, "mismatched input '%.*s' expecting <EOF>", (int)(c.tlen > 20 ? 20 : c.tlen),
                  expr + c.tstart);
    if (!c.err[0])
        return NULL;
    snprintf(buf, n, "%s", c.err);
    return buf;
}

/* ---- Telemetry ---------------------------------------------------------------- */

static void check_tracing(struct keel_vctx *v, const struct keel_telemetry *s)
{
    if (s->n_tracing > 1)
        keel_vwarn(v, &s->_o, "tracing", "multiple tracing is not currently supported");
    for (size_t i = 0; s->tracing && i < s->n_tracing; i++) {
        const struct keel_tracing *t = &s->tracing[i];
        size_t mark = keel_vpush_index(v, "tracing", i);
        if (t->n_providers > 1)
            keel_vwarn(v, &t->_o, "providers", "multiple providers is not currently supported");
        if (keel_obj_has(&t->_o, "randomSamplingPercentage") &&
            (t->random_sampling_percentage < 0 || t->random_sampling_percentage > 100))
            keel_verr(v, &t->_o, "randomSamplingPercentage", "randomSamplingPercentage must be in range [0.0, 100.0]");
        for (size_t k = 0; t->custom_tags && k < t->n_custom_tags; k++) {
            const struct keel_custom_tag_entry *e = &t->custom_tags[k];
            if (empty(e->key))
                keel_verr_key(v, &t->_o, "customTags", e->key ? e->key : "", "tag name may not be empty");
        }
        keel_vpop(v, mark);
    }
}

static void check_metrics(struct keel_vctx *v, const struct keel_telemetry *s)
{
    for (size_t i = 0; s->metrics && i < s->n_metrics; i++) {
        const struct keel_metrics *m = &s->metrics[i];
        size_t mark = keel_vpush_index(v, "metrics", i);
        for (size_t j = 0; m->overrides && j < m->n_overrides; j++) {
            const struct keel_metrics_override *o = &m->overrides[j];
            size_t m2 = keel_vpush_index(v, "overrides", j);
            for (size_t k = 0; o->tag_overrides && k < o->n_tag_overrides; k++) {
                const struct keel_tag_override_entry *e = &o->tag_overrides[k];
                const struct keel_tag_override *to = &e->value;
                const char *key = e->key ? e->key : "";
                if (!*key)
                    keel_vwarn(v, &o->_o, "tagOverrides", "tagOverrides.name may not be empty");
                size_t m3 = keel_vpush_key(v, "tagOverrides", key);
                if (to->operation == KEEL_TAG_OVERRIDE_OPERATION_UPSERT && empty(to->value))
                    keel_verr(v, &to->_o, keel_obj_has(&to->_o, "value") ? "value" : NULL,
                              "tagOverrides.value must be set when operation is UPSERT");
                else if (to->operation == KEEL_TAG_OVERRIDE_OPERATION_REMOVE && keel_obj_has(&to->_o, "value"))
                    keel_verr(v, &to->_o, "value",
                              "value must not be set when operation is REMOVE (tagOverrides.value may only be set "
                              "when operation is UPSERT)");
                keel_vpop(v, m3);
            }
            keel_vpop(v, m2);
        }
        keel_vpop(v, mark);
    }
}

static void check_access_logging(struct keel_vctx *v, const struct keel_telemetry *s)
{
    char buf[KEEL_MSG_MAX];
    for (size_t i = 0; s->access_logging && i < s->n_access_logging; i++) {
        const struct keel_access_logging *l = &s->access_logging[i];
        if (!l->filter)
            continue;
        size_t mark = keel_vpush_index(v, "accessLogging", i);
        const char *expr = l->filter->expression ? l->filter->expression : "";
        const char *e = cel_check(expr, buf, sizeof(buf));
        if (e) {
            size_t m2 = keel_vpush(v, "filter");
            keel_verr(v, &l->filter->_o, keel_obj_has(&l->filter->_o, "expression") ? "expression" : NULL,
                      "must be a valid CEL expression, %s", e);
            keel_vpop(v, m2);
        }
        keel_vpop(v, mark);
    }
}

void keel_validate_telemetry(struct keel_vctx *v, const struct keel_telemetry *s)
{
    keel_vcheck_annotations(v, NULL);
    keel_vcheck_attachment(v, "", &s->_o, s->selector, s->target_ref, s->target_refs, s->n_target_refs);
    check_metrics(v, s);
    check_tracing(v, s);
    check_access_logging(v, s);
}

/* ---- Wasm module URLs (Go net/url rules: config/url.h) ------------------------- */

static bool wasm_scheme_ok(const char *scheme)
{
    static const char *const ok[] = {"", "file", "http", "https", "oci"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(scheme, ok[i]) == 0)
            return true;
    return false;
}

/* validateWasmPluginURL (strictParseURL) and the CRD's isURL() rule on the same field. */
static void check_wasm_url(struct keel_vctx *v, const struct keel_obj *o, const char *url)
{
    if (empty(url)) {
        keel_verr(v, o, keel_obj_has(o, "url") ? "url" : NULL, "url field needs to be set");
        return;
    }
    char perr[KEEL_MSG_MAX], err2[KEEL_MSG_MAX], with_http[2100], msg[KEEL_MSG_MAX];
    struct keel_url u = {0}, tmp;
    snprintf(with_http, sizeof(with_http), "http://%.2080s", url);
    const char *e = NULL;
    bool direct = keel_url_parse_request_uri(url, &u, perr, sizeof(perr)) == NULL;
    bool prefixed = !direct && keel_url_parse_request_uri(with_http, &u, err2, sizeof(err2)) == NULL;
    if (!direct && !prefixed) {
        snprintf(msg, sizeof(msg), "failed to parse url: %.200s", perr);
        e = msg;
    } else if (keel_url_parse(direct ? url : with_http, &tmp, err2, sizeof(err2))) {
        snprintf(msg, sizeof(msg), "failed to strict parse url: %.200s", err2);
        e = msg;
    } else if (!wasm_scheme_ok(u.scheme)) {
        snprintf(msg, sizeof(msg), "url contains unsupported scheme: %s", u.scheme);
        e = msg;
    }
    /* CRD: isURL(self) ? scheme in [...] : isURL("http://" + self) */
    bool cel_ok = direct ? wasm_scheme_ok(u.scheme) : prefixed;
    if (e && !cel_ok)
        keel_verr(v, o, "url", "url must have schema one of [http, https, file, oci] (%s)", e);
    else if (e)
        keel_verr(v, o, "url", "%s", e);
    else if (!cel_ok)
        keel_verr(v, o, "url", "url must have schema one of [http, https, file, oci]");
}

/* validateWasmPluginSHA */
static void check_sha256(struct keel_vctx *v, const struct keel_obj *o, const char *sha)
{
    if (empty(sha))
        return;
    if (strlen(sha) != 64) {
        keel_verr(v, o, "sha256", "sha256 field must be 64 characters long");
        return;
    }
    for (const char *p = sha; *p; p++) {
        if (!((*p >= 'a' && *p <= 'f') || (*p >= '0' && *p <= '9'))) {
            keel_verr(v, o, "sha256", "sha256 field must match [a-f0-9]{64} pattern");
            return;
        }
    }
}

/* validateWasmPluginVMConfig and the CRD rules on env entries. */
static void check_vm_config(struct keel_vctx *v, const struct keel_wasm_vm_config *vm)
{
    if (!vm)
        return;
    size_t mark = keel_vpush(v, "vmConfig");
    for (size_t i = 0; vm->env && i < vm->n_env; i++) {
        const struct keel_wasm_env_var *e = &vm->env[i];
        size_t m2 = keel_vpush_index(v, "env", i);
        if (empty(e->name))
            keel_verr(v, &e->_o, keel_obj_has(&e->_o, "name") ? "name" : NULL,
                      "spec.vmConfig.env invalid: env.name must be set");
        for (size_t j = 0; !empty(e->name) && j < i; j++) {
            if (vm->env[j].name && strcmp(vm->env[j].name, e->name) == 0) {
                keel_verr(v, &e->_o, "name", "duplicate env \"%.100s\" (Duplicate value: env names must be unique)",
                          e->name);
                break;
            }
        }
        if (e->value_from == KEEL_WASM_ENV_VAR_VALUE_FROM_HOST && keel_obj_has(&e->_o, "value"))
            keel_verr(v, &e->_o, "value", "value may only be set when valueFrom is INLINE");
        keel_vpop(v, m2);
    }
    keel_vpop(v, mark);
}

/* ---- WasmPlugin ------------------------------------------------------------------ */

void keel_validate_wasm_plugin(struct keel_vctx *v, const struct keel_wasm_plugin *s)
{
    keel_vcheck_annotations(v, NULL);
    keel_vcheck_attachment(v, "", &s->_o, s->selector, s->target_ref, s->target_refs, s->n_target_refs);
    check_wasm_url(v, &s->_o, s->url);
    check_sha256(v, &s->_o, s->sha256);
    check_vm_config(v, s->vm_config);
}

/* ---- TrafficExtension ----------------------------------------------------------- */

void keel_validate_traffic_extension(struct keel_vctx *v, const struct keel_traffic_extension *s)
{
    keel_vcheck_annotations(v, NULL);
    keel_vcheck_attachment(v, "", &s->_o, s->selector, NULL, s->target_refs, s->n_target_refs);
    bool has_wasm = keel_obj_has(&s->_o, "wasm"), has_lua = keel_obj_has(&s->_o, "lua");
    if (has_wasm == has_lua)
        keel_verr(v, &s->_o, has_wasm ? "lua" : NULL, "exactly one of wasm or lua must be set");
    if (s->lua && empty(s->lua->inline_code)) {
        size_t mark = keel_vpush(v, "lua");
        keel_verr(v, &s->lua->_o, keel_obj_has(&s->lua->_o, "inlineCode") ? "inlineCode" : NULL,
                  "lua.inlineCode cannot be empty");
        keel_vpop(v, mark);
    }
    if (s->wasm) {
        size_t mark = keel_vpush(v, "wasm");
        check_wasm_url(v, &s->wasm->_o, s->wasm->url);
        check_sha256(v, &s->wasm->_o, s->wasm->sha256);
        check_vm_config(v, s->wasm->vm_config);
        keel_vpop(v, mark);
    }
}

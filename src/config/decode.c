/*
 * decode.c - table-driven decoder (see decode.h).
 */
#include "config/decode.h"

#include "base/arena.h"
#include "base/err.h"
#include "base/str.h"

#include <limits.h>
#include <math.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

void keel_decode_init(struct keel_decode *dc, struct keel_arena *a, struct keel_diags *d, const char *root_path)
{
    dc->arena = a;
    dc->diags = d;
    dc->errors = 0;
    keel_path_init(&dc->path, root_path);
}

void keel_decode_error(struct keel_decode *dc, const struct keel_node *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    keel_diags_vadd(dc->diags, KEEL_SEV_ERROR, node ? &node->loc : NULL, keel_path_str(&dc->path), fmt, ap);
    va_end(ap);
    dc->errors++;
}

/* ---- durations and base64 --------------------------------------------- */

int keel_duration_parse(const char *s, int64_t *ns)
{
    static const struct {
        const char *unit;
        int64_t ns;
    } units[] = {{"ns", 1},           {"us", 1000},          {"\xc2\xb5s", 1000}, {"\xce\xbcs", 1000},
                 {"ms", 1000000},     {"s", 1000000000LL},   {"m", 60000000000LL}, {"h", 3600000000000LL}};
    const char *p = s;
    bool neg = false;
    if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    if (strcmp(p, "0") == 0) {
        *ns = 0;
        return 0;
    }
    if (!*p)
        return KEEL_EINVAL;
    long double total = 0;
    while (*p) {
        const char *start = p;
        long double v = 0;
        bool digits = false;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (*p - '0');
            p++;
            digits = true;
        }
        if (*p == '.') {
            p++;
            long double scale = 0.1L;
            while (*p >= '0' && *p <= '9') {
                v += (*p - '0') * scale;
                scale /= 10;
                p++;
                digits = true;
            }
        }
        if (!digits || p == start)
            return KEEL_EINVAL;
        size_t best = 0;
        int64_t mult = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t ul = strlen(units[i].unit);
            if (strncmp(p, units[i].unit, ul) == 0 && ul > best) {
                best = ul;
                mult = units[i].ns;
            }
        }
        if (!best)
            return KEEL_EINVAL;
        p += best;
        total += v * (long double)mult;
        if (total > (long double)INT64_MAX)
            return KEEL_ETOOBIG;
    }
    int64_t r = (int64_t)(total + 0.5L);
    *ns = neg ? -r : r;
    return 0;
}

const char *keel_duration_format(int64_t ns, char *buf, size_t n)
{
    if (ns % 1000000000LL == 0)
        snprintf(buf, n, "%llds", (long long)(ns / 1000000000LL));
    else if (ns % 1000000LL == 0)
        snprintf(buf, n, "%lldms", (long long)(ns / 1000000LL));
    else
        snprintf(buf, n, "%lldns", (long long)ns);
    return buf;
}

bool keel_base64_valid(const char *s)
{
    size_t n = strlen(s), pad = 0;
    if (n % 4 != 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '=') {
            pad++;
            if (i < n - 2)
                return false;
            continue;
        }
        if (pad)
            return false;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/'))
            return false;
    }
    return pad <= 2;
}

/* ---- suggestions -------------------------------------------------------- */

static void squash(const char *in, char *out, size_t n)
{
    size_t j = 0;
    for (; *in && j + 1 < n; in++) {
        char c = *in;
        if (c == '_' || c == '-')
            continue;
        out[j++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    out[j] = '\0';
}

/* nearest field name of m to key, or NULL */
static const char *nearest_field(const struct keel_msgdesc *m, const char *key, unsigned *dist_out)
{
    char k[80];
    squash(key, k, sizeof(k));
    size_t klen = strlen(k);
    unsigned cap = klen < 4 ? 1 : klen < 8 ? 2 : 3;
    const char *best = NULL;
    unsigned bestd = cap + 1;
    for (unsigned i = 0; i < m->nfields; i++) {
        char f[80];
        squash(m->fields[i].name, f, sizeof(f));
        unsigned d = keel_str_edit_distance(k, f, cap);
        if (d < bestd) {
            bestd = d;
            best = m->fields[i].name;
        }
    }
    if (dist_out)
        *dist_out = bestd;
    return best;
}

/* a sub-message (one or two levels down) with a field named exactly key */
static bool find_nested(const struct keel_msgdesc *m, const char *key, int depth, char *out, size_t n)
{
    for (unsigned i = 0; i < m->nfields; i++) {
        const struct keel_field *f = &m->fields[i];
        if (f->type != KEEL_FT_MSG || !f->msg)
            continue;
        for (unsigned j = 0; j < f->msg->nfields; j++) {
            if (strcmp(f->msg->fields[j].name, key) == 0) {
                snprintf(out, n, "%s%s.%s", f->name, f->shape == KEEL_FS_LIST ? "[]" : "", key);
                return true;
            }
        }
        if (depth > 0) {
            char sub[200];
            if (find_nested(f->msg, key, depth - 1, sub, sizeof(sub))) {
                snprintf(out, n, "%s%s.%s", f->name, f->shape == KEEL_FS_LIST ? "[]" : "", sub);
                return true;
            }
        }
    }
    return false;
}

static void report_unknown(struct keel_decode *dc, const struct keel_msgdesc *m, const struct keel_pair *p)
{
    const char *key = p->key->str;
    unsigned d;
    const char *near = nearest_field(m, key, &d);
    char nested[256];
    if (near)
        keel_decode_error(dc, p->key, "unknown field \"%s\": did you mean \"%s\"?", key, near);
    else if (find_nested(m, key, 1, nested, sizeof(nested)))
        keel_decode_error(dc, p->key, "unknown field \"%s\" at this level: did you mean \"%s\" (it belongs inside)?",
                          key, nested);
    else if (m->nfields <= 12) {
        char list[512] = "";
        size_t used = 0;
        for (unsigned i = 0; i < m->nfields && used < sizeof(list) - 64; i++)
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", m->fields[i].name);
        keel_decode_error(dc, p->key, "unknown field \"%s\"; valid fields here: %s", key, list);
    } else
        keel_decode_error(dc, p->key, "unknown field \"%s\"", key);
}

static const char *nearest_enum(const struct keel_field *f, const char *v)
{
    char k[80];
    squash(v, k, sizeof(k));
    const char *best = NULL;
    unsigned bestd = 3;
    for (unsigned i = 0; i < f->nenums; i++) {
        char e[80];
        squash(f->enums[i], e, sizeof(e));
        unsigned dd = keel_str_edit_distance(k, e, 2);
        if (dd < bestd) {
            bestd = dd;
            best = f->enums[i];
        }
    }
    return best;
}

/* ---- patterns ------------------------------------------------------------ */

static bool pattern_match(const char *pattern, const char *s)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
    if (!re)
        return true; /* the schema's own pattern failed to compile: do not blame the user */
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = md ? pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL) : 0;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

/* ---- values -------------------------------------------------------------- */

static bool is_scalar(const struct keel_node *n)
{
    return n->type != KEEL_NODE_SEQ && n->type != KEEL_NODE_MAP;
}

static bool looks_like_int(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static void type_error(struct keel_decode *dc, const struct keel_node *n, const char *want)
{
    char cb[96]; /* clipped copies of user strings for messages */
    if (n->type == KEEL_NODE_STRING)
        keel_decode_error(dc, n, "expected %s, got string \"%s\"%s", want, keel_str_clip(n->str, 60, cb, sizeof(cb)),
                          (strcmp(want, "boolean") == 0 && (strcmp(n->str, "true") == 0 || strcmp(n->str, "false") == 0)) ||
                                  (strcmp(want, "integer") == 0 && n->quoted && looks_like_int(n->str))
                              ? " (remove the quotes)"
                              : "");
    else if (is_scalar(n))
        keel_decode_error(dc, n, "expected %s, got %s %s%s", want, keel_node_type_name(n->type), keel_str_clip(n->str, 60, cb, sizeof(cb)),
                          strcmp(want, "string") == 0 ? " (quote it to make it a string)" : "");
    else
        keel_decode_error(dc, n, "expected %s, got %s", want, keel_node_type_name(n->type));
}

static void check_string(struct keel_decode *dc, const struct keel_field *f, const struct keel_node *n)
{
    char cb[96]; /* clipped copies of user strings for messages */
    const char *s = n->str;
    if (memchr(s, '\0', n->len)) {
        keel_decode_error(dc, n, "string contains a NUL byte");
        return;
    }
    if (f->min_len && n->len < f->min_len)
        keel_decode_error(dc, n, "Invalid value: \"%s\": %s in body should be at least %u chars long",
                          keel_str_clip(s, 60, cb, sizeof(cb)), keel_path_str(&dc->path), f->min_len);
    if (f->max_len && n->len > f->max_len)
        keel_decode_error(dc, n, "Too long: %s may have at most %u chars (got %zu)", keel_path_str(&dc->path),
                          f->max_len, n->len);
    if (f->pattern && !pattern_match(f->pattern, s))
        keel_decode_error(dc, n, "Invalid value: \"%s\": %s in body should match '%s'",
                          keel_str_clip(s, 60, cb, sizeof(cb)), keel_path_str(&dc->path), f->pattern);
    if ((f->flags & KEEL_FF_NO_STAR) && strchr(s, '*'))
        keel_decode_error(dc, n, "Invalid value: \"string\": %s", f->rule_msg ? f->rule_msg : "must not contain '*'");
    if ((f->flags & KEEL_FF_NOT_STAR) && strcmp(s, "*") == 0)
        keel_decode_error(dc, n, "Invalid value: \"string\": %s", f->rule_msg ? f->rule_msg : "must not be '*'");
    if ((f->flags & KEEL_FF_MUST_BE_EMPTY) && *s)
        keel_decode_error(dc, n, "Invalid value: \"string\": %s", f->rule_msg ? f->rule_msg : "must be empty");
    if ((f->flags & KEEL_FF_HTTP_SCHEME) && *s && strcmp(s, "HTTP") != 0 && strcmp(s, "HTTPS") != 0)
        keel_decode_error(dc, n, "Invalid value: \"string\": %s", f->rule_msg ? f->rule_msg : "must be HTTP or HTTPS");
    if (f->flags & KEEL_FF_URL_HTTP) {
        if (strncasecmp(s, "http://", 7) != 0 && strncasecmp(s, "https://", 8) != 0) /* schemes are case-insensitive */
            keel_decode_error(dc, n, "%s (got \"%s\")", f->rule_msg ? f->rule_msg : "url must have scheme http:// or https://", keel_str_clip(s, 60, cb, sizeof(cb)));
    }
}

static int decode_value(struct keel_decode *dc, const struct keel_field *f, const struct keel_node *n, void *dst);

static void check_int_range(struct keel_decode *dc, const struct keel_field *f, const struct keel_node *n, int64_t v)
{
    bool lo = (f->flags & KEEL_FF_HAS_MIN) && v < f->min;
    bool hi = (f->flags & KEEL_FF_HAS_MAX) && v > f->max;
    if (!lo && !hi)
        return;
    if (f->rule_msg)
        keel_decode_error(dc, n, "Invalid value: \"integer\": %s (got %lld)", f->rule_msg, (long long)v);
    else if ((f->flags & KEEL_FF_HAS_MIN) && (f->flags & KEEL_FF_HAS_MAX))
        keel_decode_error(dc, n, "Invalid value: %lld: must be between %lld and %lld", (long long)v, (long long)f->min,
                          (long long)f->max);
    else if (lo)
        keel_decode_error(dc, n, "Invalid value: %lld: %s in body should be greater than or equal to %lld",
                          (long long)v, keel_path_str(&dc->path), (long long)f->min);
    else
        keel_decode_error(dc, n, "Invalid value: %lld: %s in body should be less than or equal to %lld",
                          (long long)v, keel_path_str(&dc->path), (long long)f->max);
}

static int decode_value(struct keel_decode *dc, const struct keel_field *f, const struct keel_node *n, void *dst)
{
    char cb[96]; /* clipped copies of user strings for messages */
    switch ((enum keel_ftype)f->type) {
    case KEEL_FT_STRING:
    case KEEL_FT_BYTES:
        if (n->type != KEEL_NODE_STRING) {
            type_error(dc, n, f->type == KEEL_FT_BYTES ? "string (base64)" : "string");
            return -1;
        }
        check_string(dc, f, n);
        if (f->type == KEEL_FT_BYTES && !keel_base64_valid(n->str))
            keel_decode_error(dc, n, "not valid base64");
        *(const char **)dst = n->str;
        return 0;
    case KEEL_FT_BOOL:
        if (n->type != KEEL_NODE_BOOL) {
            type_error(dc, n, "boolean");
            return -1;
        }
        *(bool *)dst = n->v.b;
        return 0;
    case KEEL_FT_INT:
        if (n->type != KEEL_NODE_INT) {
            if (n->type == KEEL_NODE_FLOAT && is_scalar(n) && floor(n->v.d) == n->v.d && fabs(n->v.d) < 9e18) {
                *(int64_t *)dst = (int64_t)n->v.d;
                check_int_range(dc, f, n, (int64_t)n->v.d);
                return 0;
            }
            type_error(dc, n, "integer");
            return -1;
        }
        check_int_range(dc, f, n, n->v.i);
        *(int64_t *)dst = n->v.i;
        return 0;
    case KEEL_FT_DOUBLE:
        if (n->type == KEEL_NODE_INT)
            *(double *)dst = (double)n->v.i;
        else if (n->type == KEEL_NODE_FLOAT)
            *(double *)dst = n->v.d;
        else {
            type_error(dc, n, "number");
            return -1;
        }
        if (isnan(*(double *)dst)) {
            keel_decode_error(dc, n, "expected a number, got NaN");
            return -1;
        }
        if ((f->flags & KEEL_FF_HAS_MIN) && *(double *)dst < (double)f->min)
            keel_decode_error(dc, n, "Invalid value: %s: %s in body should be greater than or equal to %lld", n->str,
                              keel_path_str(&dc->path), (long long)f->min);
        else if ((f->flags & KEEL_FF_HAS_MAX) && *(double *)dst > (double)f->max)
            keel_decode_error(dc, n, "Invalid value: %s: %s in body should be less than or equal to %lld", n->str,
                              keel_path_str(&dc->path), (long long)f->max);
        return 0;
    case KEEL_FT_DURATION: {
        if (n->type != KEEL_NODE_STRING) {
            if (n->type == KEEL_NODE_INT || n->type == KEEL_NODE_FLOAT)
                keel_decode_error(dc, n, "expected a duration string with a unit, got number %s (write e.g. \"%ss\")",
                                  n->str, n->str);
            else
                type_error(dc, n, "duration string");
            return -1;
        }
        int64_t ns;
        int rc = keel_duration_parse(n->str, &ns);
        if (rc) {
            keel_decode_error(dc, n, "invalid duration \"%s\": expected a number with a unit, e.g. 10s, 1.5s, 300ms, 1h2m",
                              keel_str_clip(n->str, 60, cb, sizeof(cb)));
            return -1;
        }
        if ((f->flags & KEEL_FF_DUR_MIN_1MS) && ns < 1000000)
            keel_decode_error(dc, n, "must be a valid duration greater than 1ms (got \"%s\")", keel_str_clip(n->str, 60, cb, sizeof(cb)));
        *(int64_t *)dst = ns;
        return 0;
    }
    case KEEL_FT_ENUM:
        if (n->type != KEEL_NODE_STRING) {
            type_error(dc, n, "string");
            return -1;
        }
        for (unsigned i = 0; i < f->nenums; i++) {
            if (strcmp(n->str, f->enums[i]) == 0) {
                *(int *)dst = (int)i;
                return 0;
            }
        }
        {
            char list[512] = "";
            size_t used = 0;
            for (unsigned i = 0; i < f->nenums && used < sizeof(list) - 40; i++)
                used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", f->enums[i]);
            const char *near = nearest_enum(f, n->str);
            if (near)
                keel_decode_error(dc, n, "Unsupported value: \"%s\": did you mean \"%s\"? (supported values: %s)",
                                  keel_str_clip(n->str, 60, cb, sizeof(cb)), near, list);
            else
                keel_decode_error(dc, n, "Unsupported value: \"%s\": supported values: %s",
                                  keel_str_clip(n->str, 60, cb, sizeof(cb)), list);
        }
        return -1;
    case KEEL_FT_MSG: {
        if (n->type != KEEL_NODE_MAP) {
            type_error(dc, n, n->type == KEEL_NODE_SEQ ? "object (write the fields directly, without a leading \"-\")"
                                                          : "object");
            return -1;
        }
        return keel_decode_msg(dc, f->msg, n, dst);
    }
    case KEEL_FT_ANY:
        *(const struct keel_node **)dst = n;
        return 0;
    case KEEL_FT_INTSTR: {
        struct keel_intstr *is = dst;
        if (n->type == KEEL_NODE_INT) {
            is->is_str = false;
            is->i = n->v.i;
            is->s = n->str;
        } else if (n->type == KEEL_NODE_STRING) {
            is->is_str = true;
            is->s = n->str;
        } else {
            type_error(dc, n, "integer or string");
            return -1;
        }
        return 0;
    }
    }
    return -1;
}

static bool valid_port_name_key(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n >= 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && i > 0 && i < n - 1))
            return false;
    }
    return true;
}

static void decode_field(struct keel_decode *dc, const struct keel_field *f, const struct keel_node *n, char *base)
{
    char cb[96]; /* clipped copies of user strings for messages */
    if (f->shape == KEEL_FS_ONE) {
        if (f->type == KEEL_FT_MSG) {
            void *sub = keel_arena_xalloc(dc->arena, f->msg->size);
            if (decode_value(dc, f, n, sub) == 0 || n->type == KEEL_NODE_MAP)
                *(void **)(base + f->offset) = sub;
        } else {
            decode_value(dc, f, n, base + f->offset);
        }
        return;
    }
    if (f->shape == KEEL_FS_LIST) {
        if (n->type != KEEL_NODE_SEQ) {
            if (n->type == KEEL_NODE_MAP)
                keel_decode_error(dc, n, "expected a list, got object (start each item with \"- \")");
            else
                type_error(dc, n, "list");
            return;
        }
        if (f->min_items && n->n < f->min_items)
            keel_decode_error(dc, n, "must have at least %u item%s", f->min_items, f->min_items == 1 ? "" : "s");
        if (f->max_items && n->n > f->max_items)
            keel_decode_error(dc, n, "must have at most %u items (got %zu)", f->max_items, n->n);
        char *arr = n->n ? keel_arena_xalloc(dc->arena, f->elem_size * n->n) : NULL;
        size_t count = 0;
        for (size_t i = 0; i < n->n; i++) {
            const struct keel_node *it = n->c.items[i];
            size_t mark = keel_path_index(&dc->path, i);
            if (it->type == KEEL_NODE_NULL) {
                keel_decode_error(dc, it, "list items may not be null");
            } else {
                void *slot = arr + f->elem_size * count;
                if (decode_value(dc, f, it, slot) == 0 || (f->type == KEEL_FT_MSG && it->type == KEEL_NODE_MAP))
                    count++;
            }
            keel_path_truncate(&dc->path, mark);
        }
        if ((f->flags & KEEL_FF_UNIQUE_NUMBER) && f->type == KEEL_FT_MSG) {
            /* list of objects whose `number` must be unique */
            for (size_t i = 0; i < n->n; i++) {
                const char *ni = keel_node_get_str(n->c.items[i], "number");
                for (size_t j = 0; ni && j < i; j++) {
                    const char *nj = keel_node_get_str(n->c.items[j], "number");
                    if (nj && strcmp(ni, nj) == 0) {
                        size_t mark = keel_path_index(&dc->path, i);
                        keel_decode_error(dc, n->c.items[i], "port number cannot be duplicated (%s)", ni);
                        keel_path_truncate(&dc->path, mark);
                        break;
                    }
                }
            }
        }
        *(void **)(base + f->offset) = arr;
        *(size_t *)(base + f->count_offset) = count;
        return;
    }
    /* MAP */
    if (n->type != KEEL_NODE_MAP) {
        type_error(dc, n, "object (a map of names to values)");
        return;
    }
    if (f->min_items && n->n < f->min_items)
        keel_decode_error(dc, n, "Invalid value: %s in body should have at least %u properties (entries)",
                          keel_path_str(&dc->path), f->min_items);
    if (f->max_items && n->n > f->max_items)
        keel_decode_error(dc, n, "must have at most %u entries (got %zu)", f->max_items, n->n);
    char *arr = n->n ? keel_arena_xalloc(dc->arena, f->elem_size * n->n) : NULL;
    size_t count = 0;
    for (size_t i = 0; i < n->n; i++) {
        const struct keel_pair *p = &n->c.pairs[i];
        const char *key = p->key->str;
        size_t mark = keel_path_key(&dc->path, key);
        if ((f->flags & KEEL_FF_KEY_NONEMPTY) && !*key)
            keel_decode_error(dc, p->key, "key must not be empty");
        if ((f->flags & KEEL_FF_KEY_NO_STAR) && strchr(key, '*'))
            keel_decode_error(dc, p->key, "wildcard not allowed in label key match");
        if ((f->flags & KEEL_FF_KEY_PORT_NAME) && !valid_port_name_key(key))
            keel_decode_error(dc, p->key, "port name must be valid (got \"%s\")", keel_str_clip(key, 60, cb, sizeof(cb)));
        if (f->flags & KEEL_FF_KEY_PORT_NUM) {
            uint64_t port;
            if (keel_str_to_u64(keel_str_c(key), 65535, &port) != 0 || port == 0)
                keel_decode_error(dc, p->key, "port must be between 1-65535 (got \"%s\")", keel_str_clip(key, 60, cb, sizeof(cb)));
        }
        if (p->value->type == KEEL_NODE_NULL && f->type != KEEL_FT_MSG) {
            if (f->type == KEEL_FT_STRING) {
                /* k8s treats `key:` with no value in a string map as "" */
                char *slot = arr + f->elem_size * count++;
                *(const char **)slot = key;
                *(const char **)(slot + f->value_offset) = "";
            } else {
                keel_decode_error(dc, p->value, "expected %s value, got null", f->type == KEEL_FT_INT ? "an integer" : "a");
            }
        } else {
            char *slot = arr + f->elem_size * count;
            *(const char **)slot = key;
            const struct keel_node *v = p->value;
            if (f->type == KEEL_FT_MSG && v->type == KEEL_NODE_NULL) {
                count++; /* {} presence match written as `key:` */
            } else if (decode_value(dc, f, v, slot + f->value_offset) == 0 ||
                       (f->type == KEEL_FT_MSG && v->type == KEEL_NODE_MAP)) {
                count++;
            }
        }
        keel_path_truncate(&dc->path, mark);
    }
    *(void **)(base + f->offset) = arr;
    *(size_t *)(base + f->count_offset) = count;
}

int keel_decode_msg(struct keel_decode *dc, const struct keel_msgdesc *m, const struct keel_node *node, void *out)
{
    size_t before = dc->errors;
    struct keel_obj *o = out;
    o->node = node;
    if (node->type != KEEL_NODE_MAP) {
        type_error(dc, node, "object");
        return KEEL_EINVALID_CONFIG;
    }
    char *base = out;
    unsigned char oneof_seen[16] = {0};
    const char *oneof_first[16] = {0};
    for (size_t i = 0; i < node->n; i++) {
        const struct keel_pair *p = &node->c.pairs[i];
        const struct keel_field *f = NULL;
        for (unsigned j = 0; j < m->nfields; j++) {
            if (strcmp(m->fields[j].name, p->key->str) == 0) {
                f = &m->fields[j];
                break;
            }
        }
        size_t mark = keel_path_field(&dc->path, p->key->str);
        if (!f) {
            if (!(m->flags & KEEL_FF_OPEN))
                report_unknown(dc, m, p);
            keel_path_truncate(&dc->path, mark);
            continue;
        }
        if (p->value->type == KEEL_NODE_NULL) {
            /* null (including `field:` with nothing after it) means unset,
             * as in Kubernetes and protojson */
            keel_path_truncate(&dc->path, mark);
            continue;
        }
        if (f->oneof && f->oneof < 16) {
            if (oneof_seen[f->oneof]++)
                keel_decode_error(dc, p->key, "only one of \"%s\" and \"%s\" may be set", oneof_first[f->oneof],
                                  f->name);
            else
                oneof_first[f->oneof] = f->name;
        }
        decode_field(dc, f, p->value, base);
        keel_path_truncate(&dc->path, mark);
    }
    for (unsigned j = 0; j < m->nfields; j++) {
        const struct keel_field *f = &m->fields[j];
        if (!(f->flags & KEEL_FF_REQUIRED))
            continue;
        const struct keel_node *v = keel_node_get(node, f->name);
        if (!v || v->type == KEEL_NODE_NULL) {
            size_t mark = keel_path_field(&dc->path, f->name);
            keel_decode_error(dc, node, "Required value: missing required field \"%s\"", f->name);
            keel_path_truncate(&dc->path, mark);
        }
    }
    return dc->errors > before ? KEEL_EINVALID_CONFIG : 0;
}

/* ---- keel_obj helpers (schema.h) ----------------------------------------- */

bool keel_obj_has(const struct keel_obj *o, const char *name)
{
    const struct keel_node *v = o && o->node ? keel_node_get(o->node, name) : NULL;
    return v && v->type != KEEL_NODE_NULL;
}

struct keel_loc keel_obj_loc(const struct keel_obj *o, const char *name)
{
    struct keel_loc none = {0};
    if (!o || !o->node)
        return none;
    const struct keel_node *v = name ? keel_node_get(o->node, name) : NULL;
    return v ? v->loc : o->node->loc;
}

struct keel_loc keel_obj_item_loc(const struct keel_obj *o, const char *name, size_t i)
{
    struct keel_loc none = {0};
    if (!o || !o->node)
        return none;
    const struct keel_node *v = keel_node_get(o->node, name);
    if (v && v->type == KEEL_NODE_SEQ && i < v->n)
        return v->c.items[i]->loc;
    return v ? v->loc : o->node->loc;
}

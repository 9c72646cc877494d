/*
 * yaml.c - libfyaml adapter (see yaml.h).
 *
 * libfyaml parses and builds its own document; we walk it once and copy it
 * into keel_node form, resolving scalar types with the YAML 1.2 core schema
 * ourselves so that the rules are visible here rather than in the library.
 */
#include "config/yaml.h"

#include "base/arena.h"
#include "base/buf.h"
#include "base/diag.h"
#include "base/err.h"
#include "base/map.h"
#include "base/str.h"

#include <errno.h>
#include <libfyaml.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One document under construction from parser events. */
struct frame {
    struct keel_node *node; /* SEQ or MAP being filled */
    const char *anchor;     /* anchor to register when the collection ends */
    struct keel_node *pending_key; /* MAP: key waiting for its value */
    bool merge_key;                /* MAP: pending key is a plain `<<` */
    size_t cap;
    struct keel_map *keys;         /* MAP with many keys: key text -> pair index + 1 (duplicate checks in O(1)) */
};

struct anchor {
    const char *name;
    struct keel_node *node;
};

struct conv {
    struct keel_arena *a;
    struct keel_diags *d;
    const char *file;
    const char *src; /* the whole input, for single-quoted scalars (see make_scalar) */
    size_t srclen;
    uint32_t base_line, base_col; /* added to every position (text parsed out of another file) */
    uint32_t doc;
    bool failed;
    struct frame stack[KEEL_YAML_MAX_DEPTH + 1];
    unsigned depth;
    struct anchor *anchors;
    size_t nanchors, capanchors;
    struct keel_node *root;
};

static struct keel_loc event_loc(const struct conv *cv, struct fy_event *fye)
{
    struct keel_loc loc = {cv->file, 0, 0, cv->doc};
    const struct fy_mark *m = fye ? fy_event_start_mark(fye) : NULL;
    if (m) {
        loc.line = (uint32_t)m->line + 1 + cv->base_line;
        loc.col = (uint32_t)m->column + 1 + cv->base_col;
    }
    return loc;
}

static void conv_error(struct conv *cv, const struct keel_loc *loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conv_error(struct conv *cv, const struct keel_loc *loc, const char *fmt, ...)
{
    if (cv->failed)
        return;
    cv->failed = true;
    va_list ap;
    va_start(ap, fmt);
    keel_diags_vadd(cv->d, KEEL_SEV_ERROR, loc, NULL, fmt, ap);
    va_end(ap);
}

static bool all_digits(const char *s, size_t n, const char *set)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr(set, s[i]))
            return false;
    return true;
}

/* YAML 1.2 core schema resolution of a plain scalar. */
static void resolve_plain(struct keel_node *nd)
{
    const char *s = nd->str;
    size_t n = nd->len;
    if (n == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
        strcmp(s, "NULL") == 0) {
        nd->type = KEEL_NODE_NULL;
        return;
    }
    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0) {
        nd->type = KEEL_NODE_BOOL;
        nd->v.b = true;
        return;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0) {
        nd->type = KEEL_NODE_BOOL;
        nd->v.b = false;
        return;
    }
    const char *d = s;
    size_t dn = n;
    if (*d == '-' || *d == '+') {
        d++;
        dn--;
    }
    if (all_digits(d, dn, "0123456789")) {
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        if (errno == ERANGE) {
            nd->type = KEEL_NODE_FLOAT; /* out of int64 range: keep as a number */
            nd->v.d = strtod(s, NULL);
        } else {
            nd->type = KEEL_NODE_INT;
            nd->v.i = v;
        }
        return;
    }
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o') &&
        all_digits(s + 2, n - 2, s[1] == 'x' ? "0123456789abcdefABCDEF" : "01234567")) {
        errno = 0;
        unsigned long long v = strtoull(s + 2, NULL, s[1] == 'x' ? 16 : 8);
        if (errno != ERANGE && v <= INT64_MAX) {
            nd->type = KEEL_NODE_INT;
            nd->v.i = (int64_t)v;
            return;
        }
    }
    if (strcmp(d, ".inf") == 0 || strcmp(d, ".Inf") == 0 || strcmp(d, ".INF") == 0) {
        nd->type = KEEL_NODE_FLOAT;
        nd->v.d = *s == '-' ? -INFINITY : INFINITY;
        return;
    }
    if (strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 || strcmp(s, ".NAN") == 0) {
        nd->type = KEEL_NODE_FLOAT;
        nd->v.d = NAN;
        return;
    }
    /* float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
    size_t i = 0, digits = 0;
    while (i < dn && d[i] >= '0' && d[i] <= '9') {
        i++;
        digits++;
    }
    if (i < dn && d[i] == '.') {
        i++;
        while (i < dn && d[i] >= '0' && d[i] <= '9') {
            i++;
            digits++;
        }
    }
    if (digits > 0 && i < dn && (d[i] == 'e' || d[i] == 'E')) {
        size_t j = i + 1;
        if (j < dn && (d[j] == '+' || d[j] == '-'))
            j++;
        size_t ed = 0;
        while (j < dn && d[j] >= '0' && d[j] <= '9') {
            j++;
            ed++;
        }
        if (ed > 0)
            i = j;
    }
    if (digits > 0 && i == dn) {
        nd->type = KEEL_NODE_FLOAT;
        nd->v.d = strtod(s, NULL);
        return;
    }
    nd->type = KEEL_NODE_STRING;
}

static const char *token_text(struct conv *cv, struct fy_token *t)
{
    size_t len = 0;
    const char *s = t ? fy_token_get_text(t, &len) : NULL;
    return s ? keel_arena_strndup(cv->a, s, len) : NULL;
}

/* Builds a scalar node from a SCALAR event; NULL after reporting. */
/* Decodes a single-quoted scalar from its source text (quotes included):
 * '' is a quote, and line breaks fold as YAML 1.2 says (one break becomes a
 * space, n > 1 breaks become n - 1 newlines, white space around breaks is
 * dropped). libfyaml 0.7.12 both mis-decodes runs of '' and leaks memory on
 * them, so we never ask it for the text of these scalars. */
static bool decode_single_quoted(struct conv *cv, struct fy_token *t, struct keel_node *nd)
{
    const struct fy_mark *sm = fy_token_start_mark(t);
    const struct fy_mark *em = fy_token_end_mark(t);
    if (!sm || !em || em->input_pos > cv->srclen || sm->input_pos + 2 > em->input_pos)
        return false;
    const char *raw = cv->src + sm->input_pos;
    size_t n = em->input_pos - sm->input_pos;
    if (raw[0] != '\'' || raw[n - 1] != '\'')
        return false;
    raw++;
    n -= 2;
    char *out = keel_arena_xalloc(cv->a, n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        char c = raw[i];
        if (c == '\'' && i + 1 < n && raw[i + 1] == '\'') {
            out[o++] = '\'';
            i += 2;
        } else if (c == '\n' || c == '\r') {
            while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\t'))
                o--;
            unsigned breaks = 0;
            while (i < n && (raw[i] == '\n' || raw[i] == '\r')) {
                i += (raw[i] == '\r' && i + 1 < n && raw[i + 1] == '\n') ? 2 : 1;
                breaks++;
                while (i < n && (raw[i] == ' ' || raw[i] == '\t'))
                    i++;
            }
            if (breaks == 1)
                out[o++] = ' ';
            else
                for (unsigned k = 1; k < breaks; k++)
                    out[o++] = '\n';
        } else {
            out[o++] = c;
            i++;
        }
    }
    out[o] = '\0';
    nd->str = out;
    nd->len = o;
    return true;
}

static struct keel_node *make_scalar(struct conv *cv, struct fy_event *fye)
{
    struct keel_node *nd = keel_arena_xalloc(cv->a, sizeof(*nd));
    nd->loc = event_loc(cv, fye);
    nd->weight = 1;
    enum fy_scalar_style style = fye->scalar.value ? fy_token_scalar_style(fye->scalar.value) : FYSS_PLAIN;
    if (!(style == FYSS_SINGLE_QUOTED && decode_single_quoted(cv, fye->scalar.value, nd))) {
        size_t len = 0;
        const char *text = fye->scalar.value ? fy_token_get_text(fye->scalar.value, &len) : "";
        if (!text) {
            text = "";
            len = 0;
        }
        nd->str = keel_arena_strndup(cv->a, text, len);
        nd->len = len;
    }
    /* tag_implicit is not read: libfyaml 0.7 leaves it uninitialised for some scalars */
    if (fye->scalar.tag) {
        const char *handle = fy_tag_token_handle0(fye->scalar.tag);
        const char *suffix = fy_tag_token_suffix0(fye->scalar.tag);
        bool core = handle && strcmp(handle, "!!") == 0 && suffix;
        if (core && strcmp(suffix, "str") == 0) {
            nd->type = KEEL_NODE_STRING;
            nd->quoted = true;
            return nd;
        }
        if (core && (strcmp(suffix, "int") == 0 || strcmp(suffix, "float") == 0 || strcmp(suffix, "bool") == 0 ||
                     strcmp(suffix, "null") == 0)) {
            resolve_plain(nd);
            return nd;
        }
        if (!(handle && strcmp(handle, "!") == 0 && (!suffix || !*suffix))) {
            conv_error(cv, &nd->loc, "unsupported YAML tag %s%s", handle ? handle : "",
                       suffix ? suffix : "");
            return NULL;
        }
    }
    if (style == FYSS_PLAIN || style == FYSS_ANY) {
        resolve_plain(nd);
    } else {
        nd->type = KEEL_NODE_STRING;
        nd->quoted = true;
        nd->block = style == FYSS_LITERAL || style == FYSS_FOLDED;
    }
    return nd;
}

static void register_anchor(struct conv *cv, const char *name, struct keel_node *nd)
{
    if (!name)
        return;
    if (cv->nanchors == cv->capanchors) {
        size_t cap = cv->capanchors ? cv->capanchors * 2 : 16;
        struct anchor *na = keel_arena_xalloc(cv->a, cap * sizeof(*na));
        if (cv->nanchors)
            memcpy(na, cv->anchors, cv->nanchors * sizeof(*na));
        cv->anchors = na;
        cv->capanchors = cap;
    }
    /* a later anchor with the same name shadows the earlier one */
    cv->anchors[cv->nanchors].name = name;
    cv->anchors[cv->nanchors].node = nd;
    cv->nanchors++;
}

static struct keel_node *find_anchor(struct conv *cv, const char *name)
{
    for (size_t i = cv->nanchors; i > 0; i--)
        if (strcmp(cv->anchors[i - 1].name, name) == 0)
            return cv->anchors[i - 1].node;
    return NULL;
}

static size_t sat_add(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static void grow_children(struct conv *cv, struct frame *f, size_t elem)
{
    struct keel_node *nd = f->node;
    if (nd->n < f->cap)
        return;
    size_t cap = f->cap ? f->cap * 2 : 8;
    void *na = keel_arena_xalloc(cv->a, cap * elem);
    void *old = nd->type == KEEL_NODE_SEQ ? (void *)nd->c.items : (void *)nd->c.pairs;
    if (nd->n)
        memcpy(na, old, nd->n * elem);
    if (nd->type == KEEL_NODE_SEQ)
        nd->c.items = na;
    else
        nd->c.pairs = na;
    f->cap = cap;
}

/* Mappings with more keys than this get a hash index for duplicate checks. */
#define KEY_INDEX_FROM 16

static const struct keel_pair *map_find(const struct frame *f, const char *key)
{
    const struct keel_node *map = f->node;
    if (f->keys) {
        uintptr_t i = (uintptr_t)keel_map_get(f->keys, key, strlen(key));
        return i ? &map->c.pairs[i - 1] : NULL;
    }
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->c.pairs[i].key->str, key) == 0)
            return &map->c.pairs[i];
    return NULL;
}

/* Appends a pair, keeping the key index (if any) in step. */
static void map_append(struct conv *cv, struct frame *f, struct keel_node *key, struct keel_node *value)
{
    grow_children(cv, f, sizeof(struct keel_pair));
    struct keel_node *m = f->node;
    m->c.pairs[m->n].key = key;
    m->c.pairs[m->n].value = value;
    m->n++;
    if (!f->keys && m->n > KEY_INDEX_FROM) {
        f->keys = calloc(1, sizeof(*f->keys));
        if (f->keys) {
            keel_map_init(f->keys);
            for (size_t i = 0; i < m->n; i++)
                keel_map_put(f->keys, m->c.pairs[i].key->str, m->c.pairs[i].key->len, (void *)(uintptr_t)(i + 1),
                             NULL);
        }
    } else if (f->keys) {
        keel_map_put(f->keys, key->str, key->len, (void *)(uintptr_t)m->n, NULL);
    }
}

static void frame_release(struct frame *f)
{
    if (f->keys) {
        keel_map_free(f->keys);
        free(f->keys);
        f->keys = NULL;
    }
}

/* Applies a `<<` merge: keys from value (a map or list of maps) that the
 * mapping does not already have. Explicit keys always win, as in YAML 1.1. */
static void apply_merge(struct conv *cv, struct frame *f, struct keel_node *value, const struct keel_loc *at)
{
    if (value->type == KEEL_NODE_SEQ) {
        for (size_t i = 0; i < value->n && !cv->failed; i++)
            apply_merge(cv, f, value->c.items[i], at);
        return;
    }
    if (value->type != KEEL_NODE_MAP) {
        conv_error(cv, at, "merge key '<<' needs a mapping or a list of mappings, got %s",
                   keel_node_type_name(value->type));
        return;
    }
    f->node->merged = true;
    for (size_t i = 0; i < value->n; i++) {
        if (map_find(f, value->c.pairs[i].key->str))
            continue;
        /* a copy of the key, marked as merged: an explicit key may replace it */
        struct keel_node *k = keel_arena_xalloc(cv->a, sizeof(*k));
        *k = *value->c.pairs[i].key;
        k->merged = true;
        map_append(cv, f, k, value->c.pairs[i].value);
    }
}

/* The field path of key inside the innermost open mapping ("spec.to.x"). */
static void key_path(const struct conv *cv, struct keel_path *path, const char *key)
{
    keel_path_init(path, NULL);
    for (unsigned i = 0; i < cv->depth; i++) {
        const struct frame *f = &cv->stack[i];
        if (f->node->type == KEEL_NODE_SEQ)
            keel_path_index(path, f->node->n);
        else if (i + 1 < cv->depth && f->pending_key)
            keel_path_key(path, f->pending_key->str);
    }
    keel_path_key(path, key);
}

/* Attaches a finished node to its parent (or makes it the root). */
static void attach(struct conv *cv, struct keel_node *nd)
{
    char cb[96]; /* clipped copies of user strings for messages */
    if (cv->depth == 0) {
        cv->root = nd;
        return;
    }
    struct frame *f = &cv->stack[cv->depth - 1];
    f->node->weight = sat_add(f->node->weight, nd->weight);
    if (f->node->weight > KEEL_YAML_MAX_NODES) {
        conv_error(cv, &nd->loc, "document too large: more than %u nodes (after expanding aliases)",
                   KEEL_YAML_MAX_NODES);
        return;
    }
    if (f->node->type == KEEL_NODE_SEQ) {
        grow_children(cv, f, sizeof(struct keel_node *));
        f->node->c.items[f->node->n++] = nd;
        return;
    }
    /* mapping: alternate key, value */
    if (!f->pending_key) {
        if (nd->type == KEEL_NODE_SEQ || nd->type == KEEL_NODE_MAP) {
            conv_error(cv, &nd->loc, "mapping keys must be plain strings, not a %s", keel_node_type_name(nd->type));
            return;
        }
        f->merge_key = !nd->quoted && strcmp(nd->str, "<<") == 0;
        /* keys are text whatever they look like; copy, since an aliased key is
         * shared with its anchor's other uses */
        struct keel_node *k = keel_arena_xalloc(cv->a, sizeof(*k));
        *k = *nd;
        k->type = KEEL_NODE_STRING;
        f->pending_key = k;
        return;
    }
    struct keel_node *key = f->pending_key;
    f->pending_key = NULL;
    if (f->merge_key) {
        apply_merge(cv, f, nd, &key->loc);
        return;
    }
    const struct keel_pair *dup = map_find(f, key->str);
    if (dup && !dup->key->merged) {
        /* reported, and the first value kept, so the rest of the document is
         * still checked and every mistake shows in one run */
        struct keel_path path;
        key_path(cv, &path, key->str);
        keel_diags_add(cv->d, KEEL_SEV_ERROR, &key->loc, keel_path_str(&path),
                       "duplicate key \"%s\" (first defined at line %u); YAML keys must be unique",
                       keel_str_clip(key->str, 80, cb, sizeof(cb)), dup->key->loc.line);
        return;
    }
    if (dup) {
        /* the key came from a merge: the explicit one replaces it */
        ((struct keel_pair *)dup)->key = key;
        ((struct keel_pair *)dup)->value = nd;
        return;
    }
    map_append(cv, f, key, nd);
}

static void open_collection(struct conv *cv, struct fy_event *fye, enum keel_node_type type, struct fy_token *anchor)
{
    struct keel_loc loc = event_loc(cv, fye);
    if (cv->depth >= KEEL_YAML_MAX_DEPTH) {
        conv_error(cv, &loc, "document nested too deeply (more than %u levels)", KEEL_YAML_MAX_DEPTH);
        return;
    }
    struct keel_node *nd = keel_arena_xalloc(cv->a, sizeof(*nd));
    nd->type = type;
    nd->loc = loc;
    nd->str = "";
    nd->weight = 1;
    struct frame *f = &cv->stack[cv->depth++];
    memset(f, 0, sizeof(*f));
    f->node = nd;
    f->anchor = token_text(cv, anchor);
}

static void close_collection(struct conv *cv)
{
    if (cv->depth == 0)
        return;
    struct frame *f = &cv->stack[--cv->depth];
    frame_release(f);
    if (f->pending_key) {
        /* cannot happen with a well-formed event stream; be safe */
        conv_error(cv, &f->pending_key->loc, "mapping key without a value");
        return;
    }
    register_anchor(cv, f->anchor, f->node);
    attach(cv, f->node);
}

/* Feeds one event into the document under construction. */
static void on_event(struct conv *cv, struct fy_event *fye)
{
    if (cv->failed)
        return;
    switch (fye->type) {
    case FYET_SCALAR: {
        struct keel_node *nd = make_scalar(cv, fye);
        if (!nd)
            return;
        register_anchor(cv, token_text(cv, fye->scalar.anchor), nd);
        attach(cv, nd);
        return;
    }
    case FYET_ALIAS: {
        struct keel_loc loc = event_loc(cv, fye);
        const char *name = token_text(cv, fye->alias.anchor);
        struct keel_node *target = name ? find_anchor(cv, name) : NULL;
        if (!target) {
            conv_error(cv, &loc, "alias *%s refers to an unknown anchor", name ? name : "?");
            return;
        }
        attach(cv, target); /* shared, not copied: the tree is read-only */
        return;
    }
    case FYET_SEQUENCE_START:
        open_collection(cv, fye, KEEL_NODE_SEQ, fye->sequence_start.anchor);
        return;
    case FYET_MAPPING_START:
        open_collection(cv, fye, KEEL_NODE_MAP, fye->mapping_start.anchor);
        return;
    case FYET_SEQUENCE_END:
    case FYET_MAPPING_END:
        close_collection(cv);
        return;
    default:
        return;
    }
}

/* Releases what open frames hold (a document that ended early). */
static void conv_release(struct conv *cv)
{
    for (unsigned i = 0; i < cv->depth; i++)
        frame_release(&cv->stack[i]);
    cv->depth = 0;
}

/* First byte that is not well-formed UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF); returns its offset, or len. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (i + need >= len)
            return i;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += need + 1;
    }
    return len;
}

static void report_parse_errors(struct fy_diag *diag, struct keel_diags *d, const char *file, uint32_t doc,
                                uint32_t base_line, uint32_t base_col)
{
    void *it = NULL;
    struct fy_diag_error *e;
    bool any = false;
    while ((e = fy_diag_errors_iterate(diag, &it)) != NULL) {
        if (e->type < FYET_ERROR)
            continue;
        /* collected errors carry 1-based positions already */
        struct keel_loc loc = {file, e->line > 0 ? (uint32_t)e->line + base_line : 0,
                               e->column > 0 ? (uint32_t)e->column + base_col : 0, doc};
        keel_diags_add(d, KEEL_SEV_ERROR, &loc, NULL, "YAML syntax error: %s", e->msg ? e->msg : "invalid YAML");
        any = true;
        break; /* the first error is the useful one; later ones cascade */
    }
    if (!any) {
        struct keel_loc loc = {file, 0, 0, doc};
        keel_diags_add(d, KEEL_SEV_ERROR, &loc, NULL, "YAML syntax error");
    }
}

static void quiet_output(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag;
    (void)user;
    (void)buf;
    (void)len;
}

int keel_yaml_load_buf(struct keel_arena *a, const char *name, const char *buf, size_t len, struct keel_diags *d,
                       keel_yaml_doc_cb cb, void *ctx)
{
    return keel_yaml_load_buf_at(a, name, buf, len, 0, 0, d, cb, ctx);
}

int keel_yaml_load_buf_at(struct keel_arena *a, const char *name, const char *buf, size_t len, uint32_t base_line,
                          uint32_t base_col, struct keel_diags *d, keel_yaml_doc_cb cb, void *ctx)
{
    const char *file = keel_arena_strdup(a, name);
    /* YAML is UTF-8 here; checking first also keeps invalid bytes away from
     * libfyaml, which loops forever on some of them (e.g. "%\xfa") */
    size_t bad = utf8_invalid_at((const unsigned char *)buf, len);
    if (bad < len) {
        uint32_t line = 1, col = 1;
        for (size_t i = 0; i < bad; i++) {
            if (buf[i] == '\n') {
                line++;
                col = 1;
            } else if (((unsigned char)buf[i] & 0xC0) != 0x80) {
                col++;
            }
        }
        struct keel_loc loc = {file, line + base_line, col + base_col, 0};
        keel_diags_add(d, KEEL_SEV_ERROR, &loc, NULL,
                       "input is not valid UTF-8 (byte 0x%02x); YAML and JSON files must be UTF-8",
                       (unsigned char)buf[bad]);
        if (cb)
            cb(ctx, NULL, &loc);
        return 1;
    }
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = quiet_output;
    dcfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (!diag) {
        keel_diags_add(d, KEEL_SEV_ERROR, &(struct keel_loc){file, 0, 0, 0}, NULL, "out of memory");
        return KEEL_ENOMEM;
    }
    fy_diag_set_collect_errors(diag, true);
    struct fy_parse_cfg cfg = {
        .flags = FYPCF_QUIET | FYPCF_COLLECT_DIAG | FYPCF_DEFAULT_VERSION_1_2 | FYPCF_JSON_NONE |
                 FYPCF_SLOPPY_FLOW_INDENTATION, /* go-yaml (kubectl) accepts a closing ] left of its items */
        .diag = diag,
    };
    struct fy_parser *fyp = fy_parser_create(&cfg);
    if (!fyp || fy_parser_set_string(fyp, buf, len) != 0) {
        if (fyp)
            fy_parser_destroy(fyp);
        fy_diag_destroy(diag);
        keel_diags_add(d, KEEL_SEV_ERROR, &(struct keel_loc){file, 0, 0, 0}, NULL, "cannot start the YAML parser");
        return KEEL_EPARSE;
    }
    uint32_t doc = 0;
    int stop = 0;
    struct conv *cv = calloc(1, sizeof(*cv));
    if (!cv) {
        fy_parser_destroy(fyp);
        fy_diag_destroy(diag);
        return KEEL_ENOMEM;
    }
    struct keel_loc doc_loc = {file, 1, 1, 0};
    bool in_doc = false;
    for (;;) {
        struct fy_event *fye = fy_parser_parse(fyp);
        if (!fye) {
            if (fy_parser_get_stream_error(fyp)) {
                report_parse_errors(diag, d, file, doc, base_line, base_col);
                struct keel_loc loc = {file, 0, 0, doc};
                if (cb && !stop)
                    cb(ctx, NULL, &loc);
                doc++;
            }
            break;
        }
        enum fy_event_type et = fye->type;
        if (et == FYET_DOCUMENT_START) {
            conv_release(cv);
            memset(cv, 0, sizeof(*cv));
            cv->a = a;
            cv->d = d;
            cv->file = file;
            cv->src = buf;
            cv->srclen = len;
            cv->base_line = base_line;
            cv->base_col = base_col;
            cv->doc = doc;
            doc_loc = event_loc(cv, fye);
            in_doc = true;
        } else if (et == FYET_DOCUMENT_END) {
            in_doc = false;
            conv_release(cv);
            struct keel_node *root = cv->root;
            if (!cv->failed && (!root || root->type == KEEL_NODE_NULL)) {
                /* empty document or one holding only comments: not a resource */
            } else {
                struct keel_loc loc = root ? root->loc : doc_loc;
                loc.doc = doc;
                if (cb)
                    stop = cb(ctx, cv->failed ? NULL : root, &loc);
                doc++;
            }
        } else if (in_doc) {
            on_event(cv, fye);
        }
        fy_parser_event_free(fyp, fye);
        if (stop)
            break;
    }
    conv_release(cv);
    free(cv);
    fy_parser_destroy(fyp);
    fy_diag_destroy(diag);
    return (int)doc;
}

int keel_yaml_load_file(struct keel_arena *a, const char *path, struct keel_diags *d, keel_yaml_doc_cb cb, void *ctx)
{
    FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
    if (!fp) {
        keel_diags_add(d, KEEL_SEV_ERROR, &(struct keel_loc){path, 0, 0, 0}, NULL, "cannot open: %s",
                       strerror(errno));
        return KEEL_ENOENT;
    }
    struct keel_buf b;
    keel_buf_init(&b, KEEL_YAML_MAX_FILE);
    char chunk[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        rc = keel_buf_append(&b, chunk, n);
        if (rc)
            break;
    }
    bool ioerr = ferror(fp);
    if (fp != stdin)
        fclose(fp);
    if (rc || ioerr) {
        keel_diags_add(d, KEEL_SEV_ERROR, &(struct keel_loc){name, 0, 0, 0}, NULL, "cannot read: %s",
                       rc == KEEL_ETOOBIG ? "file larger than 256 MiB" : "read error");
        keel_buf_free(&b);
        return rc ? rc : KEEL_EIO;
    }
    rc = keel_yaml_load_buf(a, name, keel_buf_cstr(&b), b.len, d, cb, ctx);
    keel_buf_free(&b);
    return rc;
}

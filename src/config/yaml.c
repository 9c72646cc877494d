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
};

struct anchor {
    const char *name;
    struct keel_node *node;
};

struct conv {
    struct keel_arena *a;
    struct keel_diags *d;
    const char *file;
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
        loc.line = (uint32_t)m->line + 1;
        loc.col = (uint32_t)m->column + 1;
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
static struct keel_node *make_scalar(struct conv *cv, struct fy_event *fye)
{
    struct keel_node *nd = keel_arena_xalloc(cv->a, sizeof(*nd));
    nd->loc = event_loc(cv, fye);
    nd->weight = 1;
    size_t len = 0;
    const char *text = fye->scalar.value ? fy_token_get_text(fye->scalar.value, &len) : "";
    if (!text) {
        text = "";
        len = 0;
    }
    nd->str = keel_arena_strndup(cv->a, text, len);
    nd->len = len;
    enum fy_scalar_style style = fye->scalar.value ? fy_token_scalar_style(fye->scalar.value) : FYSS_PLAIN;
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

static const struct keel_pair *map_find(const struct keel_node *map, const char *key)
{
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->c.pairs[i].key->str, key) == 0)
            return &map->c.pairs[i];
    return NULL;
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
        if (map_find(f->node, value->c.pairs[i].key->str))
            continue;
        grow_children(cv, f, sizeof(struct keel_pair));
        f->node->c.pairs[f->node->n++] = value->c.pairs[i];
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
        nd->type = KEEL_NODE_STRING; /* keys are text whatever they look like */
        f->pending_key = nd;
        return;
    }
    struct keel_node *key = f->pending_key;
    f->pending_key = NULL;
    if (f->merge_key) {
        apply_merge(cv, f, nd, &key->loc);
        return;
    }
    const struct keel_pair *dup = map_find(f->node, key->str);
    if (dup && !f->node->merged) {
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
    grow_children(cv, f, sizeof(struct keel_pair));
    f->node->c.pairs[f->node->n].key = key;
    f->node->c.pairs[f->node->n].value = nd;
    f->node->n++;
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

static void report_parse_errors(struct fy_diag *diag, struct keel_diags *d, const char *file, uint32_t doc)
{
    void *it = NULL;
    struct fy_diag_error *e;
    bool any = false;
    while ((e = fy_diag_errors_iterate(diag, &it)) != NULL) {
        if (e->type < FYET_ERROR)
            continue;
        struct keel_loc loc = {file, e->line >= 0 ? (uint32_t)e->line + 1 : 0,
                               e->column >= 0 ? (uint32_t)e->column + 1 : 0, doc};
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
    const char *file = keel_arena_strdup(a, name);
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
                report_parse_errors(diag, d, file, doc);
                struct keel_loc loc = {file, 0, 0, doc};
                if (cb && !stop)
                    cb(ctx, NULL, &loc);
                doc++;
            }
            break;
        }
        enum fy_event_type et = fye->type;
        if (et == FYET_DOCUMENT_START) {
            memset(cv, 0, sizeof(*cv));
            cv->a = a;
            cv->d = d;
            cv->file = file;
            cv->doc = doc;
            doc_loc = event_loc(cv, fye);
            in_doc = true;
        } else if (et == FYET_DOCUMENT_END) {
            in_doc = false;
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

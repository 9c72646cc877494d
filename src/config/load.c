/*
 * load.c - from files to resources (see load.h).
 *
 * The life of one document: yaml.c gives a keel_node tree; handle_doc()
 * checks that it is an object with apiVersion and kind, finds the kind in
 * the generated table (or in the list of Kubernetes kinds Keel skips),
 * decodes metadata and body, checks metadata the way the API server would,
 * and runs the kind's validator. Diagnostics raised meanwhile are stamped
 * with the resource's identity and counted on it.
 */
#include "config/load.h"

#include "base/arena.h"
#include "base/err.h"
#include "base/str.h"
#include "config/decode.h"
#include "config/validate.h"
#include "config/validate_common.h"
#include "config/yaml.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void keel_loadset_init(struct keel_loadset *ls, const char *default_ns)
{
    memset(ls, 0, sizeof(*ls));
    ls->arena = keel_arena_new(1 << 16);
    if (!ls->arena) {
        fprintf(stderr, "keel: out of memory\n");
        abort();
    }
    keel_diags_init(&ls->diags);
    keel_vec_init(&ls->resources, sizeof(struct keel_resource *));
    ls->default_ns = keel_arena_strdup(ls->arena, default_ns ? default_ns : "default");
}

void keel_loadset_free(struct keel_loadset *ls)
{
    keel_vec_free(&ls->resources);
    keel_diags_free(&ls->diags);
    keel_arena_free(ls->arena);
    ls->arena = NULL;
}

static void err_at(struct keel_loadset *ls, const struct keel_loc *loc, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void err_at(struct keel_loadset *ls, const struct keel_loc *loc, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    keel_diags_vadd(&ls->diags, KEEL_SEV_ERROR, loc, path, fmt, ap);
    va_end(ap);
}

static struct keel_resource *new_resource(struct keel_loadset *ls, const struct keel_loc *loc,
                                          const struct keel_node *root)
{
    struct keel_resource *r = keel_arena_xalloc(ls->arena, sizeof(*r));
    r->loc = *loc;
    r->node = root;
    r->seq = ls->resources.len;
    struct keel_resource **slot = keel_vec_push(&ls->resources);
    if (!slot) {
        fprintf(stderr, "keel: out of memory\n");
        abort();
    }
    *slot = r;
    return r;
}

/* Splits "group/version" (or "v1" for the core group). */
static void split_api_version(struct keel_arena *a, const char *av, const char **group, const char **version)
{
    const char *slash = strrchr(av, '/');
    if (!slash) {
        *group = "";
        *version = av;
    } else {
        *group = keel_arena_strndup(a, av, (size_t)(slash - av));
        *version = slash + 1;
    }
}

static bool is_skipped(const char *group, const char *kind)
{
    for (size_t i = 0; i < keel_nskipped_kinds; i++) {
        const struct keel_skipped_kind *s = &keel_skipped_kinds[i];
        if (strcmp(s->group, group) == 0 && (strcmp(s->kind, "*") == 0 || strcmp(s->kind, kind) == 0))
            return true;
    }
    return false;
}

static bool is_istio_group(const char *group)
{
    return strcmp(group, "istio.io") == 0 || keel_cstr_has_suffix(group, ".istio.io");
}

static void known_kinds_list(char *buf, size_t n, const char *group)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < keel_nkinds && used + 40 < n; i++) {
        if (group && strcmp(keel_kinds[i].group, group) != 0)
            continue;
        used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "", keel_kinds[i].kind);
    }
}

static const char *nearest_kind(const char *kind)
{
    const char *best = NULL;
    unsigned bestd = 3;
    for (size_t i = 0; i < keel_nkinds; i++) {
        unsigned d = keel_str_edit_distance(kind, keel_kinds[i].kind, 2);
        if (d < bestd) {
            bestd = d;
            best = keel_kinds[i].kind;
        }
    }
    return best;
}

/* Resolves apiVersion + kind to a descriptor; reports and returns NULL when
 * the document cannot be read; sets *skip for kinds Keel does not read. */
static const struct keel_kind_desc *resolve_kind(struct keel_loadset *ls, struct keel_resource *r,
                                                 const struct keel_node *root, bool *skip)
{
    *skip = false;
    const struct keel_node *av = keel_node_get(root, "apiVersion");
    const struct keel_node *kn = keel_node_get(root, "kind");
    bool ok = true;
    if (!av || av->type == KEEL_NODE_NULL) {
        err_at(ls, &root->loc, "apiVersion", "missing required field \"apiVersion\"");
        ok = false;
    } else if (av->type != KEEL_NODE_STRING) {
        err_at(ls, &av->loc, "apiVersion", "expected string, got %s", keel_node_type_name(av->type));
        ok = false;
    }
    if (!kn || kn->type == KEEL_NODE_NULL) {
        err_at(ls, &root->loc, "kind", "missing required field \"kind\"");
        ok = false;
    } else if (kn->type != KEEL_NODE_STRING) {
        err_at(ls, &kn->loc, "kind", "expected string, got %s", keel_node_type_name(kn->type));
        ok = false;
    }
    if (!ok)
        return NULL;
    r->api_version = av->str;
    r->kind_name = kn->str;
    const char *group, *version;
    split_api_version(ls->arena, av->str, &group, &version);
    if (is_skipped(group, kn->str)) {
        *skip = true;
        return NULL;
    }
    const struct keel_kind_desc *k = keel_kind_find(kn->str);
    if (k && strcmp(k->group, group) == 0) {
        for (const char *const *v = k->versions; *v; v++)
            if (strcmp(*v, version) == 0)
                return k;
        char vers[160] = "";
        size_t used = 0;
        for (const char *const *v = k->versions; *v && used + 40 < sizeof(vers); v++)
            used += (size_t)snprintf(vers + used, sizeof(vers) - used, "%s%s%s%s", used ? ", " : "", group,
                                     *group ? "/" : "", *v);
        err_at(ls, &av->loc, "apiVersion", "%s is not served as \"%s\"; use one of: %s", k->kind, av->str, vers);
        return NULL;
    }
    if (k) {
        /* right kind, wrong group */
        err_at(ls, &av->loc, "apiVersion", "kind %s belongs to API group \"%s\", not \"%s\" (apiVersion %s%s%s)",
               k->kind, k->group, group, k->group, *k->group ? "/" : "", k->versions[0]);
        return NULL;
    }
    if (is_istio_group(group) || *group == '\0') {
        char list[600];
        known_kinds_list(list, sizeof(list), is_istio_group(group) ? group : NULL);
        const char *near = nearest_kind(kn->str);
        if (!*list)
            known_kinds_list(list, sizeof(list), NULL);
        if (near)
            err_at(ls, &kn->loc, "kind", "unknown kind \"%s\" for apiVersion %s: did you mean \"%s\"? (known: %s)",
                   kn->str, av->str, near, list);
        else
            err_at(ls, &kn->loc, "kind", "unknown kind \"%s\" for apiVersion %s; known kinds: %s", kn->str,
                   av->str, list);
        return NULL;
    }
    /* some other project's kind: not ours to judge */
    keel_diags_add(&ls->diags, KEEL_SEV_WARNING, &kn->loc, "kind",
                   "kind %s (apiVersion %s) is not a kind Keel reads; skipped without checks", kn->str, av->str);
    *skip = true;
    return NULL;
}

static void check_metadata(struct keel_loadset *ls, struct keel_resource *r, const struct keel_node *meta_node)
{
    char cb[96]; /* clipped copies of user strings for messages */
    const struct keel_object_meta *m = &r->meta;
    bool cluster_scoped = r->kind && r->kind->id == KEEL_KIND_NAMESPACE;
    if (!m->name && !m->generate_name) {
        err_at(ls, meta_node ? &meta_node->loc : &r->loc, "metadata.name",
               "Required value: missing required field \"name\"");
    } else if (m->name && !keel_valid_dns1123_subdomain(m->name)) {
        struct keel_loc loc = keel_obj_loc(&m->_o, "name");
        err_at(ls, &loc, "metadata.name",
               "invalid name \"%s\": must be a lowercase RFC 1123 subdomain (letters a-z, digits, '-' and '.', "
               "starting and ending with a letter or digit, at most 253 characters)",
               keel_str_clip(m->name, 80, cb, sizeof(cb)));
    }
    if (m->namespace_ && !cluster_scoped && !keel_valid_dns1123_label(m->namespace_)) {
        struct keel_loc loc = keel_obj_loc(&m->_o, "namespace");
        err_at(ls, &loc, "metadata.namespace",
               "invalid namespace \"%s\": must be a lowercase RFC 1123 label (a-z, 0-9 and '-', at most 63 "
               "characters)",
               keel_str_clip(m->namespace_, 80, cb, sizeof(cb)));
    }
    for (size_t i = 0; i < m->n_labels; i++) {
        const struct keel_kv_str *kv = &m->labels[i];
        if (!keel_valid_label_key(kv->key) || !keel_valid_label_value(kv->value)) {
            struct keel_loc loc = keel_obj_loc(&m->_o, "labels");
            char path[300];
            snprintf(path, sizeof(path), "metadata.labels.%s", kv->key);
            err_at(ls, &loc, path, "invalid label %s: \"%s\"", keel_valid_label_key(kv->key) ? "value" : "key",
                   keel_str_clip(keel_valid_label_key(kv->key) ? kv->value : kv->key, 80, cb, sizeof(cb)));
        }
    }
}

static void *body_field(const struct keel_kind_desc *k, void *body, const char *name)
{
    for (unsigned i = 0; i < k->body->nfields; i++)
        if (strcmp(k->body->fields[i].name, name) == 0)
            return *(void **)((char *)body + k->body->fields[i].offset);
    return NULL;
}

struct mesh_doc {
    struct keel_node *root;
    int count;
};

static int take_mesh_doc(void *ctx, struct keel_node *root, const struct keel_loc *loc)
{
    (void)loc;
    struct mesh_doc *md = ctx;
    if (md->count++ == 0)
        md->root = root;
    return 0;
}

static void decode_mesh(struct keel_loadset *ls, struct keel_resource *r)
{
    const struct keel_node *data = keel_node_get(r->node, "data");
    const struct keel_pair *p = data ? keel_node_pair(data, "mesh") : NULL;
    if (!p || p->value->type != KEEL_NODE_STRING)
        return;
    const struct keel_node *v = p->value;
    struct mesh_doc md = {0};
    size_t before = keel_diags_count(&ls->diags);
    /* positions inside the text map back onto the file: a block scalar's
     * location is its first content line, indented (by convention) two
     * columns past its key; a flow scalar starts at its own column */
    uint32_t dline = v->loc.line ? v->loc.line - 1 : 0;
    uint32_t dcol = v->block ? p->key->loc.col + 1 : v->loc.col - (v->quoted ? 0 : 1);
    keel_yaml_load_buf_at(ls->arena, v->loc.file, v->str, v->len, dline, dcol, &ls->diags, take_mesh_doc, &md);
    for (size_t i = before; i < keel_diags_count(&ls->diags); i++) {
        struct keel_diag *g = keel_diags_at(&ls->diags, i);
        g->loc.doc = r->loc.doc;
        if (!g->path)
            g->path = "data.mesh";
    }
    if (!md.root || md.root->type == KEEL_NODE_NULL)
        return;
    struct keel_decode dc;
    keel_decode_init(&dc, ls->arena, &ls->diags, "data");
    keel_path_field(&dc.path, "mesh");
    void *mesh = keel_arena_xalloc(ls->arena, keel_msg_mesh_config.size);
    keel_decode_msg(&dc, &keel_msg_mesh_config, md.root, mesh);
    r->mesh = mesh;
    const char *name = r->meta.name ? r->meta.name : "";
    if (strcmp(name, "istio") != 0 && !keel_cstr_has_prefix(name, "istio-"))
        keel_diags_add(&ls->diags, KEEL_SEV_WARNING, &p->key->loc, "data.mesh",
                       "this ConfigMap holds mesh config, but Istio reads mesh config only from the ConfigMap named "
                       "\"istio\" (or \"istio-<revision>\") in the control-plane namespace");
}

static void handle_object(struct keel_loadset *ls, struct keel_resource *r, const struct keel_node *root)
{
    if (root->type != KEEL_NODE_MAP) {
        err_at(ls, &root->loc, NULL,
               "expected a Kubernetes object (a mapping with apiVersion, kind, metadata and spec), got %s",
               keel_node_type_name(root->type));
        return;
    }
    bool skip;
    r->kind = resolve_kind(ls, r, root, &skip);
    if (skip) {
        r->status = KEEL_RES_SKIPPED;
        const struct keel_node *meta = keel_node_get(root, "metadata");
        r->meta.name = keel_node_get_str(meta, "name");
        r->ns = keel_node_get_str(meta, "namespace");
        return;
    }
    const struct keel_node *meta = keel_node_get(root, "metadata");
    struct keel_decode dc;
    if (meta && meta->type != KEEL_NODE_NULL) {
        keel_decode_init(&dc, ls->arena, &ls->diags, "metadata");
        keel_decode_msg(&dc, &keel_msg_object_meta, meta, &r->meta);
    }
    bool cluster_scoped = r->kind && r->kind->id == KEEL_KIND_NAMESPACE;
    r->ns = r->meta.namespace_ ? r->meta.namespace_ : (cluster_scoped ? NULL : ls->default_ns);
    if (!r->kind)
        return;
    check_metadata(ls, r, meta);
    const struct keel_msgdesc *body = r->kind->body;
    /* the body message describes everything but the envelope */
    struct keel_node *rest = keel_arena_xalloc(ls->arena, sizeof(*rest));
    *rest = *root;
    rest->c.pairs = keel_arena_xalloc(ls->arena, sizeof(struct keel_pair) * (root->n + 1));
    rest->n = 0;
    for (size_t i = 0; i < root->n; i++) {
        const char *k = root->c.pairs[i].key->str;
        if (strcmp(k, "apiVersion") == 0 || strcmp(k, "kind") == 0 || strcmp(k, "metadata") == 0)
            continue;
        rest->c.pairs[rest->n++] = root->c.pairs[i];
    }
    r->body = keel_arena_xalloc(ls->arena, body->size);
    keel_decode_init(&dc, ls->arena, &ls->diags, NULL);
    keel_decode_msg(&dc, body, rest, r->body);
    if (r->kind->kclass == KEEL_KIND_ISTIO) {
        r->spec = body_field(r->kind, r->body, "spec");
        const struct keel_node *spec = keel_node_get(root, "spec");
        if (!spec)
            err_at(ls, &root->loc, "spec", "Required value: missing required field \"spec\"");
        else if (spec->type == KEEL_NODE_NULL)
            err_at(ls, &spec->loc, "spec",
                   "spec in body must be of type object: \"null\" (an Istio resource needs a spec)");
    }
    if (r->kind->id == KEEL_KIND_CONFIG_MAP)
        decode_mesh(ls, r);
    keel_validate_resource(&ls->diags, r);
}

struct doc_ctx {
    struct keel_loadset *ls;
    size_t mark; /* diagnostics before this index belong to earlier documents */
};

static void finish_resource(struct keel_loadset *ls, struct keel_resource *r, size_t first_diag)
{
    keel_diags_set_resource(&ls->diags, first_diag, r->kind ? r->kind->kind : r->kind_name, r->ns, r->meta.name);
    for (size_t i = first_diag; i < keel_diags_count(&ls->diags); i++) {
        struct keel_diag *g = keel_diags_at(&ls->diags, i);
        g->loc.doc = r->loc.doc;
        if (!g->loc.file)
            g->loc.file = r->loc.file;
        if (g->sev == KEEL_SEV_ERROR)
            r->errors++;
        else
            r->warnings++;
    }
    if (r->status != KEEL_RES_SKIPPED)
        r->status = r->errors ? KEEL_RES_INVALID : KEEL_RES_VALID;
    if (r->status == KEEL_RES_INVALID)
        ls->invalid++;
    else if (r->status == KEEL_RES_SKIPPED)
        ls->skipped++;
}

static void handle_root(struct keel_loadset *ls, const struct keel_node *root, const struct keel_loc *loc, int depth,
                        size_t first)
{
    /* kind: List holds its objects under items */
    if (root && root->type == KEEL_NODE_MAP && depth == 0) {
        const char *kind = keel_node_get_str(root, "kind");
        const char *av = keel_node_get_str(root, "apiVersion");
        const struct keel_node *items = keel_node_get(root, "items");
        if (kind && strcmp(kind, "List") == 0 && av && strcmp(av, "v1") == 0) {
            if (!items || items->type != KEEL_NODE_SEQ) {
                struct keel_resource *r = new_resource(ls, loc, root);
                r->kind_name = "List";
                err_at(ls, loc, "items", "a List needs an \"items\" list");
                finish_resource(ls, r, first);
                return;
            }
            for (size_t i = 0; i < items->n; i++) {
                struct keel_loc il = items->c.items[i]->loc;
                il.doc = loc->doc;
                handle_root(ls, items->c.items[i], &il, depth + 1, i == 0 ? first : keel_diags_count(&ls->diags));
            }
            return;
        }
    }
    struct keel_resource *r = new_resource(ls, loc, root);
    if (root)
        handle_object(ls, r, root);
    finish_resource(ls, r, first);
}

static int on_doc(void *ctx, struct keel_node *root, const struct keel_loc *loc)
{
    struct doc_ctx *dc = ctx;
    struct keel_loadset *ls = dc->ls;
    /* everything reported since the previous document (YAML-level problems
     * such as duplicate keys included) belongs to this one */
    if (!root) {
        struct keel_resource *r = new_resource(ls, loc, NULL);
        finish_resource(ls, r, dc->mark);
    } else {
        handle_root(ls, root, loc, 0, dc->mark);
    }
    dc->mark = keel_diags_count(&ls->diags);
    return 0;
}

int keel_load_buf(struct keel_loadset *ls, const char *name, const char *buf, size_t len)
{
    struct doc_ctx dc = {ls, keel_diags_count(&ls->diags)};
    ls->files++;
    int rc = keel_yaml_load_buf(ls->arena, name, buf, len, &ls->diags, on_doc, &dc);
    return rc < 0 ? rc : 0;
}

static bool wanted_file(const char *name)
{
    return keel_cstr_has_suffix(name, ".yaml") || keel_cstr_has_suffix(name, ".yml") ||
           keel_cstr_has_suffix(name, ".json");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_dir(struct keel_loadset *ls, const char *path, int depth)
{
    if (depth > 32) {
        err_at(ls, &(struct keel_loc){path, 0, 0, 0}, NULL, "folders nested too deeply");
        return KEEL_EINVAL;
    }
    DIR *d = opendir(path);
    if (!d) {
        err_at(ls, &(struct keel_loc){path, 0, 0, 0}, NULL, "cannot open folder: %s", strerror(errno));
        return KEEL_EIO;
    }
    struct keel_vec names;
    keel_vec_init(&names, sizeof(char *));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char **slot = keel_vec_push(&names);
        if (!slot)
            break;
        *slot = keel_arena_printf(ls->arena, "%s/%s", path, e->d_name);
    }
    closedir(d);
    if (names.len)
        qsort(names.items, names.len, sizeof(char *), cmp_str);
    int rc = 0;
    for (size_t i = 0; i < names.len; i++) {
        const char *p = *(char **)keel_vec_at(&names, i);
        struct stat st;
        if (stat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            int r = load_dir(ls, p, depth + 1);
            if (r)
                rc = r;
        } else if (S_ISREG(st.st_mode) && wanted_file(p)) {
            int r = keel_yaml_load_file(ls->arena, p, &ls->diags, on_doc,
                                        &(struct doc_ctx){ls, keel_diags_count(&ls->diags)});
            ls->files++;
            if (r < 0)
                rc = r;
        }
    }
    keel_vec_free(&names);
    return rc;
}

int keel_load_path(struct keel_loadset *ls, const char *path)
{
    if (strcmp(path, "-") != 0) {
        struct stat st;
        if (stat(path, &st) != 0) {
            err_at(ls, &(struct keel_loc){path, 0, 0, 0}, NULL, "cannot read: %s", strerror(errno));
            return KEEL_ENOENT;
        }
        if (S_ISDIR(st.st_mode))
            return load_dir(ls, path, 0);
    }
    ls->files++;
    int rc = keel_yaml_load_file(ls->arena, path, &ls->diags, on_doc,
                                 &(struct doc_ctx){ls, keel_diags_count(&ls->diags)});
    return rc < 0 ? rc : 0;
}

/*
 * loader_fuzz.c - libFuzzer target: arbitrary bytes through the whole loader.
 *
 * Each input is handed to keel_load_buf() in a fresh keel_loadset, exactly
 * as `keel validate` would read one file: YAML/JSON parsing (config/yaml.c),
 * envelope checks and `kind: List` unrolling (config/load.c), schema decoding
 * (config/decode.c), the ConfigMap `data.mesh` re-parse and the per-kind
 * validators. Then every diagnostic and resource is formatted the way the
 * CLI prints them (text and JSON), so the strings the loader stored are read
 * back in full. The loadset is freed at the end: ASan's leak checker fails
 * the run if anything survives it.
 *
 * Build: cmake --preset fuzz && cmake --build --preset fuzz; run: tests/fuzz/run.sh.
 */
#include "base/buf.h"
#include "base/diag.h"
#include "config/load.h"
#include "config/resource.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *sev_name(enum keel_severity s)
{
    return s == KEEL_SEV_ERROR ? "error" : "warning";
}

/* The text line `keel validate` prints for one diagnostic. */
static void format_text(struct keel_buf *b, const struct keel_diag *g)
{
    keel_buf_reset(b);
    keel_buf_puts(b, g->loc.file ? g->loc.file : "<input>");
    if (g->loc.line)
        keel_buf_printf(b, ":%u:%u", g->loc.line, g->loc.col);
    keel_buf_printf(b, ": %s: ", sev_name(g->sev));
    if (g->kind) {
        keel_buf_puts(b, g->kind);
        if (g->name)
            keel_buf_printf(b, " %s%s%s", g->ns ? g->ns : "", g->ns ? "/" : "", g->name);
        keel_buf_puts(b, ": ");
    }
    if (g->path)
        keel_buf_printf(b, "%s: ", g->path);
    keel_buf_puts(b, g->msg);
}

static void json_kv(struct keel_buf *b, const char *key, const char *val)
{
    keel_buf_printf(b, ", \"%s\": ", key);
    if (val)
        keel_buf_json_str(b, val);
    else
        keel_buf_puts(b, "null");
}

/* The JSON objects `keel validate -o json` prints. */
static void format_json(struct keel_buf *b, const struct keel_loadset *ls)
{
    static const char *const status[] = {"valid", "invalid", "skipped"};
    char label[256];
    keel_buf_reset(b);
    for (size_t i = 0; i < keel_loadset_count(ls); i++) {
        const struct keel_resource *r = keel_loadset_at(ls, i);
        keel_buf_printf(b, "{\"doc\": %u, \"line\": %u", r->loc.doc, r->loc.line);
        json_kv(b, "file", r->loc.file);
        json_kv(b, "apiVersion", r->api_version);
        json_kv(b, "kind", r->kind ? r->kind->kind : r->kind_name);
        json_kv(b, "namespace", r->ns);
        json_kv(b, "name", r->meta.name);
        json_kv(b, "status", status[r->status]);
        json_kv(b, "label", keel_resource_label(r, label, sizeof(label)));
        keel_buf_printf(b, ", \"errors\": %u, \"warnings\": %u}\n", r->errors, r->warnings);
    }
    for (size_t i = 0; i < keel_diags_count(&ls->diags); i++) {
        const struct keel_diag *g = keel_diags_at(&ls->diags, i);
        keel_buf_printf(b, "{\"doc\": %u, \"line\": %u, \"column\": %u", g->loc.doc, g->loc.line, g->loc.col);
        json_kv(b, "severity", sev_name(g->sev));
        json_kv(b, "file", g->loc.file);
        json_kv(b, "kind", g->kind);
        json_kv(b, "namespace", g->ns);
        json_kv(b, "name", g->name);
        json_kv(b, "path", g->path);
        json_kv(b, "message", g->msg);
        keel_buf_puts(b, "}\n");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct keel_loadset ls;
    keel_loadset_init(&ls, NULL);
    keel_load_buf(&ls, "fuzz.yaml", (const char *)data, size);

    struct keel_buf b;
    keel_buf_init(&b, (size_t)1 << 24);
    for (size_t i = 0; i < keel_diags_count(&ls.diags); i++)
        format_text(&b, keel_diags_at(&ls.diags, i));
    format_json(&b, &ls);
    keel_buf_free(&b);

    /* summary counts must agree with the per-resource statuses */
    size_t invalid = 0, skipped = 0;
    for (size_t i = 0; i < keel_loadset_count(&ls); i++) {
        const struct keel_resource *r = keel_loadset_at(&ls, i);
        invalid += r->status == KEEL_RES_INVALID;
        skipped += r->status == KEEL_RES_SKIPPED;
    }
    if (invalid != ls.invalid || skipped != ls.skipped)
        __builtin_trap();

    keel_loadset_free(&ls);
    return 0;
}

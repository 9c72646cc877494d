/*
 * cmd_validate.c - `keel validate`: compiler-style diagnostics for config.
 *
 *   keel validate [-o text|json] [-n NAMESPACE] [-q] [-f] FILE|DIR|- ...
 *
 * Text output, one line per problem (then a summary on stderr):
 *   path:line:col: error: VirtualService default/reviews: spec.http[0].retries: ...
 * JSON output: one object with every resource (file, doc, status) and every
 * diagnostic, for machines and the conformance runner.
 * Exit status: 0 all valid (warnings allowed), 1 something invalid, 2 usage.
 */
#include "base/buf.h"
#include "base/diag.h"
#include "cli/cli.h"
#include "config/load.h"

#include <getopt.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void print_usage(FILE *fp)
{
    fprintf(fp, "usage: keel validate [-o text|json] [-n NAMESPACE] [-q] [-f] FILE|DIR|- ...\n"
                "\n"
                "Checks Istio resources (and the Kubernetes objects Keel reads) with istiod's rules.\n"
                "Folders are read recursively (*.yaml, *.yml, *.json); '-' reads standard input.\n"
                "\n"
                "  -o, --output FORMAT   text (default) or json\n"
                "  -n, --namespace NS    namespace for resources that name none (default: default)\n"
                "  -q, --quiet           print errors only, no warnings or summary\n"
                "  -f, --filename PATH   same as a positional PATH (kubectl/istioctl habit)\n"
                "\n"
                "Exit status: 0 valid (warnings allowed), 1 invalid, 2 usage error.\n");
}

static const char *sev_name(enum keel_severity s)
{
    return s == KEEL_SEV_ERROR ? "error" : "warning";
}

static void print_text(const struct keel_loadset *ls, bool quiet, bool color)
{
    for (size_t i = 0; i < keel_diags_count(&ls->diags); i++) {
        const struct keel_diag *g = keel_diags_at(&ls->diags, i);
        if (quiet && g->sev != KEEL_SEV_ERROR)
            continue;
        struct keel_buf b;
        keel_buf_init(&b, 1 << 16);
        keel_diag_format(g, color, &b);
        puts(keel_buf_cstr(&b));
        keel_buf_free(&b);
    }
}

static void json_kv(struct keel_buf *b, const char *key, const char *val, bool comma)
{
    keel_buf_printf(b, "%s\"%s\": ", comma ? ", " : "", key);
    if (val)
        keel_buf_json_str(b, val);
    else
        keel_buf_puts(b, "null");
}

static void print_json(const struct keel_loadset *ls)
{
    struct keel_buf b;
    keel_buf_init(&b, (size_t)1 << 30);
    keel_buf_printf(&b, "{\"valid\": %s,\n \"resources\": [", ls->invalid ? "false" : "true");
    for (size_t i = 0; i < keel_loadset_count(ls); i++) {
        const struct keel_resource *r = keel_loadset_at(ls, i);
        static const char *const status[] = {"valid", "invalid", "skipped"};
        keel_buf_puts(&b, i ? ",\n  {" : "\n  {");
        json_kv(&b, "file", r->loc.file, false);
        keel_buf_printf(&b, ", \"doc\": %u, \"line\": %u", r->loc.doc, r->loc.line);
        json_kv(&b, "apiVersion", r->api_version, true);
        json_kv(&b, "kind", r->kind ? r->kind->kind : r->kind_name, true);
        json_kv(&b, "namespace", r->ns, true);
        json_kv(&b, "name", r->meta.name, true);
        json_kv(&b, "status", status[r->status], true);
        keel_buf_printf(&b, ", \"errors\": %u, \"warnings\": %u}", r->errors, r->warnings);
    }
    keel_buf_puts(&b, "],\n \"diagnostics\": [");
    for (size_t i = 0; i < keel_diags_count(&ls->diags); i++) {
        const struct keel_diag *g = keel_diags_at(&ls->diags, i);
        keel_buf_puts(&b, i ? ",\n  {" : "\n  {");
        json_kv(&b, "severity", sev_name(g->sev), false);
        json_kv(&b, "file", g->loc.file, true);
        keel_buf_printf(&b, ", \"doc\": %u, \"line\": %u, \"column\": %u", g->loc.doc, g->loc.line, g->loc.col);
        json_kv(&b, "kind", g->kind, true);
        json_kv(&b, "namespace", g->ns, true);
        json_kv(&b, "name", g->name, true);
        json_kv(&b, "path", g->path, true);
        json_kv(&b, "message", g->msg, true);
        keel_buf_puts(&b, "}");
    }
    keel_buf_printf(&b,
                    "],\n \"summary\": {\"files\": %zu, \"resources\": %zu, \"invalid\": %zu, \"skipped\": %zu, "
                    "\"errors\": %zu, \"warnings\": %zu}}\n",
                    ls->files, keel_loadset_count(ls), ls->invalid, ls->skipped, ls->diags.errors, ls->diags.warnings);
    fwrite(keel_buf_cstr(&b), 1, b.len, stdout);
    keel_buf_free(&b);
}

int keel_cmd_validate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'}, {"namespace", required_argument, NULL, 'n'},
        {"quiet", no_argument, NULL, 'q'},        {"filename", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *format = "text";
    const char *ns = "default";
    bool quiet = false;
    const char **paths = calloc((size_t)argc + 1, sizeof(*paths)); /* never more paths than arguments */
    size_t npaths = 0;
    if (!paths) {
        fprintf(stderr, "keel validate: out of memory\n");
        return KEEL_EXIT_FAIL;
    }
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:n:qf:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            format = optarg;
            break;
        case 'n':
            ns = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case 'f':
            paths[npaths++] = optarg;
            break;
        case 'h':
            print_usage(stdout);
            free(paths);
            return KEEL_EXIT_OK;
        default:
            print_usage(stderr);
            free(paths);
            return KEEL_EXIT_USAGE;
        }
    }
    for (int i = optind; i < argc; i++)
        paths[npaths++] = argv[i];
    if (strcmp(format, "text") != 0 && strcmp(format, "json") != 0) {
        fprintf(stderr, "keel validate: unknown output format \"%s\" (use text or json)\n", format);
        free(paths);
        return KEEL_EXIT_USAGE;
    }
    if (npaths == 0) {
        fprintf(stderr, "keel validate: no input given\n\n");
        print_usage(stderr);
        free(paths);
        return KEEL_EXIT_USAGE;
    }
    struct keel_loadset ls;
    keel_loadset_init(&ls, ns);
    bool unreadable = false;
    for (size_t i = 0; i < npaths; i++)
        if (keel_load_path(&ls, paths[i]) < 0)
            unreadable = true;
    if (strcmp(format, "json") == 0) {
        print_json(&ls);
    } else {
        print_text(&ls, quiet, isatty(STDOUT_FILENO));
        if (!quiet)
            fprintf(stderr, "%zu resource%s checked: %zu invalid, %zu skipped (%zu error%s, %zu warning%s)\n",
                    keel_loadset_count(&ls), keel_loadset_count(&ls) == 1 ? "" : "s", ls.invalid, ls.skipped,
                    ls.diags.errors, ls.diags.errors == 1 ? "" : "s", ls.diags.warnings,
                    ls.diags.warnings == 1 ? "" : "s");
    }
    int rc = (ls.invalid || unreadable || ls.diags.errors) ? KEEL_EXIT_FAIL : KEEL_EXIT_OK;
    keel_loadset_free(&ls);
    free(paths);
    return rc;
}

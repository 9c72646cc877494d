/*
 * cmd_run.c - `keel run DIR`: a whole local mesh from one folder of Istio YAML (docs/run.md).
 *
 *   keel run DIR [--base-port N] [--state-dir DIR] [--concurrency N] [--gateway-ports written|base]
 *
 * Flags are parsed here; the supervisor is run/supervise.c, the plan (processes, ports, effective config)
 * run/plan.c. A bad flag exits 2 naming it.
 */
#include "cli/cli.h"
#include "run/supervise.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *fp)
{
    fprintf(
        fp,
        "usage: keel run DIR [--base-port N] [--state-dir DIR] [--concurrency N] [--gateway-ports written|base]\n"
        "\n"
        "Runs a local mesh from a folder of Istio YAML: one gateway proxy per Gateway selector, one sidecar\n"
        "per workload (WorkloadEntry at 127.0.0.1, or Deployment), and the workload itself when its\n"
        "annotation keel.dev/command says how. Ports are printed; the folder is watched and every proxy\n"
        "reloads on a valid change; Ctrl-C stops everything.\n"
        "\n"
        "  --base-port N        first port keel run hands out (default 20000)\n"
        "  --state-dir DIR      effective config, logs and ports.json (default $XDG_RUNTIME_DIR or /tmp/keel-run-PID,\n"
        "                       removed at exit; a folder given here keeps its logs)\n"
        "  --concurrency N      worker threads per proxy (default 1)\n"
        "  --gateway-ports M    written (default): Gateway ports as in the YAML unless privileged or taken;\n"
        "                       base: every gateway port from the base too\n");
}

static bool parse_num(const char *flag, const char *s, unsigned long lo, unsigned long hi, unsigned *out)
{
    char *end = NULL;
    bool ok = *s >= '0' && *s <= '9';
    unsigned long v = 0;
    if (ok) {
        v = strtoul(s, &end, 10);
        ok = *end == '\0' && v >= lo && v <= hi;
    }
    if (!ok) {
        fprintf(stderr, "keel run: --%s wants a whole number from %lu to %lu, got \"%s\"\n", flag, lo, hi, s);
        return false;
    }
    *out = (unsigned)v;
    return true;
}

int keel_cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"base-port", required_argument, NULL, 'b'},
        {"state-dir", required_argument, NULL, 's'},
        {"concurrency", required_argument, NULL, 'j'},
        {"gateway-ports", required_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct keel_run_options o = {.base_port = 20000, .concurrency = 1};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":b:s:j:g:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (!parse_num("base-port", optarg, 1024, 65000, &o.base_port))
                return KEEL_EXIT_USAGE;
            break;
        case 's':
            o.state_dir = optarg;
            break;
        case 'j':
            if (!parse_num("concurrency", optarg, 1, 64, &o.concurrency))
                return KEEL_EXIT_USAGE;
            break;
        case 'g':
            if (strcmp(optarg, "written") == 0)
                o.gateway_ports_from_base = false;
            else if (strcmp(optarg, "base") == 0)
                o.gateway_ports_from_base = true;
            else {
                fprintf(stderr, "keel run: --gateway-ports wants \"written\" or \"base\", got \"%s\"\n", optarg);
                return KEEL_EXIT_USAGE;
            }
            break;
        case 'h':
            usage(stdout);
            return KEEL_EXIT_OK;
        case ':':
            fprintf(stderr, "keel run: %s needs a value\n", argv[optind - 1]);
            usage(stderr);
            return KEEL_EXIT_USAGE;
        default:
            fprintf(stderr, "keel run: unknown flag \"%s\"\n", argv[optind - 1]);
            usage(stderr);
            return KEEL_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "keel run: which folder? (keel run DIR)\n");
        usage(stderr);
        return KEEL_EXIT_USAGE;
    }
    if (optind + 1 < argc) {
        fprintf(stderr, "keel run: unexpected argument \"%s\" (one folder only)\n", argv[optind + 1]);
        return KEEL_EXIT_USAGE;
    }
    o.dir = argv[optind];
    struct stat st;
    if (stat(o.dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "keel run: %s is not a folder\n", o.dir);
        return KEEL_EXIT_USAGE;
    }
    static char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        fprintf(stderr, "keel run: cannot find this program's path (/proc/self/exe)\n");
        return KEEL_EXIT_FAIL;
    }
    self[n] = '\0';
    o.self = self;
    o.table = isatty(STDOUT_FILENO);
    return keel_run_main(&o);
}

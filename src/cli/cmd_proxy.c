/*
 * cmd_proxy.c - `keel proxy`: run the data plane, or wait for it.
 *
 *   keel proxy router  --config DIR [--labels k=v,...] [--namespace NS] [--admin ADDR] [--concurrency N]
 *   keel proxy sidecar --config DIR (--workload NAME.NS | --labels k=v,... [--namespace NS])
 *                      [--service-account SA] [--outbound ADDR] [--inbound ADDR] [--admin ADDR] [--concurrency N]
 *   keel proxy wait    [--admin ADDR] [--timeout SECONDS]
 *   common: [--dns-server IP:PORT[,IP:PORT...]] (else $KEEL_DNS_SERVER, else /etc/resolv.conf)
 *           [--locality REGION[/ZONE[/SUBZONE]]] (else the workload's WorkloadEntry locality, else the
 *           topology.kubernetes.io/region|zone and topology.istio.io/subzone labels)
 *
 * Bad arguments end with exit status 2 and a message naming the flag: numbers must be whole numbers in
 * range (no silent 0 for "--concurrency abc"), and --inbound must be IP:PORT (a sidecar's, never a router's).
 */
#include "base/arena.h"
#include "base/log.h"
#include "cli/cli.h"
#include "config/schema.h"
#include "net/sock.h"
#include "proxy/proxy.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: keel proxy router  --config DIR [--labels k=v,...] [--namespace NS] [--admin ADDR]\n"
            "                          [--concurrency N] [--drain SECONDS] [--no-watch] [--log-level LEVEL]\n"
            "                          [--dns-server IP:PORT[,IP:PORT...]] [--locality REGION/ZONE/SUBZONE]\n"
            "       keel proxy sidecar --config DIR (--workload NAME.NAMESPACE | --labels k=v,... [--namespace NS])\n"
            "                          [--service-account SA] [--outbound ADDR] [--inbound ADDR] [--admin ADDR]\n"
            "                          [--concurrency N] [--drain SECONDS] [--no-watch] [--log-level LEVEL]\n"
            "                          [--dns-server IP:PORT[,IP:PORT...]] [--locality REGION/ZONE/SUBZONE]\n"
            "       keel proxy wait    [--admin ADDR] [--timeout SECONDS]\n"
            "\n"
            "router:  serves every server of every Gateway whose selector matches --labels (default\n"
            "         istio=ingressgateway), on the server's port.\n"
            "sidecar: an outbound HTTP listener (default 127.0.0.1:15001, usable as the app's http_proxy)\n"
            "         that routes by Host and port with the mesh's VirtualServices and DestinationRules;\n"
            "         an inbound listener (default 127.0.0.1:15006, HTTP by the Host's port) and one per port\n"
            "         of the workload on the inbound IP, forwarding to the app (docs/proxy.md \"Inbound\").\n"
            "The config folder is watched: valid changes apply without dropping connections; invalid ones\n"
            "are refused and the last good config keeps serving. Admin API on --admin (127.0.0.1:15000).\n"
            "ServiceEntry endpoints that are DNS names are resolved with /etc/hosts and the servers of\n"
            "--dns-server (else $KEEL_DNS_SERVER, else /etc/resolv.conf), and refreshed (dnsRefreshRate).\n");
}

/* A whole number in [0, max] for FLAG; false (after saying why on stderr) otherwise. */
static bool parse_count(const char *flag, const char *s, unsigned long max, unsigned *out)
{
    char *end = NULL;
    unsigned long v = 0;
    bool ok = *s >= '0' && *s <= '9';
    if (ok) {
        v = strtoul(s, &end, 10);
        ok = *end == '\0' && v <= max;
    }
    if (!ok) {
        fprintf(stderr, "keel proxy: --%s wants a whole number from 0 to %lu, got \"%s\"\n", flag, max, s);
        return false;
    }
    *out = (unsigned)v;
    return true;
}

/* "a=b,c=d" -> kv list in the arena; NULL on a malformed list */
static struct keel_kv_str *parse_labels(struct keel_arena *a, const char *s, size_t *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    struct keel_kv_str *kv = keel_arena_xalloc(a, cap * sizeof(*kv));
    *n = 0;
    char *copy = keel_arena_strdup(a, s);
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok)
            return NULL;
        *eq = '\0';
        kv[*n].key = tok;
        kv[*n].value = eq + 1;
        (*n)++;
    }
    return kv;
}

int keel_cmd_proxy(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? KEEL_EXIT_USAGE : KEEL_EXIT_OK;
    }
    const char *mode = argv[1];
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},        {"labels", required_argument, NULL, 'l'},
        {"namespace", required_argument, NULL, 'n'},     {"admin", required_argument, NULL, 'a'},
        {"concurrency", required_argument, NULL, 'j'},   {"workload", required_argument, NULL, 'w'},
        {"service-account", required_argument, NULL, 's'}, {"outbound", required_argument, NULL, 'o'},
        {"inbound", required_argument, NULL, 'i'},       {"timeout", required_argument, NULL, 't'},
        {"drain", required_argument, NULL, 'd'},         {"no-watch", no_argument, NULL, 'W'},
        {"log-level", required_argument, NULL, 'L'},     {"help", no_argument, NULL, 'h'},
        {"dns-server", required_argument, NULL, 'D'},    {"locality", required_argument, NULL, 'Z'},
        {NULL, 0, NULL, 0},
    };
    struct keel_arena *a = keel_arena_new(4096);
    struct keel_proxy_options o = {.watch = true, .outbound_addr = "127.0.0.1:15001", .drain_seconds = 5};
    const char *inbound = NULL;
    unsigned timeout = 60;
    const char *labels = NULL;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "c:l:n:a:j:w:s:o:i:t:d:WL:hD:Z:", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o.config_dir = optarg;
            break;
        case 'l':
            labels = optarg;
            break;
        case 'n':
            o.ns = optarg;
            break;
        case 'a':
            o.admin_addr = optarg;
            break;
        case 'j':
            if (!parse_count("concurrency", optarg, 1024, &o.concurrency))
                goto usage_error;
            break;
        case 'w':
            o.workload = optarg;
            break;
        case 's':
            o.service_account = optarg;
            break;
        case 'o':
            o.outbound_addr = optarg;
            break;
        case 'i': {
            struct keel_addr probe;
            if (keel_addr_parse(optarg, &probe) != 0 || keel_addr_port(&probe) == 0) {
                fprintf(stderr,
                        "keel proxy: --inbound wants IP:PORT (e.g. 127.0.0.1:15006 or [::1]:15006), got \"%s\"\n",
                        optarg);
                goto usage_error;
            }
            inbound = optarg;
            break;
        }
        case 't':
            if (!parse_count("timeout", optarg, 86400, &timeout))
                goto usage_error;
            break;
        case 'd':
            if (!parse_count("drain", optarg, 86400, &o.drain_seconds))
                goto usage_error;
            break;
        case 'W':
            o.watch = false;
            break;
        case 'D':
            o.dns_server = optarg;
            break;
        case 'Z': /* region[/zone[/subzone]]: no empty part, no wildcard */
            if (!optarg[0] || strchr(optarg, '*') || strstr(optarg, "//") || optarg[strlen(optarg) - 1] == '/' ||
                optarg[0] == '/') {
                fprintf(stderr, "keel proxy: --locality wants REGION[/ZONE[/SUBZONE]], got \"%s\"\n", optarg);
                goto usage_error;
            }
            o.locality = optarg;
            break;
        case 'L': {
            enum keel_log_level lv;
            if (keel_log_level_parse(optarg, &lv) != 0) {
                fprintf(stderr, "keel proxy: unknown log level \"%s\"\n", optarg);
                keel_arena_free(a);
                return KEEL_EXIT_USAGE;
            }
            keel_log_set_level(lv);
            break;
        }
        case 'h':
            usage(stdout);
            keel_arena_free(a);
            return KEEL_EXIT_OK;
        default:
            usage(stderr);
            keel_arena_free(a);
            return KEEL_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "keel proxy: unexpected argument \"%s\"\n", argv[optind]);
        goto usage_error;
    }
    int rc;
    if (strcmp(mode, "wait") == 0) {
        rc = keel_proxy_wait(o.admin_addr ? o.admin_addr : "127.0.0.1:15000", timeout);
        keel_arena_free(a);
        return rc;
    }
    if (strcmp(mode, "router") == 0)
        o.mode = KEEL_PROXY_MODE_ROUTER;
    else if (strcmp(mode, "sidecar") == 0)
        o.mode = KEEL_PROXY_MODE_SIDECAR;
    else {
        fprintf(stderr, "keel proxy: unknown mode \"%s\" (router, sidecar or wait)\n", mode);
        keel_arena_free(a);
        return KEEL_EXIT_USAGE;
    }
    if (inbound && o.mode != KEEL_PROXY_MODE_SIDECAR) {
        fprintf(stderr, "keel proxy: --inbound is for sidecars (a router serves its Gateways' ports)\n");
        keel_arena_free(a);
        return KEEL_EXIT_USAGE;
    }
    if (o.mode == KEEL_PROXY_MODE_SIDECAR)
        o.inbound_addr = inbound ? inbound : "127.0.0.1:15006";
    if (!o.config_dir) {
        fprintf(stderr, "keel proxy: --config DIR is required\n");
        keel_arena_free(a);
        return KEEL_EXIT_USAGE;
    }
    if (!o.dns_server) {
        const char *env = getenv("KEEL_DNS_SERVER");
        o.dns_server = env && *env ? env : NULL;
    }
    if (!labels && o.mode == KEEL_PROXY_MODE_ROUTER)
        labels = "istio=ingressgateway";
    if (labels) {
        o.labels = parse_labels(a, labels, &o.n_labels);
        if (!o.labels) {
            fprintf(stderr, "keel proxy: --labels wants k=v[,k=v...], got \"%s\"\n", labels);
            keel_arena_free(a);
            return KEEL_EXIT_USAGE;
        }
    }
    rc = keel_proxy_run(&o);
    keel_arena_free(a);
    return rc;

usage_error:
    keel_arena_free(a);
    return KEEL_EXIT_USAGE;
}

/*
 * cmd_sample_app.c - `keel sample-app`: a small HTTP/1.1 and h2c service for demos and tests.
 *
 *   keel sample-app [--listen ADDR:PORT] [--name NAME] [--version V] [--fail-rate F] [--fail-code CODE]
 *                   [--call URL]... [--concurrency N] [--log-level LEVEL]
 *
 * Flags only; the service is app/sample_app.c. --name and --version fall back to $SERVICE_NAME and
 * $SERVICE_VERSION. Bad arguments end with exit status 2 and a message naming the flag: numbers must be in range
 * and whole ("--fail-rate 2" or "--concurrency abc" are refused, never clamped), names must be safe in a header.
 */
#include "app/sample_app.h"
#include "base/log.h"
#include "cli/cli.h"
#include "net/sock.h"

#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: keel sample-app [--listen ADDR:PORT] [--name NAME] [--version V] [--fail-rate F]\n"
            "                       [--fail-code CODE] [--call URL]... [--concurrency N] [--log-level LEVEL]\n"
            "\n"
            "A small service for demos and tests (HTTP/1.1 and h2c on the same port):\n"
            "  /                name, version, the request and its headers; with --call, the answers of\n"
            "                   the services called (nested, so a call chain shows every hop)\n"
            "  /headers /ip     the request headers; the client's address\n"
            "  /status/CODE     answers CODE (200-599)\n"
            "  /delay/SECONDS   answers after SECONDS (0.5 allowed, at most 60) without blocking others\n"
            "  /healthz         200 while running (never failed by --fail-rate)\n"
            "Every answer carries x-app-name and x-app-version.\n"
            "\n"
            "  --listen ADDR:PORT  where to listen (default 127.0.0.1:8080)\n"
            "  --name NAME         service name (default $SERVICE_NAME, else sample-app)\n"
            "  --version V         version (default $SERVICE_VERSION, else v1)\n"
            "  --fail-rate F       answer this fraction of requests (0 to 1) with --fail-code\n"
            "  --fail-code CODE    status of injected failures (default 503)\n"
            "  --call URL          call URL on every request to / (repeatable, at most %d); through\n"
            "                      $http_proxy when set (a sidecar's outbound listener), else directly\n"
            "  --concurrency N     worker threads (default 1)\n"
            "See docs/sample-app.md.\n",
            KEEL_SAMPLE_MAX_CALLS);
}

/* NAME and V go into headers and JSON as they are: 1-64 of [A-Za-z0-9._-]. */
static bool valid_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* A whole number in [min, max] for FLAG; false (after saying why on stderr) otherwise. */
static bool parse_int(const char *flag, const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v = 0;
    bool ok = (*s >= '0' && *s <= '9');
    if (ok) {
        v = strtol(s, &end, 10);
        ok = *end == '\0' && v >= min && v <= max;
    }
    if (!ok) {
        fprintf(stderr, "keel sample-app: --%s wants a whole number from %ld to %ld, got \"%s\"\n", flag, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

int keel_cmd_sample_app(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"name", required_argument, NULL, 'n'},
        {"version", required_argument, NULL, 'v'},
        {"fail-rate", required_argument, NULL, 'f'},
        {"fail-code", required_argument, NULL, 'c'},
        {"call", required_argument, NULL, 'C'},
        {"concurrency", required_argument, NULL, 'j'},
        {"log-level", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *calls[KEEL_SAMPLE_MAX_CALLS];
    struct keel_sample_options o = {
        .listen = "127.0.0.1:8080",
        .name = getenv("SERVICE_NAME"),
        .version = getenv("SERVICE_VERSION"),
        .fail_code = 503,
        .calls = calls,
        .concurrency = 1,
        .call_timeout_ms = KEEL_SAMPLE_CALL_TIMEOUT_MS,
    };
    const char *name_from = o.name ? "$SERVICE_NAME" : "--name";
    const char *version_from = o.version ? "$SERVICE_VERSION" : "--version";
    int c;
    long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "l:n:v:f:c:C:j:L:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            o.listen = optarg;
            break;
        case 'n':
            o.name = optarg;
            name_from = "--name";
            break;
        case 'v':
            o.version = optarg;
            version_from = "--version";
            break;
        case 'f': {
            char *end = NULL;
            double f = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !isfinite(f) || f < 0 || f > 1) {
                fprintf(stderr, "keel sample-app: --fail-rate wants a fraction from 0 to 1 (such as 0.3), got \"%s\"\n",
                        optarg);
                return KEEL_EXIT_USAGE;
            }
            o.fail_rate = f;
            break;
        }
        case 'c':
            if (!parse_int("fail-code", optarg, 200, 599, &v))
                return KEEL_EXIT_USAGE;
            o.fail_code = (int)v;
            break;
        case 'C':
            if (o.ncalls == KEEL_SAMPLE_MAX_CALLS) {
                fprintf(stderr, "keel sample-app: --call given more than %d times\n", KEEL_SAMPLE_MAX_CALLS);
                return KEEL_EXIT_USAGE;
            }
            if (strncmp(optarg, "http://", 7) != 0 && strncmp(optarg, "https://", 8) != 0) {
                fprintf(stderr, "keel sample-app: --call wants an http:// or https:// URL, got \"%s\"\n", optarg);
                return KEEL_EXIT_USAGE;
            }
            calls[o.ncalls++] = optarg;
            break;
        case 'j':
            if (!parse_int("concurrency", optarg, 1, 64, &v))
                return KEEL_EXIT_USAGE;
            o.concurrency = (unsigned)v;
            break;
        case 'L': {
            enum keel_log_level lv;
            if (keel_log_level_parse(optarg, &lv) != 0) {
                fprintf(stderr, "keel sample-app: --log-level wants debug, info, warn, error or off, got \"%s\"\n",
                        optarg);
                return KEEL_EXIT_USAGE;
            }
            keel_log_set_level(lv);
            break;
        }
        case 'h':
            usage(stdout);
            return KEEL_EXIT_OK;
        default:
            usage(stderr);
            return KEEL_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "keel sample-app: unexpected argument \"%s\"\n", argv[optind]);
        return KEEL_EXIT_USAGE;
    }
    if (!o.name)
        o.name = "sample-app";
    if (!o.version)
        o.version = "v1";
    if (!valid_label(o.name)) {
        fprintf(stderr, "keel sample-app: %s wants 1 to 64 letters, digits, '.', '_' or '-', got \"%s\"\n", name_from,
                o.name);
        return KEEL_EXIT_USAGE;
    }
    if (!valid_label(o.version)) {
        fprintf(stderr, "keel sample-app: %s wants 1 to 64 letters, digits, '.', '_' or '-', got \"%s\"\n",
                version_from, o.version);
        return KEEL_EXIT_USAGE;
    }
    struct keel_addr addr;
    if (keel_addr_parse(o.listen, &addr) != 0) {
        fprintf(stderr, "keel sample-app: --listen wants IP:PORT, [IPv6]:PORT or :PORT, got \"%s\"\n", o.listen);
        return KEEL_EXIT_USAGE;
    }
    return keel_sample_app_run(&o);
}

/*
 * sample_route_fuzz.c - libFuzzer target: the sample app's request-path parsers (app/sample_handler.c) on hostile
 * bytes: keel_sample_route_parse() (which endpoint, /status/CODE, /delay/SECONDS) and keel_sample_parse_milli().
 *
 * The input is a request path as a client sends it. Every parse runs on an exact-size heap copy, so ASan catches
 * any read past the bytes given. Invariants checked (abort() on failure):
 *   - the route is one of the kinds; STATUS carries 200..599 and the path is "/status/" plus decimal digits;
 *     DELAY carries at most KEEL_SAMPLE_MAX_DELAY_MS; BAD_ARG has a reason and the path starts with /status/ or
 *     /delay/; ROOT, HEALTHZ, HEADERS and IP are exactly their paths;
 *   - keel_sample_parse_milli on the whole input: on success the value is within the cap, the input is read the
 *     same by strtod (up to the truncation to thousandths), and the value printed back ("S.mmm") parses to itself;
 *     on failure the output is untouched.
 * The corpus is replayed by ctest fuzz-replay/sample_route in every build (tests/fuzz/replay_main.c).
 *
 * Build: cmake --preset fuzz && cmake --build --preset fuzz --target sample_route_fuzz;
 * run: tests/fuzz/run.sh (corpus tests/fuzz/corpus/sample_route).
 */
#include "app/sample_handler.h"
#include "base/err.h"
#include "base/str.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROUTE_CHECK(cond)                                                                                              \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "sample_route_fuzz: invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);           \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static bool all_digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return n > 0;
}

static void check_route(struct keel_str path)
{
    struct keel_sample_route r = keel_sample_route_parse(path);
    switch (r.kind) {
    case KEEL_SAMPLE_ROUTE_ROOT:
        ROUTE_CHECK(keel_str_eq_c(path, "/"));
        break;
    case KEEL_SAMPLE_ROUTE_HEALTHZ:
        ROUTE_CHECK(keel_str_eq_c(path, "/healthz"));
        break;
    case KEEL_SAMPLE_ROUTE_HEADERS:
        ROUTE_CHECK(keel_str_eq_c(path, "/headers"));
        break;
    case KEEL_SAMPLE_ROUTE_IP:
        ROUTE_CHECK(keel_str_eq_c(path, "/ip"));
        break;
    case KEEL_SAMPLE_ROUTE_STATUS:
        ROUTE_CHECK(r.status >= 200 && r.status <= 599);
        ROUTE_CHECK(path.n > 8 && memcmp(path.p, "/status/", 8) == 0 && all_digits(path.p + 8, path.n - 8));
        break;
    case KEEL_SAMPLE_ROUTE_DELAY:
        ROUTE_CHECK(r.delay_ms <= KEEL_SAMPLE_MAX_DELAY_MS);
        ROUTE_CHECK(path.n > 7 && memcmp(path.p, "/delay/", 7) == 0);
        break;
    case KEEL_SAMPLE_ROUTE_BAD_ARG:
        ROUTE_CHECK(r.error != NULL);
        ROUTE_CHECK((path.n >= 8 && memcmp(path.p, "/status/", 8) == 0) ||
                    (path.n >= 7 && memcmp(path.p, "/delay/", 7) == 0));
        break;
    case KEEL_SAMPLE_ROUTE_NOT_FOUND:
        break;
    default:
        ROUTE_CHECK(!"unknown route kind");
    }
}

static void check_milli(struct keel_str s)
{
    const uint64_t max = 1000000; /* 1000 seconds */
    uint64_t out = 12345678;
    int rc = keel_sample_parse_milli(s, max, &out);
    if (rc != 0) {
        ROUTE_CHECK(rc == KEEL_EINVAL || rc == KEEL_ETOOBIG);
        ROUTE_CHECK(out == 12345678);
        return;
    }
    ROUTE_CHECK(out <= max);
    char *copy = malloc(s.n + 1); /* leading zeros make accepted inputs of any length */
    if (!copy)
        return;
    memcpy(copy, s.p, s.n);
    copy[s.n] = '\0';
    char *end = NULL;
    double v = strtod(copy, &end);
    ROUTE_CHECK(end == copy + s.n);
    free(copy);
    ROUTE_CHECK(fabs(floor(v * 1000.0 + 1e-6) - (double)out) <= 1.0);
    char back[32];
    snprintf(back, sizeof(back), "%llu.%03llu", (unsigned long long)(out / 1000), (unsigned long long)(out % 1000));
    uint64_t again = 0;
    ROUTE_CHECK(keel_sample_parse_milli(keel_str_c(back), max, &again) == 0 && again == out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    struct keel_str s = {copy, size};
    check_route(s);
    check_milli(s);
    free(copy);
    return 0;
}

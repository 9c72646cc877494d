/*
 * sni_fuzz.c - libFuzzer target: the ClientHello SNI parser (proxy/sni.c) on
 * hostile bytes.
 *
 * The input is the first bytes of a connection, as a client would send them.
 * Every parse runs on an exact-size heap copy, so ASan catches any read past
 * the bytes given. Invariants checked (abort() on failure):
 *   - the result is one of 0, KEEL_ENOTFOUND, KEEL_EAGAIN, KEEL_EPROTO,
 *     KEEL_ETOOBIG; a name found is a lower-case host name of 1..253 bytes
 *     and out_len is its length; nothing is written to out otherwise;
 *   - prefixes (several cut points) give KEEL_EAGAIN or the same result and
 *     name; once final, a result does not change when more bytes follow;
 *   - a ClientHello that parsed (with or without a name), cut into records of
 *     another size, parses the same;
 *   - a name found, put into a fresh ClientHello by sni_build_hello(), is found
 *     again.
 * tests/unit/proxy/sni_test.c replays the corpus through this file in every
 * unit test run (debug and ASan), without libFuzzer, and uses
 * sni_build_hello() for its own cases.
 *
 * Build: cmake --preset fuzz && cmake --build --preset fuzz --target sni_fuzz;
 * run: tests/fuzz/run.sh (corpus tests/fuzz/corpus/sni).
 */
#include "base/err.h"
#include "proxy/sni.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SNI_CHECK(cond)                                                                                                \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "sni_fuzz: invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);                    \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

/* Writes a minimal TLS 1.2-style ClientHello carrying `name` (NULL: no server_name extension), cut into handshake
 * records of at most `frag` bytes (0: one record). Returns the length written, or 0 when cap is too small. */
static size_t sni_build_hello(uint8_t *buf, size_t cap, const char *name, size_t frag)
{
    uint8_t body[1024];
    size_t b = 0, nl = name ? strlen(name) : 0;
    if (nl > 900)
        return 0;
    body[b++] = 3;
    body[b++] = 3;
    for (int i = 0; i < 32; i++)
        body[b++] = (uint8_t)(i * 7);
    body[b++] = 0; /* session id */
    body[b++] = 0;
    body[b++] = 2;
    body[b++] = 0xc0; /* TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 */
    body[b++] = 0x2f;
    body[b++] = 1;
    body[b++] = 0; /* null compression */
    size_t ext_at = b;
    body[b++] = 0;
    body[b++] = 0;
    /* an unrelated extension first (supported_versions), so the parser must skip one */
    body[b++] = 0x00;
    body[b++] = 0x2b;
    body[b++] = 0;
    body[b++] = 3;
    body[b++] = 2;
    body[b++] = 3;
    body[b++] = 3;
    if (name) {
        body[b++] = 0;
        body[b++] = 0;
        body[b++] = (uint8_t)((nl + 5) >> 8);
        body[b++] = (uint8_t)(nl + 5);
        body[b++] = (uint8_t)((nl + 3) >> 8);
        body[b++] = (uint8_t)(nl + 3);
        body[b++] = 0;
        body[b++] = (uint8_t)(nl >> 8);
        body[b++] = (uint8_t)nl;
        memcpy(body + b, name, nl);
        b += nl;
    }
    size_t ext_len = b - ext_at - 2;
    body[ext_at] = (uint8_t)(ext_len >> 8);
    body[ext_at + 1] = (uint8_t)ext_len;
    uint8_t msg[1100];
    msg[0] = 1;
    msg[1] = 0;
    msg[2] = (uint8_t)(b >> 8);
    msg[3] = (uint8_t)b;
    memcpy(msg + 4, body, b);
    size_t total = b + 4, out = 0;
    if (!frag || frag > 16384)
        frag = 16384;
    for (size_t off = 0; off < total; off += frag) {
        size_t k = total - off < frag ? total - off : frag;
        if (out + 5 + k > cap)
            return 0;
        buf[out++] = 22;
        buf[out++] = 3;
        buf[out++] = 1;
        buf[out++] = (uint8_t)(k >> 8);
        buf[out++] = (uint8_t)k;
        memcpy(buf + out, msg + off, k);
        out += k;
    }
    return out;
}

struct sni_result {
    int rc;
    char name[KEEL_SNI_MAX_NAME + 1];
    size_t len;
};

static struct sni_result sni_run(const uint8_t *p, size_t n)
{
    struct sni_result r;
    uint8_t *copy = malloc(n ? n : 1);
    SNI_CHECK(copy != NULL);
    if (n)
        memcpy(copy, p, n);
    memset(r.name, 0x5a, sizeof(r.name));
    r.len = (size_t)-1;
    r.rc = keel_sni_parse(copy, n, r.name, &r.len);
    free(copy);
    SNI_CHECK(r.rc == 0 || r.rc == KEEL_ENOTFOUND || r.rc == KEEL_EAGAIN || r.rc == KEEL_EPROTO ||
              r.rc == KEEL_ETOOBIG);
    if (r.rc == 0) {
        SNI_CHECK(r.len >= 1 && r.len <= KEEL_SNI_MAX_NAME && strlen(r.name) == r.len);
        for (size_t i = 0; i < r.len; i++) {
            char c = r.name[i];
            SNI_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.');
        }
        SNI_CHECK(r.name[0] != '.' && r.name[r.len - 1] != '.' && !strstr(r.name, ".."));
    } else {
        SNI_CHECK(r.len == (size_t)-1 && (uint8_t)r.name[0] == 0x5a); /* outputs untouched */
    }
    return r;
}

static void sni_same(const struct sni_result *a, const struct sni_result *b)
{
    SNI_CHECK(a->rc == b->rc);
    if (a->rc == 0)
        SNI_CHECK(a->len == b->len && memcmp(a->name, b->name, a->len) == 0);
}

/* Gathers the handshake bytes of a ClientHello that parsed; returns their length (0 if the records are odd). */
static size_t sni_gather(const uint8_t *p, size_t n, uint8_t *msg, size_t cap)
{
    size_t pos = 0, have = 0, need = 0;
    while (pos + 5 <= n) {
        size_t len = (size_t)p[pos + 3] << 8 | p[pos + 4];
        if (pos + 5 + len > n || have + len > cap)
            return 0;
        memcpy(msg + have, p + pos + 5, len);
        have += len;
        pos += 5 + len;
        if (!need && have >= 4)
            need = 4 + ((size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3]);
        if (need && have >= need)
            return have == need ? have : 0;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sni_result whole = sni_run(data, size);

    /* prefixes: the end minus one, the middle, and a cut chosen by the bytes themselves */
    size_t cuts[3] = {size ? size - 1 : 0, size / 2, 0};
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size && i < 64; i++)
        h = (h ^ data[i]) * 16777619u;
    cuts[2] = size ? h % size : 0;
    for (int i = 0; i < 3; i++) {
        struct sni_result part = sni_run(data, cuts[i]);
        if (part.rc != KEEL_EAGAIN)
            sni_same(&part, &whole);
    }

    /* final answers stay final when more bytes follow */
    if (whole.rc != KEEL_EAGAIN) {
        uint8_t *more = malloc(size + 7);
        SNI_CHECK(more != NULL);
        if (size)
            memcpy(more, data, size);
        memcpy(more + size, "\x16\x03\x01\x00\x01\x01\x00", 7);
        struct sni_result longer = sni_run(more, size + 7);
        sni_same(&longer, &whole);
        free(more);
    }

    if (whole.rc == 0 || whole.rc == KEEL_ENOTFOUND) {
        /* the same handshake message in records of another size */
        static uint8_t msg[KEEL_SNI_MAX_INPUT], wire[KEEL_SNI_MAX_INPUT * 6];
        size_t mlen = sni_gather(data, size, msg, sizeof(msg));
        SNI_CHECK(mlen > 0);
        size_t frag = (h >> 8) % 300 + 1, out = 0;
        for (size_t off = 0; off < mlen; off += frag) {
            size_t k = mlen - off < frag ? mlen - off : frag;
            memcpy(wire + out, "\x16\x03\x03", 3);
            wire[out + 3] = (uint8_t)(k >> 8);
            wire[out + 4] = (uint8_t)k;
            memcpy(wire + out + 5, msg + off, k);
            out += 5 + k;
        }
        struct sni_result again = sni_run(wire, out);
        if (out <= KEEL_SNI_MAX_INPUT)
            sni_same(&again, &whole);
        else
            SNI_CHECK(again.rc == KEEL_ETOOBIG);
    }

    if (whole.rc == 0) {
        static uint8_t fresh[4096];
        size_t n = sni_build_hello(fresh, sizeof(fresh), whole.name, (h % 5) * 17);
        SNI_CHECK(n > 0);
        struct sni_result rebuilt = sni_run(fresh, n);
        sni_same(&rebuilt, &whole);
    }
    return 0;
}

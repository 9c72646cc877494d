/*
 * str.c - string slice helpers (see str.h).
 */
#include "base/str.h"

#include "base/err.h"

#include <string.h>

struct keel_str keel_str_c(const char *s)
{
    struct keel_str r = {s ? s : "", s ? strlen(s) : 0};
    return r;
}

bool keel_str_eq(struct keel_str a, struct keel_str b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

bool keel_str_eq_c(struct keel_str a, const char *b)
{
    return keel_str_eq(a, keel_str_c(b));
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

bool keel_str_caseeq(struct keel_str a, struct keel_str b)
{
    if (a.n != b.n)
        return false;
    for (size_t i = 0; i < a.n; i++)
        if (lower((unsigned char)a.p[i]) != lower((unsigned char)b.p[i]))
            return false;
    return true;
}

bool keel_str_has_prefix(struct keel_str s, struct keel_str prefix)
{
    return s.n >= prefix.n && (prefix.n == 0 || memcmp(s.p, prefix.p, prefix.n) == 0);
}

bool keel_str_has_suffix(struct keel_str s, struct keel_str suffix)
{
    return s.n >= suffix.n && (suffix.n == 0 || memcmp(s.p + s.n - suffix.n, suffix.p, suffix.n) == 0);
}

bool keel_cstr_has_prefix(const char *s, const char *prefix)
{
    return keel_str_has_prefix(keel_str_c(s), keel_str_c(prefix));
}

bool keel_cstr_has_suffix(const char *s, const char *suffix)
{
    return keel_str_has_suffix(keel_str_c(s), keel_str_c(suffix));
}

bool keel_cstr_caseeq(const char *a, const char *b)
{
    return keel_str_caseeq(keel_str_c(a), keel_str_c(b));
}

bool keel_cstr_empty(const char *s)
{
    return !s || !*s;
}

int keel_str_to_u64(struct keel_str s, uint64_t max, uint64_t *out)
{
    if (s.n == 0)
        return KEEL_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < s.n; i++) {
        char c = s.p[i];
        if (c < '0' || c > '9')
            return KEEL_EINVAL;
        unsigned d = (unsigned)(c - '0');
        if (d > max || v > (max - d) / 10)
            return KEEL_ETOOBIG;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

unsigned keel_str_edit_distance(const char *a, const char *b, unsigned cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return cap + 1;
    unsigned row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        unsigned prev = row[0];
        row[0] = (unsigned)i;
        unsigned best = row[0];
        for (size_t j = 1; j <= lb; j++) {
            unsigned cur = row[j];
            unsigned cost = lower((unsigned char)a[i - 1]) == lower((unsigned char)b[j - 1]) ? 0 : 1;
            unsigned v = prev + cost;
            if (row[j] + 1 < v)
                v = row[j] + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            row[j] = v;
            prev = cur;
            if (v < best)
                best = v;
        }
        if (best > cap)
            return cap + 1;
    }
    return row[lb] > cap ? cap + 1 : row[lb];
}

const char *keel_str_clip(const char *s, size_t max, char *buf, size_t n)
{
    size_t len = strlen(s);
    if (len <= max)
        return s;
    if (n < 4) /* no room for "..." */
        return n ? (buf[0] = '\0', buf) : "";
    if (max + 4 > n)
        max = n - 4;
    size_t cut = max;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
        cut--; /* do not split a multi-byte character */
    memcpy(buf, s, cut);
    memcpy(buf + cut, "...", 4);
    return buf;
}

size_t keel_u64_to_str(uint64_t v, char *out)
{
    char tmp[KEEL_U64_STRLEN];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

void keel_uuid_to_str(const unsigned char b[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

int keel_hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * host.c - Istio host-name matching and the compiled host index (see host.h).
 *
 * The index keeps one open-addressing table for both kinds of key: exact
 * hosts are keyed by the whole name, wildcards by their suffix after the `*`
 * (`.foo.com`, or "" for `*`), with a flag telling the two apart. The hash
 * runs over the key from its last byte to its first, so a lookup computes
 * the hash of every suffix of the name in one right-to-left pass and probes
 * the wildcard side at each dot: the last hit is the longest suffix. The full
 * name's hash, reached at the end of the pass, is the exact-key probe.
 */
#include "config/host.h"

#include "base/arena.h"
#include "base/err.h"

#include <stdint.h>
#include <string.h>

static inline unsigned char lc(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static bool ci_eq_n(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lc((unsigned char)a[i]) != lc((unsigned char)b[i]))
            return false;
    return true;
}

/* s[0..sn) ends with suf[0..fn), ignoring case */
static bool ci_has_suffix(const char *s, size_t sn, const char *suf, size_t fn)
{
    return sn >= fn && ci_eq_n(s + sn - fn, suf, fn);
}

static int ci_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char x = lc((unsigned char)*a), y = lc((unsigned char)*b);
        if (x != y)
            return x < y ? -1 : 1;
        if (!x)
            return 0;
    }
}

bool keel_host_is_wildcard(const char *h)
{
    return h && h[0] == '*';
}

bool keel_host_matches(const char *a, const char *b)
{
    a = a ? a : "";
    b = b ? b : "";
    size_t an = strlen(a), bn = strlen(b);
    bool aw = keel_host_is_wildcard(a), bw = keel_host_is_wildcard(b);
    if (aw && bw) {
        if (an < bn)
            return ci_has_suffix(b + 1, bn - 1, a + 1, an - 1);
        return ci_has_suffix(a + 1, an - 1, b + 1, bn - 1);
    }
    if (aw)
        return ci_has_suffix(b, bn, a + 1, an - 1);
    if (bw)
        return ci_has_suffix(a, an, b + 1, bn - 1);
    return an == bn && ci_eq_n(a, b, an);
}

bool keel_host_subset_of(const char *a, const char *b)
{
    a = a ? a : "";
    b = b ? b : "";
    size_t an = strlen(a), bn = strlen(b);
    bool aw = keel_host_is_wildcard(a), bw = keel_host_is_wildcard(b);
    if (aw) {
        if (!bw || an < bn)
            return false;
        return ci_has_suffix(a + 1, an - 1, b + 1, bn - 1);
    }
    if (bw)
        return ci_has_suffix(a, an, b + 1, bn - 1);
    return an == bn && ci_eq_n(a, b, an);
}

int keel_host_cmp_specificity(const char *a, const char *b)
{
    a = a ? a : "";
    b = b ? b : "";
    bool aw = keel_host_is_wildcard(a), bw = keel_host_is_wildcard(b);
    if (aw != bw)
        return aw ? 1 : -1;
    size_t an = strlen(a), bn = strlen(b);
    if (an != bn)
        return an > bn ? -1 : 1;
    return ci_cmp(a, b);
}

bool keel_host_more_specific(const char *a, const char *b)
{
    return keel_host_cmp_specificity(a, b) < 0;
}

const char *keel_host_fqdn(struct keel_arena *a, const char *host, const char *ns, const char *domain)
{
    if (!host || !*host || keel_host_is_wildcard(host) || strchr(host, '.'))
        return host;
    if (!ns || !*ns)
        ns = "default";
    if (!domain || !*domain)
        domain = "cluster.local";
    return keel_arena_printf(a, "%s.%s.svc.%s", host, ns, domain);
}

/* ---- index ----------------------------------------------------------------- */

#define HASH_SEED 1469598103934665603ULL
#define HASH_PRIME 1099511628211ULL

/* One step of the right-to-left FNV-1a over lower-cased bytes. */
static inline uint64_t hash_step(uint64_t h, unsigned char c)
{
    return (h ^ lc(c)) * HASH_PRIME;
}

/* Avalanche so the low bits used for the slot are well mixed. */
static inline uint64_t hash_final(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_key(const char *p, size_t n)
{
    uint64_t h = HASH_SEED;
    while (n)
        h = hash_step(h, (unsigned char)p[--n]);
    return hash_final(h);
}

struct slot {
    uint64_t hash;
    uint32_t idx;  /* entry index + 1; 0 = empty */
    uint32_t wild; /* 1 = keyed by wildcard suffix */
};

struct ientry {
    struct keel_host_entry pub; /* pub.host is the lower-cased copy */
    size_t len;
};

struct keel_host_index {
    struct slot *slots;
    size_t mask;
    struct ientry *entries;
    size_t n;
};

static inline const char *ikey(const struct ientry *e, bool wild, size_t *klen)
{
    *klen = wild ? e->len - 1 : e->len;
    return wild ? e->pub.host + 1 : e->pub.host;
}

/* Slot holding (wild, key p[0..n)) with hash h, or NULL. p may have any case;
 * stored keys are lower-case. */
static const struct slot *probe(const struct keel_host_index *ix, uint64_t h, bool wild, const char *p, size_t n)
{
    for (size_t i = h & ix->mask;; i = (i + 1) & ix->mask) {
        const struct slot *s = &ix->slots[i];
        if (!s->idx)
            return NULL;
        if (s->hash != h || s->wild != (uint32_t)wild)
            continue;
        size_t klen;
        const char *k = ikey(&ix->entries[s->idx - 1], wild, &klen);
        if (klen == n && ci_eq_n(k, p, n))
            return s;
    }
}

static bool well_formed(const char *h, size_t n)
{
    if (n == 0)
        return false;
    if (h[0] != '*')
        return true;
    return n == 1 || (h[1] == '.' && n > 2);
}

int keel_host_index_build(struct keel_arena *a, const struct keel_host_entry *entries, size_t n,
                          struct keel_host_index **out)
{
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (!entries[i].host || !well_formed(entries[i].host, strlen(entries[i].host)))
            return KEEL_EINVAL;
    if (n > UINT32_MAX / 4)
        return KEEL_ENOMEM;
    size_t cap = 8;
    while (cap < n * 2)
        cap <<= 1;
    struct keel_host_index *ix = keel_arena_alloc(a, sizeof(*ix));
    if (!ix)
        return KEEL_ENOMEM;
    ix->slots = keel_arena_alloc(a, cap * sizeof(*ix->slots));
    ix->entries = keel_arena_alloc(a, (n ? n : 1) * sizeof(*ix->entries));
    if (!ix->slots || !ix->entries)
        return KEEL_ENOMEM;
    ix->mask = cap - 1;
    ix->n = 0;
    for (size_t i = 0; i < n; i++) {
        const char *src = entries[i].host;
        size_t len = strlen(src);
        bool wild = src[0] == '*';
        const char *kp = wild ? src + 1 : src;
        size_t kn = wild ? len - 1 : len;
        uint64_t h = hash_key(kp, kn);
        if (probe(ix, h, wild, kp, kn))
            continue; /* duplicate: the first one wins */
        char *copy = keel_arena_alloc(a, len + 1);
        if (!copy)
            return KEEL_ENOMEM;
        for (size_t j = 0; j < len; j++)
            copy[j] = (char)lc((unsigned char)src[j]);
        struct ientry *e = &ix->entries[ix->n];
        e->pub.host = copy;
        e->pub.value = entries[i].value;
        e->len = len;
        size_t s = h & ix->mask;
        while (ix->slots[s].idx)
            s = (s + 1) & ix->mask;
        ix->slots[s].hash = h;
        ix->slots[s].wild = wild;
        ix->slots[s].idx = (uint32_t)(++ix->n);
    }
    *out = ix;
    return 0;
}

const struct keel_host_entry *keel_host_index_lookup(const struct keel_host_index *ix, const char *name, size_t len)
{
    if (!ix || ix->n == 0)
        return NULL;
    bool wild_needle = len > 0 && name[0] == '*';
    const struct slot *best = probe(ix, hash_final(HASH_SEED), true, name, 0); /* `*` */
    uint64_t h = HASH_SEED;
    for (size_t i = len; i-- > 0;) {
        h = hash_step(h, (unsigned char)name[i]);
        if (name[i] == '.') {
            const struct slot *s = probe(ix, hash_final(h), true, name + i, len - i);
            if (s)
                best = s; /* a longer suffix than any found before */
        }
    }
    if (!wild_needle) {
        const struct slot *s = probe(ix, hash_final(h), false, name, len);
        if (s)
            return &ix->entries[s->idx - 1].pub;
    }
    return best ? &ix->entries[best->idx - 1].pub : NULL;
}

size_t keel_host_index_count(const struct keel_host_index *ix)
{
    return ix ? ix->n : 0;
}

const struct keel_host_entry *keel_host_index_at(const struct keel_host_index *ix, size_t i)
{
    return &ix->entries[i].pub;
}

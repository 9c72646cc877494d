/*
 * message.c - protocol-neutral HTTP head helpers (see message.h).
 *
 * Header names are kept as received, so lookups compare ASCII
 * case-insensitively. Heads hold at most KEEL_HTTP_MAX_HEADERS fields; a
 * linear scan with a length check first is as fast as a hash at that size.
 */
#include "http/message.h"

#include <string.h>

static bool name_caseeq(struct keel_str a, const char *b, size_t n)
{
    if (a.n != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a.p[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y)
            return false;
    }
    return true;
}

const struct keel_str *keel_http_head_get(const struct keel_http_head *h, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->nheaders; i++)
        if (name_caseeq(h->headers[i].name, name, n))
            return &h->headers[i].value;
    return NULL;
}

bool keel_http_authority_split(struct keel_str a, struct keel_str *host, struct keel_str *port)
{
    for (size_t i = a.n; i > 0; i--) {
        if (a.p[i - 1] == ':') {
            *host = (struct keel_str){a.p, i - 1};
            *port = (struct keel_str){a.p + i, a.n - i};
            return true;
        }
        if (a.p[i - 1] == ']')
            break;
    }
    *host = a;
    *port = (struct keel_str){a.p + a.n, 0};
    return false;
}

/*
 * url.c - Go's net/url parsing rules (see url.h).
 *
 * A port of the validating half of net/url's parse(rawURL, viaRequest):
 * getScheme, the opaque and "first path segment" rules, parseAuthority
 * (userinfo characters, then parseHost: bracketed IPv6 literals and
 * validOptionalPort) and unescape's %-escape and host-character checks
 * (shouldEscape in encodeHost mode). Parsing walks the input once per
 * component, on the stack; the error texts are Go's. The inner message
 * buffer is as large as Go's messages get here, so only the raw URL quoted
 * in the outer `parse "..."` wrapper is ever clipped.
 */
#include "config/url.h"

#include "base/str.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Size of the buffer for the reason, before it is wrapped in `parse "...": `. */
#define URL_REASON_MAX 120

enum url_mode { URL_PATH, URL_HOST, URL_USERINFO, URL_FRAGMENT };

static bool ishex(char ch)
{
    return isxdigit((unsigned char)ch) != 0;
}

/* shouldEscape(c, encodeHost): characters Go refuses in a host name. */
static bool host_char_bad(unsigned char ch)
{
    if (isalnum(ch) || ch >= 0x80)
        return false;
    return !strchr("!$&'()*+,;=:[]<>\"-_.~", ch);
}

/* url.unescape: validates %-escapes (and, in a host, its characters). */
static const char *url_unescape_check(const char *s, size_t n, enum url_mode mode, char *err, size_t en)
{
    for (size_t i = 0; i < n;) {
        if (s[i] == '%') {
            if (i + 2 >= n || !ishex(s[i + 1]) || !ishex(s[i + 2])) {
                size_t l = n - i < 3 ? n - i : 3;
                snprintf(err, en, "invalid URL escape \"%.*s\"", (int)l, s + i);
                return err;
            }
            if (mode == URL_HOST && keel_hex_value((unsigned char)s[i + 1]) < 8 && strncmp(s + i, "%25", 3) != 0) {
                snprintf(err, en, "invalid URL escape \"%.3s\"", s + i);
                return err;
            }
            i += 3;
        } else {
            if (mode == URL_HOST && host_char_bad((unsigned char)s[i])) {
                snprintf(err, en, "invalid character \"%c\" in host name", s[i]);
                return err;
            }
            i++;
        }
    }
    return NULL;
}

/* validOptionalPort: "" or ":" followed by digits. */
static bool valid_optional_port(const char *p, size_t n)
{
    if (n == 0)
        return true;
    if (p[0] != ':')
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isdigit((unsigned char)p[i]))
            return false;
    return true;
}

/* parseHost */
static const char *url_parse_host(const char *h, size_t n, char *err, size_t en)
{
    const char *colon = NULL;
    if (n && h[0] == '[') {
        const char *close = NULL;
        for (size_t i = 0; i < n; i++)
            if (h[i] == ']')
                close = h + i;
        if (!close) {
            snprintf(err, en, "missing ']' in host");
            return err;
        }
        size_t rest = n - (size_t)(close + 1 - h);
        if (!valid_optional_port(close + 1, rest)) {
            snprintf(err, en, "invalid port \"%.*s\" after host", (int)(rest > 60 ? 60 : rest), close + 1);
            return err;
        }
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (h[i] == ':')
            colon = h + i;
    if (colon) {
        size_t pl = n - (size_t)(colon - h);
        if (!valid_optional_port(colon, pl)) {
            snprintf(err, en, "invalid port \"%.*s\" after host", (int)(pl > 60 ? 60 : pl), colon);
            return err;
        }
    }
    return url_unescape_check(h, n, URL_HOST, err, en);
}

/* validUserinfo */
static bool valid_userinfo(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isalnum(ch))
            continue;
        if (!strchr("-._:~!$&'()*+,;=%@", ch) || ch == '\0')
            return false;
    }
    return true;
}

/* parseAuthority: the host is checked before the userinfo, as in Go. */
static const char *url_parse_authority(const char *a, size_t n, struct keel_url *u, char *err, size_t en)
{
    const char *at = NULL;
    for (size_t i = 0; i < n; i++)
        if (a[i] == '@')
            at = a + i;
    const char *host = at ? at + 1 : a;
    size_t hl = n - (size_t)(host - a);
    if (url_parse_host(host, hl, err, en))
        return err;
    u->host = host;
    u->host_len = hl;
    if (at) {
        size_t ul = (size_t)(at - a);
        if (!valid_userinfo(a, ul)) {
            snprintf(err, en, "net/url: invalid userinfo");
            return err;
        }
        if (url_unescape_check(a, ul, URL_USERINFO, err, en))
            return err;
    }
    return NULL;
}

/* net/url parse(rawURL, viaRequest) on raw[0..n), without the fragment. */
static const char *url_parse_nofrag(const char *raw, size_t n, bool via_request, struct keel_url *u, char *err,
                                    size_t en)
{
    memset(u, 0, sizeof(*u));
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)raw[i] < 0x20 || raw[i] == 0x7f) {
            snprintf(err, en, "net/url: invalid control character in URL");
            return err;
        }
    }
    if (n == 0 && via_request) {
        snprintf(err, en, "empty url");
        return err;
    }
    if (n == 1 && raw[0] == '*')
        return NULL;
    /* getScheme */
    const char *rest = raw;
    size_t rl = n;
    for (size_t i = 0; i < n; i++) {
        char ch = raw[i];
        if (isalpha((unsigned char)ch))
            continue;
        if (isdigit((unsigned char)ch) || ch == '+' || ch == '-' || ch == '.') {
            if (i == 0)
                break;
            continue;
        }
        if (ch == ':') {
            if (i == 0) {
                snprintf(err, en, "missing protocol scheme");
                return err;
            }
            size_t sl = i < sizeof(u->scheme) - 1 ? i : sizeof(u->scheme) - 1;
            for (size_t k = 0; k < sl; k++)
                u->scheme[k] = (char)tolower((unsigned char)raw[k]);
            rest = raw + i + 1;
            rl = n - i - 1;
        }
        break;
    }
    /* the query is not checked */
    const char *q = memchr(rest, '?', rl);
    if (q)
        rl = (size_t)(q - rest);
    if (rl == 0 || rest[0] != '/') {
        if (u->scheme[0])
            return NULL; /* opaque: scheme:opaque */
        if (via_request) {
            snprintf(err, en, "invalid URI for request");
            return err;
        }
        const char *slash = memchr(rest, '/', rl);
        size_t seg = slash ? (size_t)(slash - rest) : rl;
        if (memchr(rest, ':', seg)) {
            snprintf(err, en, "first path segment in URL cannot contain colon");
            return err;
        }
    }
    bool triple = rl >= 3 && strncmp(rest, "///", 3) == 0;
    if ((u->scheme[0] || (!via_request && !triple)) && rl >= 2 && rest[0] == '/' && rest[1] == '/') {
        const char *a = rest + 2;
        size_t al = rl - 2;
        const char *slash = memchr(a, '/', al);
        size_t alen = slash ? (size_t)(slash - a) : al;
        u->has_authority = true;
        if (url_parse_authority(a, alen, u, err, en))
            return err;
        rest = a + alen;
        rl = al - alen;
    }
    return url_unescape_check(rest, rl, URL_PATH, err, en);
}

/* Wraps a reason as Go's *url.Error prints it. */
static const char *url_error(const char *raw, const char *reason, char *err, size_t en)
{
    snprintf(err, en, "parse \"%.100s\": %s", raw, reason);
    return err;
}

const char *keel_url_parse(const char *raw, struct keel_url *u, char *err, size_t en)
{
    char reason[URL_REASON_MAX];
    struct keel_url out;
    const char *hash = strchr(raw, '#');
    size_t n = hash ? (size_t)(hash - raw) : strlen(raw);
    const char *e = url_parse_nofrag(raw, n, false, &out, reason, sizeof(reason));
    if (!e && hash)
        e = url_unescape_check(hash + 1, strlen(hash + 1), URL_FRAGMENT, reason, sizeof(reason));
    if (e)
        return url_error(raw, reason, err, en);
    *u = out;
    return NULL;
}

const char *keel_url_parse_request_uri(const char *raw, struct keel_url *u, char *err, size_t en)
{
    char reason[URL_REASON_MAX];
    struct keel_url out;
    if (url_parse_nofrag(raw, strlen(raw), true, &out, reason, sizeof(reason)))
        return url_error(raw, reason, err, en);
    *u = out;
    return NULL;
}

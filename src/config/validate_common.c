/*
 * validate_common.c - istiod's shared validation helpers (see validate_common.h).
 *
 * Each function ports one helper of istio/istio's pkg/config/validation,
 * pkg/config/validation/agent, pkg/config/labels, pkg/config/security or
 * pkg/config/protocol, keeping istiod's error wording so that messages name
 * the same mistake. Hand-written scanners replace Go's regular expressions
 * (DNS labels, label keys, header names); RE2 syntax is approximated with a
 * pass that rejects what Go's regexp/syntax rejects, followed by a PCRE2
 * compile for structure. Nothing here allocates: messages go into the
 * caller's buffer.
 */
#include "config/validate_common.h"

#include "base/err.h"
#include "base/str.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* snprintf for messages: truncation of an over-long value is acceptable */
__attribute__((format(printf, 3, 4))) static void msgf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

/* ---- small character classes ---------------------------------------------- */

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 7230 tchar */
static bool is_tchar(char c)
{
    return is_alnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Byte length of the UTF-8 sequence starting with c (1 for invalid bytes). */
static size_t utf8_len(unsigned char c)
{
    if (c >= 0xf0 && c < 0xf8)
        return 4;
    if (c >= 0xe0)
        return c < 0xf0 ? 3 : 1;
    if (c >= 0xc0)
        return 2;
    return 1;
}

/* s[0..n) is [a-z0-9]([-a-z0-9]*[a-z0-9])? (upper case too when `upper`) */
static bool label_span(const char *s, size_t n, bool upper)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = upper ? is_alnum(c) : is_lower_alnum(c);
        if (!ok && !(c == '-' && i > 0 && i < n - 1))
            return false;
    }
    return true;
}

/* ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9] */
static bool qualified_span(const char *s, size_t n)
{
    if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
        return false;
    for (size_t i = 1; i + 1 < n; i++)
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

/* dot-separated labels, each matching label_span (no per-label length limit) */
static bool dotted_labels(const char *s, size_t n, bool upper)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (!label_span(s + start, i - start, upper))
                return false;
            start = i + 1;
        }
    }
    return true;
}

/* ---- DNS names and labels -------------------------------------------------- */

bool keel_valid_dns1123_label(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n <= 63 && label_span(s, n, false);
}

bool keel_valid_istio_dns1123_label(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n <= 63 && label_span(s, n, true);
}

bool keel_valid_wildcard_dns1123_label(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63)
        return false;
    if (strcmp(s, "*") == 0)
        return true;
    if (s[0] == '*') {
        if (s[1] == '-' && label_span(s + 2, n - 2, true))
            return true;
        return label_span(s + 1, n - 1, true);
    }
    return label_span(s, n, true);
}

bool keel_valid_dns1123_subdomain(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= 253 && dotted_labels(s, n, false);
}

bool keel_valid_label_key(const char *s)
{
    if (!s)
        return false;
    const char *slash = strchr(s, '/');
    const char *name = s;
    if (slash) {
        size_t plen = (size_t)(slash - s);
        if (plen == 0 || plen > 253 || !dotted_labels(s, plen, false))
            return false;
        name = slash + 1;
    }
    size_t n = strlen(name);
    return n <= 63 && qualified_span(name, n);
}

bool keel_valid_label_value(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n == 0 || (n <= 63 && qualified_span(s, n));
}

/* labels.validateTagKey */
static const char *check_tag_key(const char *k, char *buf, size_t n)
{
    char q[KEEL_MSG_MAX];
    const char *slash = strchr(k, '/');
    const char *name = k;
    size_t plen = 0;
    if (slash) {
        plen = (size_t)(slash - k);
        name = slash + 1;
    }
    size_t nlen = strlen(name);
    if ((slash && (plen == 0 || !dotted_labels(k, plen, true))) || !qualified_span(name, nlen)) {
        msgf(buf, n, "invalid tag key: %s", keel_quote(k, q, sizeof(q)));
        return buf;
    }
    if (plen > 253) {
        msgf(buf, n, "invalid tag key: %s (DNS prefix is too long)", keel_quote(k, q, sizeof(q)));
        return buf;
    }
    if (nlen > 63) {
        msgf(buf, n, "invalid tag key: %s (name is too long)", keel_quote(k, q, sizeof(q)));
        return buf;
    }
    return NULL;
}

static const char *check_tag_value(const char *value, char *buf, size_t n)
{
    char q[KEEL_MSG_MAX];
    size_t len = strlen(value);
    if (len == 0 || qualified_span(value, len))
        return NULL;
    msgf(buf, n, "invalid tag value: %s", keel_quote(value, q, sizeof(q)));
    return buf;
}

const char *keel_check_tag(const char *key, const char *value, char *buf, size_t n)
{
    const char *e = check_tag_key(key ? key : "", buf, n);
    return e ? e : check_tag_value(value ? value : "", buf, n);
}

int keel_go_atoi(const char *s, long long *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!*p)
        return KEEL_EINVAL;
    for (const char *q = p; *q; q++)
        if (!is_digit(*q))
            return KEEL_EINVAL;
    errno = 0;
    long long val = strtoll(s, NULL, 10);
    if (errno == ERANGE)
        return KEEL_ETOOBIG;
    *out = val;
    return 0;
}

/* agent.ValidateDNS1123Labels; `domain` may be a suffix of `whole` */
static const char *check_dns1123_labels(const char *domain, char *buf, size_t n)
{
    char q1[KEEL_MSG_MAX], q2[KEEL_MSG_MAX / 2];
    const char *tld = strrchr(domain, '.');
    tld = tld ? tld + 1 : domain;
    long long num;
    if (keel_go_atoi(tld, &num) == 0) {
        msgf(buf, n, "domain name %s invalid (top level domain %s cannot be all-numeric)",
             keel_quote(domain, q1, sizeof(q1)), keel_quote(tld, q2, sizeof(q2)));
        return buf;
    }
    const char *start = domain;
    for (;;) {
        const char *dot = strchr(start, '.');
        size_t len = dot ? (size_t)(dot - start) : strlen(start);
        if (!dot && len == 0)
            return NULL; /* trailing dot: "istio.io." */
        if (len > 63 || !label_span(start, len, true)) {
            char label[KEEL_MSG_MAX / 2];
            msgf(label, sizeof(label), "%.*s", (int)(len < 100 ? len : 100), start);
            msgf(buf, n, "domain name %s invalid (label %s invalid)", keel_quote(domain, q1, sizeof(q1)),
                 keel_quote(label, q2, sizeof(q2)));
            return buf;
        }
        if (!dot)
            return NULL;
        start = dot + 1;
    }
}

/* agent.CheckDNS1123Preconditions */
static const char *check_dns_preconditions(const char *name, char *buf, size_t n)
{
    char q[KEEL_MSG_MAX];
    size_t len = strlen(name);
    if (len > 255) {
        msgf(buf, n, "domain name %s too long (max 255)", keel_quote(name, q, sizeof(q)));
        return buf;
    }
    if (len == 0) {
        msgf(buf, n, "empty domain name not allowed");
        return buf;
    }
    return NULL;
}

const char *keel_check_fqdn(const char *host, char *buf, size_t n)
{
    if (!host)
        host = "";
    const char *e = check_dns_preconditions(host, buf, n);
    return e ? e : check_dns1123_labels(host, buf, n);
}

const char *keel_check_wildcard_domain(const char *host, char *buf, size_t n)
{
    if (!host)
        host = "";
    const char *e = check_dns_preconditions(host, buf, n);
    if (e)
        return e;
    const char *dot = strchr(host, '.');
    size_t len = dot ? (size_t)(dot - host) : strlen(host);
    char first[80];
    msgf(first, sizeof(first), "%.*s", (int)(len < 79 ? len : 79), host);
    if (len > 63 || !keel_valid_wildcard_dns1123_label(first)) {
        char q1[KEEL_MSG_MAX], q2[KEEL_MSG_MAX / 2];
        msgf(buf, n, "domain name %s invalid (label %s invalid)", keel_quote(host, q1, sizeof(q1)),
             keel_quote(first, q2, sizeof(q2)));
        return buf;
    }
    return dot ? check_dns1123_labels(dot + 1, buf, n) : NULL;
}

const char *keel_check_partial_wildcard(const char *host, char *buf, size_t n)
{
    char q[KEEL_MSG_MAX];
    if (host && strchr(host, '*') && strlen(host) != 1 && strncmp(host, "*.", 2) != 0) {
        msgf(buf, n, "partial wildcard %s not allowed", keel_quote(host, q, sizeof(q)));
        return buf;
    }
    return NULL;
}

/* ---- IP addresses ------------------------------------------------------------ */

/* netip.ParseAddr for IPv4: four decimal octets, no leading zeros */
static bool parse_ipv4(const char *s, size_t n)
{
    int parts = 0;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        unsigned v = 0;
        while (i < n && is_digit(s[i]) && i - start < 4)
            v = v * 10 + (unsigned)(s[i++] - '0');
        size_t len = i - start;
        if (len == 0 || len > 3 || v > 255 || (len > 1 && s[start] == '0'))
            return false;
        parts++;
        if (i == n)
            break;
        if (s[i] != '.' || parts == 4)
            return false;
        i++;
        if (i == n)
            return false;
    }
    return parts == 4;
}

static bool parse_ipv6(const char *s, size_t n)
{
    char tmp[64];
    struct in6_addr a;
    if (n == 0 || n >= sizeof(tmp) || !strchr(s, ':'))
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET6, tmp, &a) == 1;
}

/* netip.ParseAddr (IPv6 zones allowed when allow_zone) */
static bool parse_addr(const char *s, size_t n, bool allow_zone)
{
    const char *pct = memchr(s, '%', n);
    if (pct) {
        if (!allow_zone || pct == s + n - 1)
            return false;
        return parse_ipv6(s, (size_t)(pct - s));
    }
    if (memchr(s, ':', n))
        return parse_ipv6(s, n);
    return parse_ipv4(s, n);
}

bool keel_valid_ip(const char *s)
{
    return s && parse_addr(s, strlen(s), true);
}

bool keel_valid_cidr(const char *s)
{
    if (!s)
        return false;
    const char *slash = strrchr(s, '/');
    if (!slash || !parse_addr(s, (size_t)(slash - s), false))
        return false;
    const char *bits = slash + 1;
    size_t blen = strlen(bits);
    if (blen == 0 || blen > 3 || (blen > 1 && bits[0] == '0'))
        return false;
    int b = 0;
    for (size_t i = 0; i < blen; i++) {
        if (!is_digit(bits[i]))
            return false;
        b = b * 10 + (bits[i] - '0');
    }
    bool v6 = memchr(s, ':', (size_t)(slash - s)) != NULL;
    return b <= (v6 ? 128 : 32);
}

static size_t count_char(const char *s, char c)
{
    size_t k = 0;
    for (; *s; s++)
        k += *s == c;
    return k;
}

bool keel_valid_ip_or_cidr(const char *s)
{
    if (!s)
        return false;
    return count_char(s, '/') == 1 ? keel_valid_cidr(s) : keel_valid_ip(s);
}

const char *keel_check_ip_address(const char *s, char *buf, size_t n)
{
    if (keel_valid_ip(s))
        return NULL;
    msgf(buf, n, "%s is not a valid IP", s ? s : "");
    return buf;
}

const char *keel_check_ip_subnet(const char *s, char *buf, size_t n)
{
    if (s && count_char(s, '/') == 1) {
        if (keel_valid_cidr(s))
            return NULL;
        msgf(buf, n, "%s is not a valid CIDR block", s);
        return buf;
    }
    return keel_check_ip_address(s, buf, n);
}

const char *keel_check_unix_address(const char *addr, char *buf, size_t n)
{
    if (!addr || !*addr) {
        msgf(buf, n, "unix address must not be empty");
        return buf;
    }
    if (addr[0] == '@')
        return NULL;
    if (addr[0] != '/' || addr[strlen(addr) - 1] == '/') {
        msgf(buf, n, "%s is not an absolute path to a file", addr);
        return buf;
    }
    return NULL;
}

/* ---- ports and protocols ------------------------------------------------------- */

const char *keel_check_port(int64_t port, char *buf, size_t n)
{
    if (port >= 1 && port <= 65535)
        return NULL;
    msgf(buf, n, "port number %lld must be in the range 1..65535", (long long)port);
    return buf;
}

bool keel_valid_port_name(const char *name)
{
    return keel_valid_istio_dns1123_label(name);
}

/* protocol.Parse: the index of the protocol, or -1 (Unsupported) */
enum proto_class { PROTO_HTTP = 1, PROTO_TLS = 2 };

static int parse_protocol(const char *p)
{
    static const struct {
        const char *name;
        int cls;
    } known[] = {
        {"tcp", 0},
        {"udp", 0},
        {"grpc", PROTO_HTTP},
        {"grpc-web", PROTO_HTTP},
        {"http", PROTO_HTTP},
        {"http_proxy", PROTO_HTTP},
        {"http2", PROTO_HTTP},
        {"https", PROTO_TLS},
        {"tls", PROTO_TLS},
        {"mongo", 0},
        {"redis", 0},
        {"mysql", 0},
    };
    if (!p)
        return -1;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcasecmp(p, known[i].name) == 0)
            return known[i].cls;
    return -1;
}

bool keel_valid_protocol(const char *proto)
{
    return parse_protocol(proto) >= 0;
}

bool keel_protocol_is_http(const char *proto)
{
    return parse_protocol(proto) == PROTO_HTTP;
}

bool keel_protocol_is_tls(const char *proto)
{
    return parse_protocol(proto) == PROTO_TLS;
}

/* ---- HTTP retries -------------------------------------------------------------- */

bool keel_valid_retry_on_policy(const char *policy, size_t len)
{
    /* supportedRetryOnPolicies of istiod's validateHTTPRetry */
    static const char *const known[] = {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i]) == len && strncmp(policy, known[i], len) == 0)
            return true;
    return false;
}

/* ---- durations and percentages -------------------------------------------------- */

const char *keel_check_duration(int64_t ns)
{
    if (ns < 1000000)
        return "duration must be greater than 1ms";
    if (ns % 1000000 != 0)
        return "only durations to ms precision are supported";
    return NULL;
}

bool keel_valid_fraction_percent(double v)
{
    return !(v < 0.0 || v > 100.0 || (v > 0.0 && v < 0.0001));
}

/* ---- RE2 syntax ------------------------------------------------------------------ */

static const char *re_error(char *buf, size_t n, const char *code, const char *frag, size_t flen)
{
    if (flen > 200)
        flen = 200;
    msgf(buf, n, "error parsing regexp: %s: `%.*s`", code, (int)flen, frag);
    return buf;
}

/* Length of the escape at p (p[0] == '\\') that Go's regexp/syntax accepts,
 * or 0 (then *code is the error). */
static size_t go_escape(const char *p, bool in_class, const char **code)
{
    char c = p[1];
    *code = "invalid escape sequence";
    if (!c) {
        *code = "trailing backslash at end of expression";
        return 0;
    }
    if (!in_class && (c == 'A' || c == 'b' || c == 'B' || c == 'z'))
        return 2;
    if (strchr("dDsSwW", c))
        return 2;
    if (c == 'p' || c == 'P') {
        if (p[2] == '{') {
            const char *e = strchr(p + 3, '}');
            return e ? (size_t)(e - p) + 1 : strlen(p);
        }
        return p[2] ? 2 + utf8_len((unsigned char)p[2]) : 2;
    }
    if (c >= '1' && c <= '7' && !(p[2] >= '0' && p[2] <= '7'))
        return 0; /* a backreference */
    if (c >= '0' && c <= '7') {
        size_t len = 2;
        while (len < 4 && p[len] >= '0' && p[len] <= '7')
            len++;
        return len;
    }
    if (c == 'x') {
        if (p[2] == '{') {
            size_t len = 3;
            unsigned long v = 0;
            while (is_hex(p[len]) && v <= 0x10ffff) {
                v = v * 16 + (unsigned long)keel_hex_value((unsigned char)p[len]);
                len++;
            }
            if (len == 3 || p[len] != '}' || v > 0x10ffff)
                return 0;
            return len + 1;
        }
        return is_hex(p[2]) && is_hex(p[3]) ? 4 : 0;
    }
    if (strchr("afnrtv", c))
        return 2;
    if ((unsigned char)c < 0x80 && !is_alnum(c))
        return 2;
    return 0;
}

/* {n}, {n,}, {n,m}: length of the repeat at p, or 0 when it is a literal '{' */
static size_t go_repeat(const char *p, long *lo, long *hi)
{
    const char *q = p + 1;
    if (!is_digit(*q))
        return 0;
    *lo = 0;
    while (is_digit(*q)) {
        if (*lo < 100000)
            *lo = *lo * 10 + (*q - '0');
        q++;
    }
    *hi = *lo;
    if (*q == ',') {
        q++;
        if (is_digit(*q)) {
            *hi = 0;
            while (is_digit(*q)) {
                if (*hi < 100000)
                    *hi = *hi * 10 + (*q - '0');
                q++;
            }
        } else {
            *hi = -1;
        }
    }
    if (*q != '}')
        return 0;
    return (size_t)(q - p) + 1;
}

/* The parts of Go's RE2 syntax that PCRE2 is more lenient about. */
static const char *re2_only(const char *re, char *buf, size_t n)
{
    const char *p = re;
    const char *last_rep = NULL; /* start of the repetition operator just read */
    const char *code;
    while (*p) {
        char c = *p;
        if (c == '\\') {
            if (p[1] == 'Q') {
                const char *e = strstr(p + 2, "\\E");
                p = e ? e + 2 : p + strlen(p);
                last_rep = NULL;
                continue;
            }
            if (p[1] == 'C')
                return re_error(buf, n, "invalid escape sequence", p, 2);
            size_t len = go_escape(p, false, &code);
            if (!len)
                return re_error(buf, n, code, p, p[1] ? 1 + utf8_len((unsigned char)p[1]) : 1);
            p += len;
            last_rep = NULL;
            continue;
        }
        if (c == '[') {
            const char *q = p + 1;
            if (*q == '^')
                q++;
            bool first = true;
            while (*q && (*q != ']' || first)) {
                first = false;
                if (q[0] == '[' && q[1] == ':') {
                    const char *e = strstr(q + 2, ":]");
                    q = e ? e + 2 : q + 2;
                } else if (*q == '\\') {
                    size_t len = go_escape(q, true, &code);
                    if (!len)
                        return re_error(buf, n, code, q, q[1] ? 1 + utf8_len((unsigned char)q[1]) : 1);
                    q += len;
                } else {
                    q += utf8_len((unsigned char)*q);
                }
            }
            p = *q ? q + 1 : q;
            last_rep = NULL;
            continue;
        }
        if (c == '(' && p[1] == '?') {
            const char *q = p + 2;
            if ((q[0] == 'P' && q[1] == '<') || q[0] == '<') { /* (?P<name>re) or (?<name>re) */
                const char *name = q + (q[0] == 'P' ? 2 : 1);
                const char *gt = strchr(name, '>');
                if (!gt)
                    return re_error(buf, n, "invalid named capture", p, strlen(p));
                bool ok = gt > name;
                for (const char *e = name; e < gt && ok; e++)
                    ok = is_alnum(*e) || *e == '_';
                if (!ok)
                    return re_error(buf, n, "invalid named capture", p, (size_t)(gt - p) + 1);
                p = gt + 1;
                last_rep = NULL;
                continue;
            }
            bool neg = false, flag_after_neg = false;
            while (*q && strchr("imsU-", *q)) {
                if (*q == '-') {
                    if (neg)
                        break;
                    neg = true;
                } else if (neg) {
                    flag_after_neg = true;
                }
                q++;
            }
            if ((*q != ')' && *q != ':') || (neg && !flag_after_neg))
                return re_error(buf, n, "invalid or unsupported Perl syntax", p,
                                (size_t)(q - p) + (*q ? utf8_len((unsigned char)*q) : 0));
            p = q + 1;
            last_rep = NULL;
            continue;
        }
        long lo = 0, hi = 0;
        size_t rlen = 0;
        if (c == '*' || c == '+' || c == '?')
            rlen = 1;
        else if (c == '{')
            rlen = go_repeat(p, &lo, &hi);
        if (rlen) {
            const char *end = p + rlen;
            if (*end == '?')
                end++;
            if (last_rep)
                return re_error(buf, n, "invalid nested repetition operator", last_rep, (size_t)(end - last_rep));
            if (c == '{' && (lo > 1000 || hi > 1000 || (hi >= 0 && hi < lo)))
                return re_error(buf, n, "invalid repeat count", p, rlen);
            last_rep = p;
            p = end;
            continue;
        }
        last_rep = NULL;
        p += utf8_len((unsigned char)c);
    }
    return NULL;
}

const char *keel_check_regex(const char *re, char *buf, size_t n)
{
    if (!re)
        re = "";
    const char *e = re2_only(re, buf, n);
    if (e)
        return e;
    int err;
    PCRE2_SIZE off;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
    if (code) {
        pcre2_code_free(code);
        return NULL;
    }
    /* PCRE2 error numbers for the Go errors they correspond to */
    static const struct {
        int pcre;
        const char *go;
    } map[] = {
        {109, "missing argument to repetition operator"},
        {106, "missing closing ]"},
        {114, "missing closing )"},
        {122, "unexpected )"},
        {108, "invalid character class range"},
        {104, "invalid repeat count"},
        {105, "invalid repeat count"},
        {102, "trailing backslash at end of expression"},
        {103, "invalid escape sequence"},
        {147, "invalid character class range"},
        {144, "invalid UTF-8"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (map[i].pcre == err)
            return re_error(buf, n, map[i].go, re, strlen(re));
    char msg[160];
    if (pcre2_get_error_message(err, (PCRE2_UCHAR *)msg, sizeof(msg)) < 0)
        msgf(msg, sizeof(msg), "invalid regular expression");
    return re_error(buf, n, msg, re, strlen(re));
}

/* ---- HTTP header names and values -------------------------------------------------- */

bool keel_valid_header_name(const char *name)
{
    if (!name || !*name)
        return false;
    for (const char *p = name; *p; p++)
        if (!is_tchar(*p))
            return false;
    return true;
}

/* [-_A-Za-z0-9]+ (the conformance data of istiod accepts "foo_bar") */
bool keel_valid_strict_header_name(const char *name)
{
    if (!name || !*name)
        return false;
    for (const char *p = name; *p; p++)
        if (!is_alnum(*p) && *p != '-' && *p != '_')
            return false;
    return true;
}

bool keel_valid_probe_header_name(const char *name)
{
    if (!name || !*name)
        return false;
    for (const char *p = name; *p; p++)
        if (!is_alnum(*p) && *p != '-')
            return false;
    return true;
}

bool keel_is_jwt_claim_route(const char *name)
{
    static const char prefix[] = "@request.auth.claims";
    size_t pl = sizeof(prefix) - 1;
    if (!name || strncasecmp(name, prefix, pl) != 0)
        return false;
    const char *rest = name + pl;
    size_t rl = strlen(rest);
    if (rest[0] == '.' && rl > 1)
        return true;
    return rest[0] == '[' && rl > 2 && rest[rl - 1] == ']';
}

bool keel_valid_header_name_or_claim(const char *name)
{
    static const char *const pseudo[] = {":method", ":scheme", ":authority", ":path", ":status"};
    if (!name || !*name)
        return false;
    if (keel_is_jwt_claim_route(name))
        return true;
    for (size_t i = 0; i < sizeof(pseudo) / sizeof(pseudo[0]); i++)
        if (strcmp(name, pseudo[i]) == 0)
            return true;
    return keel_valid_header_name(name);
}

/* header_value_validator.go: Envoy's %VAR% / %VAR(args)% formatter syntax */
static const char *check_formatter(const char *s)
{
    enum {
        LITERAL,
        VAR_NAME,
        EXPECT_ARRAY,
        EXPECT_STRING,
        STRING,
        EXPECT_DELIM_OR_END,
        EXPECT_ARGS_END,
        EXPECT_VAR_END,
    } state = LITERAL;
    size_t len = strlen(s);
    for (size_t pos = 0; pos < len; pos++) {
        char ch = s[pos];
        bool has_next = pos + 1 < len;
        switch (state) {
        case LITERAL:
            if (ch != '%')
                break;
            if (!has_next)
                return "invalid header configuration. Un-escaped %";
            if (s[pos + 1] == '%') {
                pos++;
                break;
            }
            state = VAR_NAME;
            break;
        case VAR_NAME:
            if (ch == '%')
                state = LITERAL;
            else if (ch == '(')
                state = EXPECT_ARRAY;
            break;
        case EXPECT_ARRAY:
            if (ch == '[')
                state = EXPECT_STRING;
            else if (ch != ' ')
                state = STRING;
            break;
        case EXPECT_DELIM_OR_END:
            if (ch == ',')
                state = EXPECT_STRING;
            else if (ch == ']')
                state = EXPECT_ARGS_END;
            else if (ch != ' ')
                return "invalid header configuration. Expecting ',', ']', or whitespace";
            break;
        case EXPECT_STRING:
            if (ch == '"')
                state = STRING;
            else if (ch != ' ')
                return "invalid header configuration. Expecting '\"'";
            break;
        case STRING:
            if (ch == '\\') {
                if (!has_next)
                    return "invalid header configuration. Un-terminated backslash in JSON string";
                pos++;
            } else if (ch == ')') {
                state = EXPECT_VAR_END;
            } else if (ch == '"') {
                state = EXPECT_DELIM_OR_END;
            }
            break;
        case EXPECT_ARGS_END:
            if (ch == ')')
                state = EXPECT_VAR_END;
            else if (ch != ' ')
                return "invalid header configuration. Expecting ')' or whitespace after '{}', but found '{}'";
            break;
        case EXPECT_VAR_END:
            if (ch == '%')
                state = LITERAL;
            else if (ch != ' ')
                return "invalid header configuration. Expecting '%' or whitespace after";
            break;
        }
    }
    return state == LITERAL ? NULL : "";
}

const char *keel_check_header_value(const char *value, char *buf, size_t n)
{
    if (!value)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if ((*p <= 0x08) || (*p >= 0x0a && *p <= 0x1f) || *p == 0x7f) {
            msgf(buf, n, "header value configuration %s is invalid", value);
            return buf;
        }
    }
    const char *e = check_formatter(value);
    if (!e)
        return NULL;
    if (!*e)
        msgf(buf, n,
             "header value configuration: invalid header configuration. Un-terminated variable "
             "expression '%s'",
             value);
    else
        msgf(buf, n, "header value configuration: %s", e);
    return buf;
}

/* ---- TLS names ------------------------------------------------------------------------ */

bool keel_valid_cipher_suite(const char *cs)
{
    static const char *const valid[] = {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA",
        "AES256-SHA",
        "DES-CBC3-SHA",
    };
    if (!cs || !*cs || strcmp(cs, "ALL") == 0)
        return true;
    /* unicode.IsLetter/IsNumber(rune(cs[0])): a byte taken as a Latin-1 rune */
    unsigned char c0 = (unsigned char)cs[0];
    bool letter_or_number;
    if (c0 < 0x80)
        letter_or_number = is_alnum((char)c0);
    else if (c0 < 0xa0)
        letter_or_number = false;
    else if (c0 < 0xc0)
        letter_or_number = c0 == 0xaa || c0 == 0xb5 || c0 == 0xba || c0 == 0xb2 || c0 == 0xb3 || c0 == 0xb9 ||
                           (c0 >= 0xbc && c0 <= 0xbe);
    else
        letter_or_number = c0 != 0xd7 && c0 != 0xf7;
    if (!letter_or_number)
        return true; /* "-FOO", "+FOO", "!FOO": cipher list operators */
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        if (strcmp(cs, valid[i]) == 0)
            return true;
    return false;
}

bool keel_valid_ecdh_curve(const char *curve)
{
    static const char *const valid[] = {"P-224",         "P-256", "P-521", "P-384", "X25519", "X25519Kyber768Draft00",
                                        "X25519MLKEM768"};
    if (!curve || !*curve)
        return true;
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        if (strcmp(curve, valid[i]) == 0)
            return true;
    return false;
}

/* ---- reporting helpers ------------------------------------------------------------------ */

const char *keel_vns(const struct keel_vctx *v)
{
    if (v && v->res) {
        if (v->res->ns && *v->res->ns)
            return v->res->ns;
        if (v->res->meta.namespace_ && *v->res->meta.namespace_)
            return v->res->meta.namespace_;
    }
    return "default";
}

const char *keel_vannotation(const struct keel_vctx *v, const char *key)
{
    if (!v || !v->res || !key)
        return NULL;
    for (size_t i = 0; i < v->res->meta.n_annotations; i++)
        if (v->res->meta.annotations[i].key && strcmp(v->res->meta.annotations[i].key, key) == 0)
            return v->res->meta.annotations[i].value ? v->res->meta.annotations[i].value : "";
    return NULL;
}

const char *keel_quote(const char *s, char *buf, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    size_t j = 0;
    if (n < 3) {
        if (n)
            buf[0] = '\0';
        return buf;
    }
    buf[j++] = '"';
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        char esc[5] = {0};
        switch (*p) {
        case '"':
            strcpy(esc, "\\\"");
            break;
        case '\\':
            strcpy(esc, "\\\\");
            break;
        case '\a':
            strcpy(esc, "\\a");
            break;
        case '\b':
            strcpy(esc, "\\b");
            break;
        case '\f':
            strcpy(esc, "\\f");
            break;
        case '\n':
            strcpy(esc, "\\n");
            break;
        case '\r':
            strcpy(esc, "\\r");
            break;
        case '\t':
            strcpy(esc, "\\t");
            break;
        case '\v':
            strcpy(esc, "\\v");
            break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                esc[0] = '\\';
                esc[1] = 'x';
                esc[2] = hexd[*p >> 4];
                esc[3] = hexd[*p & 15];
            } else {
                esc[0] = (char)*p;
            }
        }
        size_t el = strlen(esc);
        if (j + el + 2 > n - 4) { /* keep room for ...", NUL */
            if (j + 5 <= n) {
                memcpy(buf + j, "...", 3);
                j += 3;
            }
            break;
        }
        memcpy(buf + j, esc, el);
        j += el;
    }
    buf[j++] = '"';
    buf[j] = '\0';
    return buf;
}

/* ---- exportTo, labels, namespace/host -------------------------------------------------------- */

/* visibility.Instance(e).Validate() */
static const char *check_visibility(const char *e)
{
    if (strcmp(e, ".") == 0 || strcmp(e, "*") == 0)
        return NULL;
    if (strcmp(e, "~") == 0)
        return "exportTo ~ (none) is not allowed for Istio configuration objects";
    if (!keel_valid_istio_dns1123_label(e))
        return "only .,*, or a valid DNS 1123 label is allowed as exportTo entry";
    return NULL;
}

/* the key an exportTo entry stands for: "." is the resource's own namespace */
static const char *export_key(const char *e, const char *ns)
{
    return strcmp(e, ".") == 0 ? ns : e;
}

static bool export_key_ok(const char *key, bool is_service_entry)
{
    return (is_service_entry && strcmp(key, "~") == 0) || !check_visibility(key);
}

void keel_vcheck_export_to(struct keel_vctx *v, const struct keel_obj *o, const char *field, const char *const *list,
                           size_t n, bool is_service_entry, bool dr_with_selector)
{
    if (!list || n == 0)
        return;
    const char *ns = keel_vns(v);
    /* An entry joins the set when its key is valid and not in it yet; the
     * first occurrence of a key decides, so the set needs no storage. */
    size_t nset = 0;
    bool has_ns = false, has_star = false, has_none = false;
    for (size_t i = 0; i < n; i++) {
        const char *e = list[i] ? list[i] : "";
        const char *key = export_key(e, ns);
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++) {
            const char *kj = export_key(list[j] ? list[j] : "", ns);
            dup = strcmp(kj, key) == 0 && export_key_ok(kj, is_service_entry);
        }
        if (dup) {
            if (key != e)
                keel_verr_item(v, o, field, i, "duplicate entries in exportTo: . and current namespace %s", ns);
            else
                keel_verr_item(v, o, field, i, "duplicate entries in exportTo for entry %s", e);
            continue;
        }
        if (!export_key_ok(key, is_service_entry)) {
            keel_verr_item(v, o, field, i, "%s", check_visibility(key));
            continue;
        }
        nset++;
        has_ns |= strcmp(key, ns) == 0;
        has_star |= strcmp(key, "*") == 0;
        has_none |= strcmp(key, "~") == 0;
    }
    if (dr_with_selector && nset > 0) {
        if (!has_ns)
            keel_verr(v, o, field,
                      "destination rule with workload selector cannot have exportTo beyond current "
                      "namespace");
        else if (nset > 1)
            keel_verr(v, o, field, "destination rule with workload selector cannot have multiple entries in exportTo");
    }
    if (has_star && n > 1)
        keel_verr(v, o, field, "cannot have both public (*) and non-public exportTo values for a resource");
    if (has_none && n > 1)
        keel_verr(v, o, field, "cannot export service entry to no one (~) and someone");
}

void keel_vcheck_labels(struct keel_vctx *v, const struct keel_obj *o, const char *field, const struct keel_kv_str *kv,
                        size_t n)
{
    char buf[KEEL_MSG_MAX];
    for (size_t i = 0; kv && i < n; i++) {
        const char *key = kv[i].key ? kv[i].key : "";
        if (check_tag_key(key, buf, sizeof(buf)))
            keel_verr_key(v, o, field, key, "%s", buf);
        if (check_tag_value(kv[i].value ? kv[i].value : "", buf, sizeof(buf)))
            keel_verr_key(v, o, field, key, "%s", buf);
    }
}

/* agent.validateSidecarOrGatewayHostnamePart */
static void check_hostname_part(struct keel_vctx *v, const struct keel_obj *o, const char *field, size_t i,
                                const char *host, bool is_gateway)
{
    char buf[KEEL_MSG_MAX];
    if (strcmp(host, "*") != 0 && !strchr(host, '.'))
        keel_verr_item(v, o, field, i, "short names (non FQDN) are not allowed");
    if (keel_check_wildcard_domain(host, buf, sizeof(buf)) && (!is_gateway || !keel_valid_ip(host)))
        keel_verr_item(v, o, field, i, "%s", buf);
    if (keel_check_partial_wildcard(host, buf, sizeof(buf)))
        keel_verr_item(v, o, field, i, "%s", buf);
}

void keel_vcheck_ns_slash_host(struct keel_vctx *v, const struct keel_obj *o, const char *field, size_t i,
                               const char *host, bool is_gateway, bool gateway_semantics)
{
    char q[KEEL_MSG_MAX];
    if (!host)
        host = "";
    const char *slash = strchr(host, '/');
    if (!slash) {
        if (is_gateway)
            check_hostname_part(v, o, field, i, host, true);
        else
            keel_verr_item(v, o, field, i, "host must be of form namespace/dnsName");
        return;
    }
    size_t nslen = (size_t)(slash - host);
    char ns[256];
    msgf(ns, sizeof(ns), "%.*s", (int)(nslen < 255 ? nslen : 255), host);
    const char *name = slash + 1;
    if (nslen == 0 || !*name)
        keel_verr_item(v, o, field, i, "config namespace and dnsName in host entry cannot be empty");
    bool special = strcmp(ns, "*") == 0 || strcmp(ns, ".") == 0;
    if (!is_gateway) {
        if (!special && strcmp(ns, "~") != 0 && !keel_valid_istio_dns1123_label(ns))
            keel_verr_item(v, o, field, i, "invalid namespace value %s in sidecar", keel_quote(ns, q, sizeof(q)));
    } else if (!special && (strcmp(ns, "~") != 0 || !gateway_semantics) && !keel_valid_istio_dns1123_label(ns)) {
        keel_verr_item(v, o, field, i, "invalid namespace value %s in gateway", keel_quote(ns, q, sizeof(q)));
    }
    check_hostname_part(v, o, field, i, name, is_gateway);
}

/* ---- metadata and policy attachment (security and telemetry kinds) ---------------- */

/* strconv.ParseBool */
static bool go_parse_bool(const char *s)
{
    static const char *const ok[] = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(s, ok[i]) == 0)
            return true;
    return false;
}

void keel_vcheck_annotations(struct keel_vctx *v, const char *dry_run_action)
{
    if (!v->res)
        return;
    const struct keel_object_meta *m = &v->res->meta;
    const char *ns = keel_vns(v), *name = m->name ? m->name : "";
    struct keel_path saved = v->path;
    keel_path_init(&v->path, "metadata");
    for (size_t i = 0; i < m->n_annotations; i++) {
        const char *key = m->annotations[i].key, *val = m->annotations[i].value ? m->annotations[i].value : "";
        if (!key)
            continue;
        if (strcmp(key, "istio.io/dry-run") == 0) {
            if (!dry_run_action)
                keel_verr_key(v, &m->_o, "annotations", key,
                              "%s/%s has unsupported annotation istio.io/dry-run, please remove the annotation", ns,
                              name);
            else if (strcmp(dry_run_action, "ALLOW") != 0 && strcmp(dry_run_action, "DENY") != 0)
                keel_verr_key(v, &m->_o, "annotations", key,
                              "the annotation istio.io/dry-run currently only supports action ALLOW/DENY, found action "
                              "%s in %s/%s",
                              dry_run_action, ns, name);
            else if (!go_parse_bool(val))
                keel_verr_key(v, &m->_o, "annotations", key,
                              "%s/%s has annotation istio.io/dry-run with invalid value (%.100s): strconv.ParseBool: "
                              "parsing \"%.100s\": invalid syntax",
                              ns, name, val, val);
        } else if (strcmp(key, "internal.istio.io/webhook-always-reject") == 0) {
            keel_verr_key(v, &m->_o, "annotations", key, "\"%s\" annotation found, rejecting", key);
        } else if (strcmp(key, "internal.istio.io/parents") == 0 ||
                   strcmp(key, "internal.istio.io/parent-namespace") == 0) {
            keel_verr_key(v, &m->_o, "annotations", key, "\"%s\" annotation found, this may not be set by users", key);
        }
    }
    v->path = saved;
}

void keel_vcheck_workload_selector(struct keel_vctx *v, const struct keel_obj *o, const char *field,
                                   const struct keel_workload_selector *sel)
{
    if (sel && sel->n_match_labels == 0)
        keel_vwarn(v, o, field, "workload selector specified without labels");
}

void keel_vcheck_env_names(struct keel_vctx *v, const struct keel_obj *o, const char *field,
                           const struct keel_kv_str *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *k = kv[i].key ? kv[i].key : "";
        const char *bad = NULL;
        if (!*k)
            bad = "an empty name";
        for (const char *c = k; *c && !bad; c++)
            if (*c == '=')
                bad = "'=' in the name";
            else if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
                bad = "a character outside printable ASCII in the name";
        if (bad)
            keel_verr_key(v, o, field, k,
                          "environment variable \"%.100s\": %s; Kubernetes would refuse the istio-proxy container "
                          "(a name is printable ASCII other than '=')",
                          k, bad);
    }
}

/* validateOneOfSelectorType + the CRD rule "only one of targetRefs or selector can be set". */
static void check_one_selector_type(struct keel_vctx *v, const char *prefix, const struct keel_obj *spec,
                                    bool has_selector, bool has_ref, bool has_refs)
{
    if ((has_selector ? 1 : 0) + (has_ref ? 1 : 0) + (has_refs ? 1 : 0) > 1)
        keel_verr(v, spec, has_refs ? "targetRefs" : "targetRef",
                  "%sonly one of targetRefs or workloadSelector can be set (CRD rule: only one of targetRefs or "
                  "selector can be set)",
                  prefix);
}

/* validatePolicyTargetReference; reports relative to the current path (the reference itself). */
static void check_target_ref(struct keel_vctx *v, const char *prefix, const struct keel_policy_target_ref *r)
{
    if (keel_cstr_empty(r->name))
        keel_verr(v, &r->_o, "name", "%stargetRef name must be set", prefix);
    if (!keel_cstr_empty(r->namespace))
        keel_verr(v, &r->_o, "namespace",
                  "%stargetRef namespace must not be set; cross namespace referencing is not supported", prefix);
    const char *group = r->group ? r->group : "", *kind = r->kind ? r->kind : "";
    const char *canon = *group ? group : "core";
    bool ok = (strcmp(kind, "Service") == 0 && strcmp(canon, "core") == 0) ||
              (strcmp(kind, "ServiceEntry") == 0 && strcmp(canon, "networking.istio.io") == 0) ||
              ((strcmp(kind, "Gateway") == 0 || strcmp(kind, "GatewayClass") == 0) &&
               strcmp(canon, "gateway.networking.k8s.io") == 0);
    if (!ok)
        keel_verr(v, &r->_o, "kind",
                  "%stargetRef must be to one of [core/v1/Service networking.istio.io/v1/ServiceEntry "
                  "gateway.networking.k8s.io/v1/Gateway gateway.networking.k8s.io/v1/GatewayClass] but was "
                  "%.100s/%.100s",
                  prefix, group, kind);
}

void keel_vcheck_attachment(struct keel_vctx *v, const char *prefix, const struct keel_obj *spec,
                            const struct keel_workload_selector *sel, const struct keel_policy_target_ref *ref,
                            const struct keel_policy_target_ref *refs, size_t n_refs)
{
    if (!prefix)
        prefix = "";
    check_one_selector_type(v, prefix, spec, sel != NULL || keel_obj_has(spec, "selector"), ref != NULL,
                            n_refs > 0 || keel_obj_has(spec, "targetRefs"));
    keel_vcheck_workload_selector(v, spec, "selector", sel);
    if (ref) {
        size_t mark = keel_vpush(v, "targetRef");
        check_target_ref(v, prefix, ref);
        keel_vpop(v, mark);
    }
    for (size_t i = 0; refs && i < n_refs; i++) {
        size_t mark = keel_vpush_index(v, "targetRefs", i);
        check_target_ref(v, prefix, &refs[i]);
        keel_vpop(v, mark);
    }
}

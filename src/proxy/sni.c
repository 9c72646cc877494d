/*
 * sni.c - the server name of a TLS ClientHello (see sni.h).
 *
 * Two steps. First the records: each 5-byte header (type 22 = handshake,
 * version 3.x, length 1..2^14) is checked as soon as its bytes are there and
 * the fragments are gathered into one buffer until the handshake message they
 * carry (type 1 = client_hello, 24-bit length) is complete; it must end
 * exactly at a record boundary, since a client sends nothing else before the
 * server answers. Then the message, with a cursor that never reads past the
 * length of the structure it is in:
 *
 *   legacy_version(2) random(32) session_id<0..32> cipher_suites<2..2^16-2>
 *   compression_methods<1..2^8-1> [extensions<0..2^16-1>]
 *
 * Extensions must fill the message exactly; a second server_name extension
 * is an error (RFC 8446 4.2), as is a ServerNameList that holds anything but
 * one host_name entry (OpenSSL's rule too). The name must be a host name
 * (RFC 6066: ASCII, no trailing dot), so a client cannot smuggle "*", a NUL
 * or a path into route matching. Results for a prefix are KEEL_EAGAIN or
 * final, never different from those for the whole input: every check uses
 * only bytes already seen, in the same order for both.
 */
#include "proxy/sni.h"

#include "base/err.h"

#include <stdbool.h>
#include <string.h>

#define REC_HEADER 5
#define REC_MAX 16384 /* TLSPlaintext.length limit, 2^14 */
#define REC_HANDSHAKE 22
#define HS_HEADER 4
#define HS_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define NAME_TYPE_HOST 0
#define RANDOM_LEN 32
#define SESSION_ID_MAX 32

/* A window over bytes whose length is known: reads fail instead of going past the end. */
struct cursor {
    const uint8_t *p;
    size_t n;
};

static bool take(struct cursor *c, size_t k, struct cursor *out)
{
    if (c->n < k)
        return false;
    if (out) {
        out->p = c->p;
        out->n = k;
    }
    c->p += k;
    c->n -= k;
    return true;
}

static bool take_u8(struct cursor *c, size_t *v)
{
    if (c->n < 1)
        return false;
    *v = c->p[0];
    c->p++;
    c->n--;
    return true;
}

static bool take_u16(struct cursor *c, size_t *v)
{
    if (c->n < 2)
        return false;
    *v = (size_t)c->p[0] << 8 | c->p[1];
    c->p += 2;
    c->n -= 2;
    return true;
}

/* A length-prefixed vector: the prefix is `width` bytes, the contents must be in [min, max]. */
static bool take_vec(struct cursor *c, int width, size_t min, size_t max, struct cursor *out)
{
    size_t len;
    if (!(width == 1 ? take_u8(c, &len) : take_u16(c, &len)))
        return false;
    return len >= min && len <= max && take(c, len, out);
}

static bool name_char(uint8_t ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
}

/* Checks a host name and copies it lower-cased. */
static bool copy_host(struct cursor name, char *out)
{
    if (name.n == 0 || name.n > KEEL_SNI_MAX_NAME)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < name.n; i++) {
        uint8_t ch = name.p[i];
        if (ch == '.') {
            if (label == 0)
                return false; /* leading dot or empty label */
            label = 0;
        } else if (name_char(ch)) {
            if (++label > KEEL_SNI_MAX_LABEL)
                return false;
        } else {
            return false;
        }
    }
    if (label == 0)
        return false; /* trailing dot */
    for (size_t i = 0; i < name.n; i++) {
        uint8_t ch = name.p[i];
        out[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch);
    }
    out[name.n] = '\0';
    return true;
}

/* RFC 6066 3: ServerNameList server_name_list<1..2^16-1>, each {NameType name_type; HostName host_name<1..2^16-1>}. */
static int parse_server_name(struct cursor ext, char *name, size_t *name_len)
{
    struct cursor list, host;
    size_t type;
    if (!take_vec(&ext, 2, 1, 0xffff, &list) || ext.n != 0)
        return KEEL_EPROTO;
    if (!take_u8(&list, &type) || type != NAME_TYPE_HOST || !take_vec(&list, 2, 1, 0xffff, &host) || list.n != 0)
        return KEEL_EPROTO;
    if (!copy_host(host, name))
        return KEEL_EPROTO;
    *name_len = host.n;
    return 0;
}

/* The ClientHello body (after the 4-byte handshake header), complete. */
static int parse_hello(struct cursor c, char *name, size_t *name_len)
{
    size_t version;
    if (!take_u16(&c, &version) || version >> 8 != 3)
        return KEEL_EPROTO;
    if (!take(&c, RANDOM_LEN, NULL) || !take_vec(&c, 1, 0, SESSION_ID_MAX, NULL))
        return KEEL_EPROTO;
    struct cursor suites;
    if (!take_vec(&c, 2, 2, 0xfffe, &suites) || suites.n % 2 != 0)
        return KEEL_EPROTO;
    if (!take_vec(&c, 1, 1, 0xff, NULL))
        return KEEL_EPROTO;
    if (c.n == 0)
        return KEEL_ENOTFOUND; /* no extensions at all (TLS 1.0-1.2 allow it) */
    struct cursor exts;
    if (!take_vec(&c, 2, 0, 0xffff, &exts) || c.n != 0)
        return KEEL_EPROTO; /* the extensions must fill the message exactly */
    bool found = false;
    while (exts.n > 0) {
        size_t type;
        struct cursor data;
        if (!take_u16(&exts, &type) || !take_vec(&exts, 2, 0, 0xffff, &data))
            return KEEL_EPROTO;
        if (type != EXT_SERVER_NAME)
            continue;
        if (found)
            return KEEL_EPROTO; /* two server_name extensions: which one would the server use? */
        int rc = parse_server_name(data, name, name_len);
        if (rc)
            return rc;
        found = true;
    }
    return found ? 0 : KEEL_ENOTFOUND;
}

int keel_sni_parse(const uint8_t *p, size_t n, char *out, size_t *out_len)
{
    uint8_t msg[KEEL_SNI_MAX_INPUT]; /* the handshake message, gathered from its records */
    size_t have = 0, need = 0, pos = 0;
    for (;;) {
        /* record header, checked byte by byte so that non-TLS input is refused at once */
        if (pos >= n)
            return KEEL_EAGAIN;
        if (p[pos] != REC_HANDSHAKE)
            return KEEL_EPROTO;
        if (n - pos >= 2 && p[pos + 1] != 3)
            return KEEL_EPROTO;
        if (n - pos >= 3 && p[pos + 2] > 4)
            return KEEL_EPROTO;
        if (n - pos < REC_HEADER)
            return KEEL_EAGAIN;
        size_t len = (size_t)p[pos + 3] << 8 | p[pos + 4];
        if (len == 0 || len > REC_MAX)
            return KEEL_EPROTO;
        if (pos + REC_HEADER + len > KEEL_SNI_MAX_INPUT)
            return KEEL_ETOOBIG; /* (pos <= n and len < 2^16: no overflow) */
        size_t avail = n - pos - REC_HEADER;
        if (avail > len)
            avail = len;
        memcpy(msg + have, p + pos + REC_HEADER, avail); /* have + avail <= pos + 5 + len <= sizeof(msg) */
        have += avail;
        if (need == 0 && have >= 1 && msg[0] != HS_CLIENT_HELLO)
            return KEEL_EPROTO;
        if (need == 0 && have >= HS_HEADER) {
            need = HS_HEADER + ((size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3]);
            if (need + REC_HEADER > KEEL_SNI_MAX_INPUT)
                return KEEL_ETOOBIG;
        }
        if (avail < len)
            return KEEL_EAGAIN;
        pos += REC_HEADER + len;
        if (need && have >= need) {
            if (have != need)
                return KEEL_EPROTO; /* more handshake bytes after the ClientHello */
            break;
        }
    }
    char name[KEEL_SNI_MAX_NAME + 1];
    size_t name_len = 0;
    struct cursor body = {msg + HS_HEADER, need - HS_HEADER};
    int rc = parse_hello(body, name, &name_len);
    if (rc)
        return rc;
    memcpy(out, name, name_len + 1);
    *out_len = name_len;
    return 0;
}

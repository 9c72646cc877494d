/*
 * tls.c - OpenSSL adapter for server-side TLS (see tls.h).
 *
 * One SSL_CTX per certificate, so that the SNI callback can switch the
 * connection to the certificate of the matching Gateway server; the first
 * context also holds the callback and acts as the default.
 */
#include "net/tls.h"

#include "base/err.h"
#include "net/loop.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct keel_tls_ctx {
    unsigned refs;  /* the creator's, plus one per connection (one thread: not atomic) */
    SSL_CTX **ctxs; /* one per certificate */
    size_t n;
    char ***hosts; /* copies of each certificate's host names */
    size_t *n_hosts;
    unsigned char *alpn; /* wire format */
    size_t alpn_len;
    bool client;
    bool verify; /* client: check the server's chain and name */
    char **sans; /* client: names accepted in the server's certificate (NULL-terminated), or NULL: the SNI */
};

struct keel_tls_conn {
    struct keel_tls_ctx *ctx;
    SSL *ssl;
    uint32_t want;
    bool done;
    size_t index;
    char alpn[16]; /* negotiated protocol, "" when none */
    char err[160];
};

static void last_error(char *buf, size_t n)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, n);
    else
        snprintf(buf, n, "unknown TLS error");
    ERR_clear_error();
}

static int version_of(int v, int dflt)
{
    switch (v) {
    case 10:
        return TLS1_VERSION;
    case 11:
        return TLS1_1_VERSION;
    case 12:
        return TLS1_2_VERSION;
    case 13:
        return TLS1_3_VERSION;
    default:
        return dflt;
    }
}

/* Does name match pattern (exact, "*.suffix", or "*"), ASCII case-insensitively? */
static bool host_matches(const char *pattern, const char *name)
{
    if (strcmp(pattern, "*") == 0)
        return true;
    if (pattern[0] == '*' && pattern[1] == '.') {
        size_t pl = strlen(pattern + 1), nl = strlen(name);
        return nl > pl && strcasecmp(name + nl - pl, pattern + 1) == 0;
    }
    return strcasecmp(pattern, name) == 0;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    struct keel_tls_ctx *ctx = arg;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    struct keel_tls_conn *c = SSL_get_app_data(ssl);
    if (!sni || !c)
        return SSL_TLSEXT_ERR_OK;
    /* exact names first, then wildcards, then "*" */
    for (int pass = 0; pass < 3; pass++) {
        for (size_t i = 0; i < ctx->n; i++) {
            for (size_t j = 0; j < ctx->n_hosts[i]; j++) {
                const char *h = ctx->hosts[i][j];
                bool wild = h[0] == '*';
                bool star = strcmp(h, "*") == 0;
                if ((pass == 0 && wild) || (pass == 1 && (!wild || star)) || (pass == 2 && !star))
                    continue;
                if (host_matches(h, sni)) {
                    c->index = i;
                    if (i > 0)
                        SSL_set_SSL_CTX(ssl, ctx->ctxs[i]);
                    return SSL_TLSEXT_ERR_OK;
                }
            }
        }
    }
    return SSL_TLSEXT_ERR_OK; /* no match: the default certificate */
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
    (void)ssl;
    struct keel_tls_ctx *ctx = arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ctx->alpn, (unsigned)ctx->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int load_cert(SSL_CTX *sc, const struct keel_tls_cert *c, char *err, size_t errlen)
{
    BIO *b = BIO_new_mem_buf(c->cert_pem, (int)c->cert_len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    if (!x) {
        BIO_free(b);
        snprintf(err, errlen, "certificate is not valid PEM");
        ERR_clear_error();
        return KEEL_EINVAL;
    }
    int ok = SSL_CTX_use_certificate(sc, x);
    X509_free(x);
    /* the rest of the file is the chain */
    X509 *ca;
    while (ok && (ca = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        if (!SSL_CTX_add_extra_chain_cert(sc, ca)) {
            X509_free(ca);
            ok = 0;
        }
    ERR_clear_error();
    BIO_free(b);
    b = BIO_new_mem_buf(c->key_pem, (int)c->key_len);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!ok || !k) {
        EVP_PKEY_free(k);
        snprintf(err, errlen, "%s", ok ? "private key is not valid PEM" : "cannot use the certificate");
        ERR_clear_error();
        return KEEL_EINVAL;
    }
    ok = SSL_CTX_use_PrivateKey(sc, k) && SSL_CTX_check_private_key(sc);
    EVP_PKEY_free(k);
    if (!ok) {
        snprintf(err, errlen, "private key does not match the certificate");
        ERR_clear_error();
        return KEEL_EINVAL;
    }
    return 0;
}

void keel_tls_ctx_free(struct keel_tls_ctx *ctx)
{
    if (!ctx || --ctx->refs > 0)
        return;
    for (size_t i = 0; i < ctx->n; i++) {
        SSL_CTX_free(ctx->ctxs[i]);
        for (size_t j = 0; j < ctx->n_hosts[i]; j++)
            free(ctx->hosts[i][j]);
        free(ctx->hosts[i]);
    }
    for (size_t i = 0; ctx->sans && ctx->sans[i]; i++)
        free(ctx->sans[i]);
    free(ctx->sans);
    free(ctx->ctxs);
    free(ctx->hosts);
    free(ctx->n_hosts);
    free(ctx->alpn);
    free(ctx);
}

static int alpn_wire(struct keel_tls_ctx *ctx, const char *const *alpn, size_t n)
{
    size_t alen = 0;
    for (size_t i = 0; i < n; i++)
        alen += 1 + strlen(alpn[i]);
    if (!alen)
        return 0;
    ctx->alpn = malloc(alen);
    if (!ctx->alpn)
        return KEEL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(alpn[i]);
        ctx->alpn[ctx->alpn_len++] = (unsigned char)l;
        memcpy(ctx->alpn + ctx->alpn_len, alpn[i], l);
        ctx->alpn_len += l;
    }
    return 0;
}

int keel_tls_client_ctx_new(const struct keel_tls_client_options *o, struct keel_tls_ctx **out, char *err,
                            size_t errlen)
{
    struct keel_tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return KEEL_ENOMEM;
    ctx->refs = 1;
    ctx->client = true;
    ctx->verify = o->verify;
    ctx->ctxs = calloc(1, sizeof(*ctx->ctxs));
    ctx->hosts = calloc(1, sizeof(*ctx->hosts));
    ctx->n_hosts = calloc(1, sizeof(*ctx->n_hosts));
    ctx->sans = o->n_sans ? calloc(o->n_sans + 1, sizeof(char *)) : NULL;
    if (!ctx->ctxs || !ctx->hosts || !ctx->n_hosts || (o->n_sans && !ctx->sans) ||
        alpn_wire(ctx, o->alpn, o->n_alpn) != 0) {
        keel_tls_ctx_free(ctx);
        return KEEL_ENOMEM;
    }
    for (size_t i = 0; i < o->n_sans; i++)
        if (!(ctx->sans[i] = strdup(o->sans[i]))) {
            keel_tls_ctx_free(ctx);
            return KEEL_ENOMEM;
        }
    SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
    if (!sc) {
        keel_tls_ctx_free(ctx);
        return KEEL_ENOMEM;
    }
    ctx->ctxs[ctx->n++] = sc;
    SSL_CTX_set_min_proto_version(sc, version_of(o->min_version, TLS1_2_VERSION));
    SSL_CTX_set_max_proto_version(sc, version_of(o->max_version, TLS1_3_VERSION));
    SSL_CTX_set_mode(sc,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION);
    if (ctx->alpn_len)
        SSL_CTX_set_alpn_protos(sc, ctx->alpn, (unsigned)ctx->alpn_len);
    if (o->verify) {
        SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
        if (o->ca_pem) {
            X509_STORE *store = SSL_CTX_get_cert_store(sc);
            BIO *b = BIO_new_mem_buf(o->ca_pem, (int)o->ca_len);
            X509 *x;
            size_t n = 0;
            while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
                X509_STORE_add_cert(store, x);
                X509_free(x);
                n++;
            }
            BIO_free(b);
            ERR_clear_error();
            if (n == 0) {
                snprintf(err, errlen, "caCertificates holds no PEM certificate");
                keel_tls_ctx_free(ctx);
                return KEEL_EINVAL;
            }
        } else if (!SSL_CTX_set_default_verify_paths(sc)) {
            ERR_clear_error();
        }
    }
    if (o->cert_pem) {
        struct keel_tls_cert c = {
            .cert_pem = o->cert_pem, .cert_len = o->cert_len, .key_pem = o->key_pem, .key_len = o->key_len};
        int rc = load_cert(sc, &c, err, errlen);
        if (rc) {
            keel_tls_ctx_free(ctx);
            return rc;
        }
    }
    *out = ctx;
    return 0;
}

int keel_tls_connect(struct keel_tls_ctx *ctx, int fd, const char *sni, struct keel_tls_conn **out)
{
    struct keel_tls_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return KEEL_ENOMEM;
    c->ctx = ctx;
    c->ssl = SSL_new(ctx->ctxs[0]);
    if (!c->ssl || !SSL_set_fd(c->ssl, fd)) {
        SSL_free(c->ssl);
        free(c);
        return KEEL_ENOMEM;
    }
    if (sni && *sni)
        SSL_set_tlsext_host_name(c->ssl, sni);
    if (ctx->verify) {
        /* the server's certificate must name one of the SANs, else the SNI (RFC 6125 rules, wildcards too) */
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
        if (ctx->sans) {
            for (size_t i = 0; ctx->sans[i]; i++)
                X509_VERIFY_PARAM_add1_host(vp, ctx->sans[i], 0);
        } else if (sni && *sni) {
            X509_VERIFY_PARAM_set1_host(vp, sni, 0);
        }
    }
    SSL_set_app_data(c->ssl, c);
    SSL_set_connect_state(c->ssl);
    ctx->refs++;
    c->want = KEEL_IO_WRITE;
    *out = c;
    return 0;
}

int keel_tls_server_ctx_new(const struct keel_tls_server_options *o, struct keel_tls_ctx **out, char *err,
                            size_t errlen)
{
    if (o->n_certs == 0) {
        snprintf(err, errlen, "no certificate");
        return KEEL_EINVAL;
    }
    struct keel_tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return KEEL_ENOMEM;
    ctx->refs = 1;
    ctx->ctxs = calloc(o->n_certs, sizeof(*ctx->ctxs));
    ctx->hosts = calloc(o->n_certs, sizeof(*ctx->hosts));
    ctx->n_hosts = calloc(o->n_certs, sizeof(*ctx->n_hosts));
    size_t alen = 0;
    for (size_t i = 0; i < o->n_alpn; i++)
        alen += 1 + strlen(o->alpn[i]);
    ctx->alpn = alen ? malloc(alen) : NULL;
    if (!ctx->ctxs || !ctx->hosts || !ctx->n_hosts || (alen && !ctx->alpn)) {
        keel_tls_ctx_free(ctx);
        return KEEL_ENOMEM;
    }
    for (size_t i = 0; i < o->n_alpn; i++) {
        size_t l = strlen(o->alpn[i]);
        ctx->alpn[ctx->alpn_len++] = (unsigned char)l;
        memcpy(ctx->alpn + ctx->alpn_len, o->alpn[i], l);
        ctx->alpn_len += l;
    }
    for (size_t i = 0; i < o->n_certs; i++) {
        SSL_CTX *sc = SSL_CTX_new(TLS_server_method());
        if (!sc) {
            keel_tls_ctx_free(ctx);
            return KEEL_ENOMEM;
        }
        ctx->ctxs[ctx->n++] = sc;
        SSL_CTX_set_min_proto_version(sc, version_of(o->min_version, TLS1_2_VERSION));
        SSL_CTX_set_max_proto_version(sc, version_of(o->max_version, TLS1_3_VERSION));
        SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
        SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
        SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_SERVER);
        if (ctx->alpn_len)
            SSL_CTX_set_alpn_select_cb(sc, on_alpn, ctx);
        SSL_CTX_set_tlsext_servername_callback(sc, on_servername);
        SSL_CTX_set_tlsext_servername_arg(sc, ctx);
        int rc = load_cert(sc, &o->certs[i], err, errlen);
        if (rc) {
            keel_tls_ctx_free(ctx);
            return rc;
        }
        ctx->hosts[i] = calloc(o->certs[i].n_hosts + 1, sizeof(char *));
        for (size_t j = 0; ctx->hosts[i] && j < o->certs[i].n_hosts; j++) {
            const char *h = o->certs[i].hosts[j];
            const char *slash = strchr(h, '/'); /* Gateway hosts may be "ns/host" */
            ctx->hosts[i][ctx->n_hosts[i]++] = strdup(slash ? slash + 1 : h);
        }
    }
    *out = ctx;
    return 0;
}

int keel_tls_accept(struct keel_tls_ctx *ctx, int fd, struct keel_tls_conn **out)
{
    struct keel_tls_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return KEEL_ENOMEM;
    c->ctx = ctx;
    c->ssl = SSL_new(ctx->ctxs[0]);
    if (!c->ssl || !SSL_set_fd(c->ssl, fd)) {
        SSL_free(c->ssl);
        free(c);
        return KEEL_ENOMEM;
    }
    SSL_set_app_data(c->ssl, c);
    SSL_set_accept_state(c->ssl);
    ctx->refs++;
    c->want = KEEL_IO_READ;
    *out = c;
    return 0;
}

void keel_tls_conn_free(struct keel_tls_conn *c)
{
    if (!c)
        return;
    SSL_free(c->ssl);
    keel_tls_ctx_free(c->ctx);
    free(c);
}

/* Maps an SSL_* result to our codes and records what the connection waits for. */
static int result(struct keel_tls_conn *c, int rc)
{
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        c->want = KEEL_IO_READ;
        return KEEL_EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->want = KEEL_IO_WRITE;
        return KEEL_EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return KEEL_ECLOSED;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
            snprintf(c->err, sizeof(c->err), "connection closed during TLS");
            return KEEL_ECLOSED;
        }
        /* fall through */
    default:
        last_error(c->err, sizeof(c->err));
        return KEEL_EIO;
    }
}

int keel_tls_handshake(struct keel_tls_conn *c)
{
    if (c->done)
        return 0;
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        c->done = true;
        c->want = KEEL_IO_READ;
        const unsigned char *proto = NULL;
        unsigned plen = 0;
        SSL_get0_alpn_selected(c->ssl, &proto, &plen);
        if (proto && plen < sizeof(c->alpn)) {
            memcpy(c->alpn, proto, plen);
            c->alpn[plen] = '\0';
        }
        return 0;
    }
    int r = result(c, rc);
    return r == KEEL_ECLOSED ? KEEL_EIO : r;
}

bool keel_tls_handshake_done(const struct keel_tls_conn *c)
{
    return c->done;
}

ssize_t keel_tls_read(struct keel_tls_conn *c, void *buf, size_t len)
{
    size_t got = 0;
    int rc = SSL_read_ex(c->ssl, buf, len, &got);
    if (rc == 1)
        return (ssize_t)got;
    return result(c, rc);
}

ssize_t keel_tls_write(struct keel_tls_conn *c, const void *buf, size_t len)
{
    size_t put = 0;
    int rc = SSL_write_ex(c->ssl, buf, len, &put);
    if (rc == 1)
        return (ssize_t)put;
    return result(c, rc);
}

uint32_t keel_tls_want(const struct keel_tls_conn *c)
{
    return c->want;
}

size_t keel_tls_cert_index(const struct keel_tls_conn *c)
{
    return c->index;
}

const char *keel_tls_sni(const struct keel_tls_conn *c)
{
    return SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
}

const char *keel_tls_alpn(const struct keel_tls_conn *c)
{
    return c->alpn[0] ? c->alpn : NULL;
}

const char *keel_tls_error(const struct keel_tls_conn *c)
{
    return c->err;
}

ssize_t keel_tls_base64_decode(const char *in, size_t len, char *out, size_t cap)
{
    if (cap < (len / 4) * 3 + 3)
        return KEEL_EINVAL;
    EVP_ENCODE_CTX *e = EVP_ENCODE_CTX_new();
    if (!e)
        return KEEL_ENOMEM;
    int n1 = 0, n2 = 0;
    EVP_DecodeInit(e);
    int rc = EVP_DecodeUpdate(e, (unsigned char *)out, &n1, (const unsigned char *)in, (int)len);
    if (rc >= 0)
        rc = EVP_DecodeFinal(e, (unsigned char *)out + n1, &n2);
    EVP_ENCODE_CTX_free(e);
    return rc < 0 ? KEEL_EINVAL : (ssize_t)(n1 + n2);
}

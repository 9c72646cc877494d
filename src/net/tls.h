/*
 * tls.h - TLS for the proxy's sockets (the only OpenSSL user in Keel).
 *
 * A keel_tls_ctx is a server configuration: one or more certificates, each
 * for a set of host names (a Gateway server's `hosts`), chosen by the
 * client's SNI (exact name, then `*.suffix` wildcards, then the first
 * certificate). A keel_tls_conn wraps one accepted, non-blocking socket: the
 * handshake and the record layer run as the event loop reports readiness,
 * and keel_tls_want() says which readiness the connection waits for.
 *
 * Ownership: a context is immutable after creation and shared by the
 * connections of ONE thread: each connection holds a reference, so the creator
 * may "free" it (drop its reference) while connections still use it. A
 * connection does not own its fd.
 *
 * Errors: functions return 0 / byte counts, or KEEL_EAGAIN (retry when
 * keel_tls_want() is ready), KEEL_ECLOSED (peer closed cleanly), KEEL_EIO
 * (TLS or socket failure; keel_tls_error() has OpenSSL's reason).
 */
#ifndef KEEL_NET_TLS_H
#define KEEL_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct keel_tls_ctx;
struct keel_tls_conn;

/* One certificate of a server context, given as PEM text (files are read by the caller). */
struct keel_tls_cert {
    const char *const *hosts; /* names this certificate serves ("*" or none = any) */
    size_t n_hosts;
    const char *cert_pem;
    size_t cert_len;
    const char *key_pem;
    size_t key_len;
};

struct keel_tls_server_options {
    const struct keel_tls_cert *certs;
    size_t n_certs;
    int min_version; /* 0 = TLS 1.2 (Istio's default), else 10, 11, 12, 13 */
    int max_version; /* 0 = TLS 1.3 */
    const char *const *alpn; /* protocols offered, e.g. {"http/1.1"}; NULL = none */
    size_t n_alpn;
};

/* Builds a server context. Returns 0, or KEEL_EINVAL with a reason in err (bad PEM, key not matching). */
int keel_tls_server_ctx_new(const struct keel_tls_server_options *o, struct keel_tls_ctx **out, char *err,
                            size_t errlen);
void keel_tls_ctx_free(struct keel_tls_ctx *ctx);

/* A client configuration (TLS origination to upstreams, DestinationRule `tls`). */
struct keel_tls_client_options {
    const char *ca_pem; /* trust anchors (PEM); NULL = the system's roots */
    size_t ca_len;
    const char *cert_pem; /* client certificate and key (MUTUAL), or NULL */
    size_t cert_len;
    const char *key_pem;
    size_t key_len;
    bool verify;                     /* false: insecureSkipVerify (no chain or name check) */
    const char *const *sans;         /* names the server certificate must carry (any of them); none: the SNI */
    size_t n_sans;
    const char *const *alpn; /* protocols offered, e.g. {"h2"}; NULL = none */
    size_t n_alpn;
    int min_version; /* 0 = TLS 1.2, else 10..13 */
    int max_version; /* 0 = TLS 1.3 */
};

/* Builds a client context. Returns 0, or KEEL_EINVAL with a reason in err (bad PEM, key not matching). */
int keel_tls_client_ctx_new(const struct keel_tls_client_options *o, struct keel_tls_ctx **out, char *err,
                            size_t errlen);
/* Starts a client-side TLS connection on a connected fd, sending sni (may be NULL) and checking the server's
 * certificate as the context says (the SNI is the name checked when the context has no SANs). */
int keel_tls_connect(struct keel_tls_ctx *ctx, int fd, const char *sni, struct keel_tls_conn **out);

/* Starts a server-side TLS connection on fd. Returns 0 or KEEL_ENOMEM. */
int keel_tls_accept(struct keel_tls_ctx *ctx, int fd, struct keel_tls_conn **out);
void keel_tls_conn_free(struct keel_tls_conn *c);

/* Advances the handshake: 0 when complete, KEEL_EAGAIN, or KEEL_EIO. */
int keel_tls_handshake(struct keel_tls_conn *c);
bool keel_tls_handshake_done(const struct keel_tls_conn *c);

/* Record layer; KEEL_EAGAIN means "wait for keel_tls_want()". */
ssize_t keel_tls_read(struct keel_tls_conn *c, void *buf, size_t len);
ssize_t keel_tls_write(struct keel_tls_conn *c, const void *buf, size_t len);

/* KEEL_IO_READ and/or KEEL_IO_WRITE (net/loop.h) that the last operation waits for. */
uint32_t keel_tls_want(const struct keel_tls_conn *c);

/* Index of the certificate chosen for this connection (by SNI), and the SNI (NULL when none). */
size_t keel_tls_cert_index(const struct keel_tls_conn *c);
const char *keel_tls_sni(const struct keel_tls_conn *c);

/* The protocol chosen by ALPN ("h2", "http/1.1"), or NULL when none was negotiated. */
const char *keel_tls_alpn(const struct keel_tls_conn *c);

/* OpenSSL's reason for the last KEEL_EIO on this connection ("" when none). */
const char *keel_tls_error(const struct keel_tls_conn *c);

/* Decodes base64 (a Kubernetes Secret's data values) into out (cap bytes). Returns the length or KEEL_EINVAL. */
ssize_t keel_tls_base64_decode(const char *in, size_t len, char *out, size_t cap);

#endif

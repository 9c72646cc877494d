/*
 * upstream_tls.c - TLS origination to upstreams (DestinationRule `tls`), per worker.
 *
 * A cluster whose DestinationRule says `tls.mode: SIMPLE` or `MUTUAL` gets a
 * client TLS context: the CA bundle from `caCertificates` (else the system's
 * roots), the client certificate and key for MUTUAL (files, or the TLS
 * Secret named by `credentialName`), the names to accept from
 * `subjectAltNames` (else the SNI: `sni`, else the service host), no checks
 * with `insecureSkipVerify`, and ALPN h2 or http/1.1 for the attempt's
 * protocol. Contexts are built by each worker the first time a cluster
 * needs one and kept until the snapshot changes (keyed by cluster name and
 * protocol, tagged with the snapshot version), so files are read once per
 * config version, not per connection.
 *
 * ISTIO_MUTUAL needs the mesh's certificate authority, which this build does
 * not have yet: such clusters connect in plain text, as with auto-mTLS to a
 * workload without a sidecar (logged once per context).
 *
 * Ownership: the cache owns one reference to each context; a connection holds
 * its own while it lives (keel_tls_connect). Failure: a context that cannot
 * be built (unreadable file, bad PEM) is logged and the attempt fails as a
 * connect failure (503 UF, retried per the route's policy).
 */
#include "proxy/proxy_int.h"

#include "mesh/clusters.h"

#include "base/arena.h"
#include "base/err.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls_entry {
    uint64_t version; /* snapshot version it was built for */
    struct keel_tls_ctx *ctx;
    char *sni;
    char key[];
};

static void entry_free(struct tls_entry *e)
{
    if (!e)
        return;
    keel_tls_ctx_free(e->ctx);
    free(e->sni);
    free(e);
}

static struct keel_tls_ctx *build(struct keel_pworker *pw, const struct keel_cluster *c, bool h2, char *err,
                                  size_t errlen)
{
    const struct keel_cluster_tls *t = &c->tls;
    struct keel_arena *a = keel_arena_new(8192);
    if (!a)
        return NULL;
    static const char *const alpn_h2[] = {"h2"}, *const alpn_h1[] = {"http/1.1"};
    struct keel_tls_client_options o = {
        .verify = !t->insecure_skip_verify,
        .sans = t->subject_alt_names,
        .n_sans = t->n_subject_alt_names,
        .alpn = h2 ? alpn_h2 : alpn_h1,
        .n_alpn = 1,
    };
    struct keel_tls_ctx *ctx = NULL;
    bool ok = true;
    if (t->ca_certificates && !t->insecure_skip_verify) {
        o.ca_pem = keel_read_file(a, t->ca_certificates, &o.ca_len);
        if (!o.ca_pem) {
            snprintf(err, errlen, "cannot read caCertificates %s", t->ca_certificates);
            ok = false;
        }
    }
    if (ok && t->mode == KEEL_CLUSTER_TLS_MUTUAL) {
        if (t->credential_name) {
            const struct keel_secret *sec = keel_secretset_find(pw->secrets, t->credential_name);
            if (sec) {
                o.cert_pem = sec->cert;
                o.cert_len = sec->cert_len;
                o.key_pem = sec->key;
                o.key_len = sec->key_len;
            } else {
                snprintf(err, errlen, "credentialName %s: no TLS Secret of that name", t->credential_name);
                ok = false;
            }
        } else {
            o.cert_pem = t->client_certificate ? keel_read_file(a, t->client_certificate, &o.cert_len) : NULL;
            o.key_pem = t->private_key ? keel_read_file(a, t->private_key, &o.key_len) : NULL;
            if (!o.cert_pem || !o.key_pem) {
                snprintf(err, errlen, "cannot read clientCertificate %s / privateKey %s",
                         t->client_certificate ? t->client_certificate : "(none)",
                         t->private_key ? t->private_key : "(none)");
                ok = false;
            }
        }
    }
    if (ok && keel_tls_client_ctx_new(&o, &ctx, err, errlen) != 0)
        ctx = NULL;
    keel_arena_free(a);
    return ctx;
}

struct keel_tls_ctx *keel_upstream_tls_ctx(struct keel_pworker *pw, const struct keel_cluster *c, bool h2,
                                           const char **sni)
{
    *sni = NULL;
    if (c->tls.mode != KEEL_CLUSTER_TLS_SIMPLE && c->tls.mode != KEEL_CLUSTER_TLS_MUTUAL)
        return NULL;
    char key[512];
    int kl = snprintf(key, sizeof(key), "%s|%d", c->name, h2);
    if (kl < 0 || (size_t)kl >= sizeof(key))
        return NULL;
    uint64_t version = keel_snapshot_version(pw->snap);
    struct tls_entry *e = keel_map_get(&pw->tls_clients, key, (size_t)kl);
    if (e && e->version == version) {
        *sni = e->sni;
        return e->ctx;
    }
    char err[256] = "";
    struct keel_tls_ctx *ctx = build(pw, c, h2, err, sizeof(err));
    if (!ctx) {
        keel_log(KEEL_LOG_ERROR, "cluster %s: TLS origination: %s", c->name, err[0] ? err : "out of memory");
        return NULL;
    }
    struct tls_entry *ne = calloc(1, sizeof(*ne) + (size_t)kl + 1);
    const char *name = c->tls.sni ? c->tls.sni : c->host;
    if (!ne || (name && !(ne->sni = strdup(name)))) {
        free(ne);
        keel_tls_ctx_free(ctx);
        return NULL;
    }
    memcpy(ne->key, key, (size_t)kl + 1);
    ne->version = version;
    ne->ctx = ctx;
    /* a replaced entry goes first: the map keeps the key of an existing slot, which lives in the entry */
    entry_free(keel_map_del(&pw->tls_clients, key, (size_t)kl));
    if (keel_map_put(&pw->tls_clients, ne->key, (size_t)kl, ne, NULL) != 0) {
        entry_free(ne);
        return NULL;
    }
    *sni = ne->sni;
    return ne->ctx;
}

void keel_upstream_tls_free(struct keel_pworker *pw)
{
    size_t it = 0;
    const struct keel_map_slot *s;
    while ((s = keel_map_next(&pw->tls_clients, &it)) != NULL)
        entry_free(s->val);
    keel_map_free(&pw->tls_clients);
}

/*
 * sample_call.c - one outgoing GET with libcurl, described as JSON (see sample_call.h).
 *
 * libcurl is opened with dlopen() by keel_sample_call_global_init(), not linked: it drags in some thirty shared
 * libraries (GnuTLS, Kerberos, LDAP, ...) whose mapped pages would count in the resident size of every `keel
 * proxy` too (the same binary), about 4.5 MiB of an idle proxy. The few functions used are looked up once into
 * `curl`, a table written only by global_init on the main thread before any call thread starts, read-only after.
 *
 * A fresh easy handle per call: no connection reuse between calls, which is what a demo chain wants (every hop is
 * a new request the sidecar routes on its own) and keeps call threads free of shared state. CURLOPT_NOSIGNAL is set
 * because the calls run on threads; redirects are not followed (the status is what the demo shows); only http and
 * https are allowed. The downstream body is checked with jansson before it is embedded raw, so the answer stays
 * valid JSON whatever the downstream sent.
 */
#include "app/sample_call.h"

#include "base/err.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The libcurl functions the calls use, from dlopen(); the registry of names is the table below. */
static struct {
    void *lib;
    CURLcode (*global_init)(long);
    void (*global_cleanup)(void);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_perform)(CURL *);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    void (*easy_cleanup)(CURL *);
    const char *(*easy_strerror)(CURLcode);
} curl;

int keel_sample_call_global_init(void)
{
    static const struct {
        const char *name;
        size_t off;
    } fns[] = {
        {"curl_global_init", offsetof(__typeof__(curl), global_init)},
        {"curl_global_cleanup", offsetof(__typeof__(curl), global_cleanup)},
        {"curl_slist_append", offsetof(__typeof__(curl), slist_append)},
        {"curl_slist_free_all", offsetof(__typeof__(curl), slist_free_all)},
        {"curl_easy_init", offsetof(__typeof__(curl), easy_init)},
        {"curl_easy_setopt", offsetof(__typeof__(curl), easy_setopt)},
        {"curl_easy_perform", offsetof(__typeof__(curl), easy_perform)},
        {"curl_easy_getinfo", offsetof(__typeof__(curl), easy_getinfo)},
        {"curl_easy_cleanup", offsetof(__typeof__(curl), easy_cleanup)},
        {"curl_easy_strerror", offsetof(__typeof__(curl), easy_strerror)},
    };
    curl.lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!curl.lib) {
        fprintf(stderr, "keel sample-app: cannot load libcurl.so.4 (Debian package libcurl4): %s\n", dlerror());
        return KEEL_EIO;
    }
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
        void *f = dlsym(curl.lib, fns[i].name);
        if (!f) {
            fprintf(stderr, "keel sample-app: libcurl.so.4 has no %s\n", fns[i].name);
            dlclose(curl.lib);
            curl.lib = NULL;
            return KEEL_EIO;
        }
        memcpy((char *)&curl + fns[i].off, &f, sizeof(f));
    }
    return curl.global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : KEEL_EIO;
}

void keel_sample_call_global_cleanup(void)
{
    if (!curl.lib)
        return;
    curl.global_cleanup();
    dlclose(curl.lib);
    curl.lib = NULL;
}

static size_t on_body(char *p, size_t size, size_t n, void *data)
{
    struct keel_buf *b = data;
    /* a short count makes libcurl fail the transfer with CURLE_WRITE_ERROR: body over the cap */
    return keel_buf_append(b, p, size * n) == 0 ? size * n : 0;
}

static int on_progress(void *data, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    const atomic_bool *abort = data;
    return abort && atomic_load(abort) ? 1 : 0;
}

/* Whether body[0..n) is one JSON value (object or array, as the sample app answers). */
static bool is_json(const char *body, size_t n)
{
    json_error_t err;
    json_t *j = json_loadb(body, n, 0, &err);
    if (!j)
        return false;
    json_decref(j);
    return true;
}

int keel_sample_call_json(const char *url, const char *const *headers, size_t nheaders, unsigned timeout_ms,
                          const atomic_bool *abort, struct keel_buf *out)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    struct keel_buf body;
    keel_buf_init(&body, KEEL_SAMPLE_CALL_MAX_BODY);
    struct curl_slist *list = NULL;
    bool oom = false;
    for (size_t i = 0; i < nheaders && !oom; i++) {
        struct curl_slist *l = curl.slist_append(list, headers[i]);
        if (!l)
            oom = true;
        else
            list = l;
    }
    long status = 0;
    CURLcode cc = CURLE_OUT_OF_MEMORY;
    CURL *h = oom || !curl.lib ? NULL : curl.easy_init();
    if (h) {
        curl.easy_setopt(h, CURLOPT_URL, url);
        curl.easy_setopt(h, CURLOPT_HTTPHEADER, list);
        curl.easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl.easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl.easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
        curl.easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl.easy_setopt(h, CURLOPT_WRITEDATA, &body);
        curl.easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl.easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl.easy_setopt(h, CURLOPT_XFERINFODATA, (void *)abort);
        curl.easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        cc = curl.easy_perform(h);
        if (cc == CURLE_OK)
            curl.easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl.easy_cleanup(h);
    }
    curl.slist_free_all(list);

    int rc = keel_buf_puts(out, "{\"url\":");
    if (!rc)
        rc = keel_buf_json_str(out, url);
    if (!rc && cc != CURLE_OK) {
        const char *msg = cc == CURLE_WRITE_ERROR           ? "response body too large"
                          : cc == CURLE_ABORTED_BY_CALLBACK ? "aborted: the app is stopping"
                          : errbuf[0]                       ? errbuf
                                                            : curl.easy_strerror(cc);
        rc = keel_buf_puts(out, ",\"error\":");
        if (!rc)
            rc = keel_buf_json_str(out, msg);
    } else if (!rc) {
        rc = keel_buf_printf(out, ",\"status\":%ld,\"body\":", status);
        if (!rc && body.len && is_json(body.data, body.len))
            rc = keel_buf_append(out, body.data, body.len);
        else if (!rc)
            rc = keel_buf_json_str(out, keel_buf_cstr(&body));
    }
    if (!rc)
        rc = keel_buf_putc(out, '}');
    keel_buf_free(&body);
    return rc;
}

/*
 * sample_call.c - one outgoing GET with libcurl, described as JSON (see sample_call.h).
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
#include <jansson.h>
#include <stdbool.h>
#include <string.h>

int keel_sample_call_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : KEEL_EIO;
}

void keel_sample_call_global_cleanup(void)
{
    curl_global_cleanup();
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
        struct curl_slist *l = curl_slist_append(list, headers[i]);
        if (!l)
            oom = true;
        else
            list = l;
    }
    long status = 0;
    CURLcode cc = CURLE_OUT_OF_MEMORY;
    CURL *h = oom ? NULL : curl_easy_init();
    if (h) {
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)abort);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        cc = curl_easy_perform(h);
        if (cc == CURLE_OK)
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(h);
    }
    curl_slist_free_all(list);

    int rc = keel_buf_puts(out, "{\"url\":");
    if (!rc)
        rc = keel_buf_json_str(out, url);
    if (!rc && cc != CURLE_OK) {
        const char *msg = cc == CURLE_WRITE_ERROR           ? "response body too large"
                          : cc == CURLE_ABORTED_BY_CALLBACK ? "aborted: the app is stopping"
                          : errbuf[0]                       ? errbuf
                                                            : curl_easy_strerror(cc);
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

/*
 * proxy_fuzz_common.h - what the whole-connection proxy fuzzers share
 * (proxy_conn_fuzz.c: HTTP/1, proxy_h2_fuzz.c: HTTP/2).
 *
 *   config     the fixed mesh config both route on (PF_CONFIG_FMT: one Gateway on
 *              port 8080 and a VirtualService with every match and action type), with
 *              the two endpoint ports of app.example.com as parameters
 *   snapshot   compiled once per process (pf_init), with the access-log sinks
 *   worker     a keel_pworker set up by hand as runtime.c does (no threads, no
 *              listeners): pf_worker_init / pf_worker_free
 *   client     one end of a socketpair handed to keel_http1_accept() as an accepted
 *              Gateway connection; the fuzzer writes into the other end and reads
 *              everything the proxy writes back (struct pf_conn)
 *   upstream   an HTTP/1.1 server inside the fuzzer (struct pf_upstream): a 127.0.0.1
 *              listening socket whose connections are served between loop iterations
 *              with canned responses, checking that every request the proxy sends it is
 *              well-formed HTTP/1.1
 *
 * Everything is single-threaded and runs on the worker's loop thread. The
 * snapshot, the access-log sinks and the upstream's listening socket live for
 * the whole process; everything else is created and freed per input, so that
 * LeakSanitizer sees anything the proxy forgets.
 */
#ifndef KEEL_TESTS_FUZZ_PROXY_FUZZ_COMMON_H
#define KEEL_TESTS_FUZZ_PROXY_FUZZ_COMMON_H

#include "base/buf.h"
#include "http/h1.h"
#include "proxy/stream.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The target's name for messages ("proxy_conn_fuzz"), set by pf_init(). */
extern const char *pf_name;
/* <TARGET>_VERBOSE=1 in the environment: print what the proxy wrote (and debug logs). */
extern bool pf_verbose;

#define PF_CHECK(cond)                                                                                                 \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s: invariant failed: %s (%s:%d)\n", pf_name, #cond, __FILE__, __LINE__);                 \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#define PF_GW_PORT 8080
/* loop iterations: until idle after a write, and until the proxy closes after the client went away */
#define PF_IDLE_ITERATIONS 2
#define PF_MAX_ITERATIONS 20000

/* ---- known bugs --------------------------------------------------------------------------------------------- */

/* An open bug in src/ a target found (its reproducer is in the corpus as regress-<id>, tests/fuzz/README.md
 * describes it): the check that finds it calls pf_known_bug(id) and lets it pass when that returns true, so
 * that fuzzing and the corpus replay go on until it is fixed. */
struct pf_known_bug {
    const char *id;
    const char *what;
    bool noted;
};

/* The target's open bugs; strict_env names the environment variable that makes them fatal again. */
void pf_set_known_bugs(struct pf_known_bug *bugs, size_t n, const char *strict_env);
/* True when id is a known bug and fatal checks for it are off; notes it on stderr once per process. */
bool pf_known_bug(const char *id);

/* ---- config, snapshot, worker ---------------------------------------------------------------------------------- */

/* Writes the shared config into buf with app.example.com's endpoints on 127.0.0.1:v1_port (subset v1) and
 * 127.0.0.1:v2_port (subset v2). Returns its length; aborts when cap is too small. */
size_t pf_config(char *buf, size_t cap, unsigned v1_port, unsigned v2_port);

/* Once per process: log level, the snapshot compiled from config[0..len) (aborts on any config error), the
 * access-log sinks (to /dev/null). verbose_env names the environment variable that turns on pf_verbose. */
void pf_init(const char *name, const char *verbose_env, const char *config, size_t len);

/* Access-log sinks of pf_worker_init's `log` argument. */
enum { PF_LOG_OFF, PF_LOG_TEXT, PF_LOG_JSON, PF_LOG_CUSTOM };

/* A fresh worker on a new loop, as runtime.c's worker_init (fixed random seed: replays are exact). */
void pf_worker_init(struct keel_pworker *pw, unsigned log, bool draining);
/* What runtime.c does to a worker mid-flight: worker_drain (draining, pools closed, connections asked to end
 * after their requests) and, at the end of the drain time, the shutdown of the HTTP connections left. */
void pf_worker_drain(struct keel_pworker *pw);
void pf_worker_shutdown(struct keel_pworker *pw);
/* Frees what pf_worker_init made, after the pools are closed and deferred frees have run. */
void pf_worker_free(struct keel_pworker *pw);

/* ---- the client's end ---------------------------------------------------------------------------------------- */

struct pf_conn {
    struct keel_pworker pw;
    int fd;    /* the client's end, -1 once closed */
    bool eof;  /* the proxy closed its end */
    char *out; /* what the proxy wrote, up to out_cap bytes */
    size_t out_cap;
    size_t out_len;
    bool out_cut; /* more than out_cap arrived */
    /* Called after every loop iteration while the fuzzer drives the loop (an in-process upstream):
     * returns true when it did anything (the loop is not idle then). NULL: nothing. */
    bool (*service)(void *arg);
    void *service_arg;
};

/* Worker, socketpair, keel_http1_accept() of the proxy's end as a Gateway connection on PF_GW_PORT from
 * 10.1.2.3:43210. c->out/out_cap and the service hook must be set (or zero) by the caller beforehand. */
void pf_conn_open(struct pf_conn *c, unsigned log, bool draining);
/* Reads what the proxy wrote. Returns true when anything arrived (or EOF). */
bool pf_drain(struct pf_conn *c);
/* Runs the loop until nothing happens for PF_IDLE_ITERATIONS iterations or the connection is gone. */
void pf_pump(struct pf_conn *c);
/* Sends all of p (running the loop while the socket buffer is full). False when the proxy is gone. */
bool pf_send_all(struct pf_conn *c, const uint8_t *p, size_t n);
/* One loop iteration that may sleep up to ms (lets a short timer fire), then pf_pump. */
void pf_wait(struct pf_conn *c, int ms);
/* The client goes away (close() when close_it, else shutdown(SHUT_WR)); the proxy must then close the
 * connection within a bounded number of loop iterations (aborts otherwise). Reads the rest of its output. */
void pf_conn_end(struct pf_conn *c, bool close_it);
/* Closes the client's end (if still open) and frees the worker. */
void pf_conn_free(struct pf_conn *c);

/* ---- the in-process upstream ---------------------------------------------------------------------------------- */

/* What the upstream answers to one request: plan byte = kind | PF_UP_* flags. */
enum pf_up_kind {
    PF_UP_OK,           /* 200, Content-Length, small body */
    PF_UP_CHUNKED,      /* 200, chunked, an extension and a trailer */
    PF_UP_NO_CONTENT,   /* 204 */
    PF_UP_UNTIL_CLOSE,  /* 200 without framing: the body ends when the upstream closes */
    PF_UP_CONTINUE,     /* 100 Continue, then 201 */
    PF_UP_NOT_MODIFIED, /* 304 announcing a Content-Length it does not send */
    PF_UP_BIG,          /* 200, 100000 bytes: more than a stream window */
    PF_UP_HUGE_CHUNKED, /* 200, 320000 bytes chunked: more than the proxy's per-stream high mark */
    PF_UP_GARBAGE,      /* not a status line: 502 */
    PF_UP_CLOSE,        /* closes without answering */
    PF_UP_HOP_HEADERS,  /* 200 with hop-by-hop fields, Connection-named fields, mixed case, repeated fields */
    PF_UP_UNAVAILABLE,  /* 503 */
    PF_UP_CUT,          /* Content-Length 100, 10 bytes, close: the response is cut */
    PF_UP_SCRIPT,       /* the fuzzer's bytes (pf_upstream.script), verbatim */
    PF_UP_SILENT,       /* never answers */
    PF_UP_SWITCHING,    /* 101 Switching Protocols, then bytes */
    PF_UP__KINDS
};
#define PF_UP_KIND 0x0f
#define PF_UP_EARLY 0x10      /* answer as soon as the head is in (else once the whole request body is) */
#define PF_UP_KEEP_ALIVE 0x20 /* keep the connection (else "connection: close" and close it) */
#define PF_UP_SPLIT 0x40      /* write the response in two parts with loop iterations between them */
#define PF_UP_STALL 0x80      /* after the head, read nothing for 64 loop iterations (the request body waits) */

#define PF_UP_MAX_CONNS 64
#define PF_UP_PLANS 4

struct pf_upconn {
    int fd; /* -1: free slot */
    struct keel_buf in;
    struct keel_buf out;
    size_t split_at; /* out bytes to hold back until the next service call (PF_UP_SPLIT), 0 = none */
    bool in_body;    /* reading a request body */
    enum keel_body_mode body_mode;
    uint64_t body_left;
    struct keel_h1_chunked ch;
    bool head_req;     /* the current request is HEAD */
    bool answered;     /* the current request's response is queued */
    bool close_after;  /* close once out is written */
    bool peer_closed;  /* the proxy closed or reset */
    unsigned stall;    /* service calls left without reading (PF_UP_STALL) */
    uint8_t plan;      /* the current request's plan byte */
    unsigned requests; /* requests seen on this connection */
};

struct pf_upstream {
    int lfd; /* listening socket on 127.0.0.1:port (process lifetime) */
    unsigned port;
    /* per input (pf_upstream_begin) */
    uint8_t plans[PF_UP_PLANS]; /* request k (over all connections) gets plans[k % PF_UP_PLANS] */
    const uint8_t *script;      /* PF_UP_SCRIPT bytes (NULL: an empty 200) */
    size_t script_len;
    struct pf_upconn conns[PF_UP_MAX_CONNS];
    unsigned accepted;
    unsigned requests;
    unsigned responses;
    /* A request head the strict parser rejects with err is a violation unless this returns true (a known
     * bug): then it is answered 400 and the connection closed, as a strict server would. NULL: never. */
    bool (*tolerate)(int err);
};

/* Opens the listening socket on an ephemeral 127.0.0.1 port (u->port). Once per process. */
void pf_upstream_listen(struct pf_upstream *u);
/* Starts an input: no connections, these plans. */
void pf_upstream_begin(struct pf_upstream *u, const uint8_t plans[PF_UP_PLANS], const uint8_t *script,
                       size_t script_len);
/* Accepts, reads, checks and answers (pf_conn's service hook; arg is the struct pf_upstream). Aborts when the
 * proxy sent something that is not HTTP/1.1 requests, or a request on a connection whose previous response it
 * cannot have read in full. */
bool pf_upstream_service(void *arg);
/* Resets every connection now, as an upstream that restarts (or times idle connections out) would. */
void pf_upstream_reset_all(struct pf_upstream *u);
/* Closes every connection, the ones still waiting in the listen backlog too. */
void pf_upstream_end(struct pf_upstream *u);

#endif

/*
 * sample_app.h - `keel sample-app`: a small HTTP/1.1 and h2c service for demos
 * and tests (Istio's httpbin, helloworld and bookinfo in one binary).
 *
 * keel_sample_app_run() listens on opt->listen and serves until SIGTERM or
 * SIGINT. The endpoints are in app/sample_handler.h, the h2c connections in
 * app/sample_h2.h; docs/sample-app.md is the user's page.
 *
 * Threads: the calling (main) thread opens the listening socket, starts
 * opt->concurrency workers (net/worker.h) and waits for a signal. Each worker
 * runs one epoll loop and watches the shared listening socket (a non-blocking
 * accept that loses the race gets EAGAIN); a connection stays on the worker
 * that accepted it. Requests never block a loop: /delay is a timer, and a
 * request that calls other services gets a thread of its own for the calls
 * (app/sample_handler.c). This is a demo app, not the proxy's hot path: one
 * thread per calling request is simpler than an async client, and bounded by
 * the requests in flight.
 *
 * Failure behaviour: a listen error is reported before any worker starts
 * (exit status 1); a connection that breaks the protocol gets 400 (HTTP/1.1)
 * or GOAWAY (h2c) and is closed; out of memory fails only the request
 * concerned. On SIGTERM/SIGINT the workers stop, open connections are closed,
 * running calls are aborted and joined, and the run returns 0.
 */
#ifndef KEEL_APP_SAMPLE_APP_H
#define KEEL_APP_SAMPLE_APP_H

#include "app/sample_handler.h"

/* Longest request head (HTTP/1.1); a longer one is answered 431. */
#define KEEL_SAMPLE_MAX_HEAD (64 * 1024)
/* Request bodies are read and dropped, up to this many bytes (413 beyond). */
#define KEEL_SAMPLE_MAX_REQUEST_BODY (16 * 1024 * 1024)
/* An idle HTTP/1.1 or h2c connection is closed after this long. */
#define KEEL_SAMPLE_IDLE_MS 120000

/* Serves until SIGTERM or SIGINT (which it blocks in the calling thread and its workers). Returns 0 after a clean
 * stop, or 1 after saying on stderr why it could not start (bad address, port taken, out of threads). */
int keel_sample_app_run(const struct keel_sample_options *opt);

/* A freshly accepted connection of the ctx: sniffs h2c's preface, otherwise serves HTTP/1.1. Takes fd. */
void keel_sample_h1_accept(struct keel_sample_ctx *ctx, int fd, const char *peer);
/* Closes every HTTP/1.1 connection of the ctx (worker shutdown). */
void keel_sample_h1_close_all(struct keel_sample_ctx *ctx);

#endif

/*
 * sample_h2.h - the sample app's h2c connections (HTTP/2 over cleartext with
 * prior knowledge; the only nghttp2 user in app/).
 *
 * app/sample_app.c recognises the client connection preface in the first bytes
 * of a connection and hands the connection over, with the bytes it already
 * read. nghttp2 runs in memory (mem_recv / mem_send) on the worker's loop:
 * every stream becomes an exchange of app/sample_handler.h when its request is
 * complete (request bodies are read and dropped), and its response is submitted
 * when the exchange is ready, so a /delay or a calling stream never holds up
 * the others on the same connection. At most KEEL_SAMPLE_H2_MAX_STREAMS streams
 * are open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
 *
 * Ownership: the connection owns its fd, its nghttp2 session, its streams and
 * their exchanges; it is linked in ctx->h2_conns and frees itself when the peer
 * is done or breaks the protocol (nghttp2 sends GOAWAY first). Loop thread only.
 */
#ifndef KEEL_APP_SAMPLE_H2_H
#define KEEL_APP_SAMPLE_H2_H

#include "app/sample_handler.h"

#include <stddef.h>

#define KEEL_SAMPLE_H2_MAX_STREAMS 128
/* An h2c connection with no bytes received for this long is sent GOAWAY and closed. */
#define KEEL_SAMPLE_H2_IDLE_MS 120000
/* Bytes of request header fields kept per stream (names and values); more resets the stream. */
#define KEEL_SAMPLE_H2_MAX_HEADER_BYTES (64 * 1024)

/* The client connection preface every h2c-with-prior-knowledge connection starts with (RFC 9113 section 3.4). */
#define KEEL_SAMPLE_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define KEEL_SAMPLE_H2_PREFACE_LEN 24

/* Takes over fd (closed on failure too) and feeds it the n bytes already read (the preface and what followed).
 * peer is "IP:port". Returns 0, or KEEL_ENOMEM (fd closed). */
int keel_sample_h2_start(struct keel_sample_ctx *ctx, int fd, const char *peer, const char *pre, size_t n);

/* Closes every h2c connection of the ctx at once (worker shutdown). */
void keel_sample_h2_close_all(struct keel_sample_ctx *ctx);

#endif

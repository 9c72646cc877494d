/*
 * h1.h - HTTP/1.1 codec: strict head parser, chunked decoder, writers.
 *
 * The codec is pure: no I/O, no allocation, no global state. The head
 * parsers look at the bytes received so far and either parse a complete
 * head (request or status line, field lines, empty line) into a
 * keel_http_head whose slices point into those bytes, or answer KEEL_EAGAIN
 * (nothing consumed: call again with the same bytes plus more), or reject
 * the head with a KEEL_H1_E_* reason the proxy maps to a status code
 * (keel_h1_error_status) and logs (keel_h1_error_name, keel_h1_strerror).
 * Parsing is one left-to-right pass in which every decision depends only on
 * bytes already seen, so a prefix of an input gives either KEEL_EAGAIN or
 * exactly the result of the whole input - the property the fuzzer checks.
 *
 * The rules are RFC 9112 and RFC 9110 read strictly, with every choice
 * made against request smuggling (docs/http1.md lists them with their
 * sections): CRLF only, no obs-fold, no whitespace before the colon, one
 * Host, Content-Length digits only, Transfer-Encoding never with
 * Content-Length and chunked last. The decided body framing is in the
 * head's chunked / has_content_length / content_length flags; a proxy never
 * forwards the received framing headers but writes its own.
 *
 * Chunked bodies are decoded by a small state machine that keeps its state
 * between calls and yields body bytes in place (no copy). The writers
 * serialize heads and chunks into a capped keel_buf and refuse values that
 * would split a message (CR, LF, NUL).
 */
#ifndef KEEL_HTTP_H1_H
#define KEEL_HTTP_H1_H

#include "base/buf.h"
#include "base/str.h"
#include "http/message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default limits (struct keel_h1_limits overrides them). */
#define KEEL_H1_MAX_HEAD (64 * 1024)   /* bytes from the first byte to the end of the empty line */
#define KEEL_H1_MAX_TARGET (16 * 1024) /* bytes of request-target */
/* Fixed limits. */
#define KEEL_H1_MAX_CONTENT_LENGTH ((uint64_t)INT64_MAX) /* larger Content-Length values are rejected */
#define KEEL_H1_MAX_CHUNK_SIZE ((uint64_t)INT64_MAX)     /* larger chunk sizes are rejected (no 2^63 and above) */
#define KEEL_H1_MAX_CHUNK_DIGITS 32                      /* hex digits in a chunk-size, leading zeros included */
#define KEEL_H1_MAX_CHUNK_EXT 4096                       /* bytes between the chunk-size and its CRLF */
#define KEEL_H1_MAX_TRAILERS (16 * 1024)                 /* default trailer section size, final CRLF included */

/*
 * Why a head or a body was rejected, with the status a server answers to a
 * request that has it (a proxy answers 502 to an upstream response that has
 * it). The codes are negative and disjoint from base/err.h's KEEL_E* so one
 * int return carries either: parse errors need a reason the proxy can map
 * to a status, which KEEL_EPROTO alone cannot give (deviation from
 * principles.md "negative KEEL_E* code", on purpose).
 */
#define KEEL_H1_ERROR_MAP(XX)                                                                                          \
    XX(BARE_LF, 400, "bare LF line ending (CRLF required)")                                                            \
    XX(LONE_CR, 400, "CR not followed by LF")                                                                          \
    XX(REQUEST_LINE, 400, "malformed request line")                                                                    \
    XX(METHOD, 400, "method is not a token")                                                                           \
    XX(TARGET, 400, "invalid request-target")                                                                          \
    XX(TARGET_FORM, 400, "request-target form not allowed with this method")                                           \
    XX(TARGET_TOO_LONG, 414, "request-target too long")                                                                \
    XX(VERSION, 400, "malformed HTTP version")                                                                         \
    XX(VERSION_UNSUPPORTED, 505, "HTTP version not supported")                                                         \
    XX(STATUS_LINE, 502, "malformed status line")                                                                      \
    XX(HEADER_NAME, 400, "header field name is not a token")                                                           \
    XX(HEADER_SPACE, 400, "whitespace between header field name and colon")                                            \
    XX(HEADER_COLON, 400, "header field line without a colon")                                                         \
    XX(HEADER_VALUE, 400, "control character in header field value")                                                   \
    XX(OBS_FOLD, 400, "obsolete line folding (field line starts with whitespace)")                                     \
    XX(HEAD_TOO_LARGE, 431, "header section too large")                                                                \
    XX(TOO_MANY_HEADERS, 431, "too many header fields")                                                                \
    XX(HOST_MISSING, 400, "HTTP/1.1 request without Host")                                                             \
    XX(HOST_DUPLICATE, 400, "more than one Host header field")                                                         \
    XX(HOST_INVALID, 400, "Host is not a valid authority")                                                             \
    XX(CONTENT_LENGTH, 400, "Content-Length is not a decimal number")                                                  \
    XX(CONTENT_LENGTH_CONFLICT, 400, "Content-Length header fields disagree")                                          \
    XX(TE_WITH_CONTENT_LENGTH, 400, "both Transfer-Encoding and Content-Length")                                       \
    XX(TE_HTTP10, 400, "Transfer-Encoding in an HTTP/1.0 message")                                                     \
    XX(TE_INVALID, 400, "malformed Transfer-Encoding")                                                                 \
    XX(TE_NOT_CHUNKED, 400, "final transfer coding is not chunked")                                                    \
    XX(TE_UNKNOWN, 501, "unknown transfer coding")                                                                     \
    XX(CONNECT_BODY, 400, "CONNECT request with content")                                                              \
    XX(CHUNK_SIZE, 400, "invalid chunk size")                                                                          \
    XX(CHUNK_TOO_BIG, 400, "chunk size too large")                                                                     \
    XX(CHUNK_EXT, 400, "invalid chunk extension")                                                                      \
    XX(CHUNK_EXT_TOO_LONG, 400, "chunk extension too long")                                                            \
    XX(CHUNK_CRLF, 400, "chunk data not followed by CRLF")                                                             \
    XX(TRAILERS_TOO_LARGE, 431, "trailer section too large")

enum keel_h1_error {
    KEEL__H1_E_FIRST = -2000,
#define KEEL_H1_ERR_ENUM(name, status, msg) KEEL_H1_E_##name,
    KEEL_H1_ERROR_MAP(KEEL_H1_ERR_ENUM)
#undef KEEL_H1_ERR_ENUM
        KEEL__H1_E_LAST
};

/* Message for a KEEL_H1_E_* code, or keel_strerror()'s for any other code; never NULL. */
const char *keel_h1_strerror(int err);
/* Symbolic name ("KEEL_H1_E_BARE_LF"), or keel_err_name()'s for any other code; never NULL. */
const char *keel_h1_error_name(int err);
/* Status a server answers to a request rejected with err: 400, 414, 431, 501 or 505 (502 for
 * KEEL_H1_E_STATUS_LINE); 400 for codes that are not KEEL_H1_E_*. */
int keel_h1_error_status(int err);

/* Limits for one parse; a zero field means the default. */
struct keel_h1_limits {
    size_t max_head;    /* KEEL_H1_MAX_HEAD; larger head -> KEEL_H1_E_HEAD_TOO_LARGE (431) */
    size_t max_target;  /* KEEL_H1_MAX_TARGET; longer target -> KEEL_H1_E_TARGET_TOO_LONG (414) */
    size_t max_headers; /* KEEL_HTTP_MAX_HEADERS, also the upper bound; more -> KEEL_H1_E_TOO_MANY_HEADERS (431) */
};

enum keel_h1_form {
    KEEL_H1_FORM_ORIGIN,    /* "/path?query" */
    KEEL_H1_FORM_ABSOLUTE,  /* "http://authority/path?query" (requests to a proxy) */
    KEEL_H1_FORM_AUTHORITY, /* "host:port" (CONNECT only) */
    KEEL_H1_FORM_ASTERISK,  /* "*" (OPTIONS only) */
};

/* HTTP/1-only facts about a request head. */
struct keel_h1_request {
    enum keel_h1_form form;
    /* The target carried the authority (absolute- or authority-form) and a Host field was also
     * received: head->authority is the target's, and the Host field (still in head->headers) must be
     * ignored and replaced when forwarding (RFC 9112 section 3.2.2). */
    bool host_ignored;
};

/* HTTP/1-only facts about a response head: how its body is delimited, beyond head->chunked and
 * head->has_content_length (which are both false when one of these is set). */
struct keel_h1_response {
    bool no_body;          /* 1xx but 101, 204, 304, or the answer to HEAD: no body, whatever the fields say */
    bool tunnel;           /* 101, or 2xx to CONNECT: the connection carries raw bytes after the head */
    bool body_until_close; /* neither chunked nor Content-Length: the body ends when the server closes */
};

/*
 * Parses a request head at the start of buf[0..len) into *out, with the default limits.
 * Returns 0 when a complete head was parsed (*consumed = its length, the final CRLFCRLF and any
 * empty lines before the request line included), KEEL_EAGAIN when more bytes are needed (nothing
 * consumed), or a KEEL_H1_E_* code. On 0, every slice in *out points into buf (out->path may be
 * the static "/" of an absolute-form target without a path). On any other return *out holds
 * garbage and *consumed is unchanged. After an error the connection must be closed.
 */
int keel_h1_parse_request(const char *buf, size_t len, struct keel_http_head *out, size_t *consumed);
/* The same with explicit limits (NULL = defaults) and the HTTP/1-only facts in *req (may be NULL). */
int keel_h1_parse_request_ex(const char *buf, size_t len, const struct keel_h1_limits *lim, struct keel_http_head *out,
                             struct keel_h1_request *req, size_t *consumed);

/*
 * Parses a response head; req_method is the method of the request it answers (HEAD and CONNECT
 * change the framing). Returns as keel_h1_parse_request(). lim may be NULL (defaults); res must
 * not be NULL. A 1xx other than 101 is an interim response: the final one follows it.
 */
int keel_h1_parse_response(const char *buf, size_t len, struct keel_str req_method, const struct keel_h1_limits *lim,
                           struct keel_http_head *out, struct keel_h1_response *res, size_t *consumed);

/*
 * Cheap check that buf[0..len) holds a head terminator (CRLFCRLF), so a connection can call the
 * parser once per head instead of once per read: *scanned (0 at the start of a head) remembers
 * where the last call stopped, which makes a head that arrives byte by byte cost O(n), not O(n^2).
 * A head that never completes is bounded by calling the parser anyway once len reaches the
 * head limit, which then reports the first error or KEEL_H1_E_HEAD_TOO_LARGE.
 */
bool keel_h1_has_head(const char *buf, size_t len, size_t *scanned);

/* Chunked transfer-coding decoder state (RFC 9112 section 7.1). Initialise with keel_h1_chunked_init(). */
struct keel_h1_chunked {
    /* After KEEL_H1_CHUNKED_END: the trailer field lines, each with its CRLF, without the final empty
     * line (empty when there were none). Points into the input of the last call. */
    struct keel_str trailers;
    size_t max_trailers; /* bytes; keel_h1_chunked_init() sets KEEL_H1_MAX_TRAILERS (0 also means it) */
    /* private */
    uint64_t _size;  /* chunk-size being read, then bytes of chunk data left */
    uint32_t _count; /* digits of the chunk-size, then bytes of its extensions */
    uint8_t _state;
    int _err; /* the error once one was returned */
};

#define KEEL_H1_CHUNKED_END 1

void keel_h1_chunked_init(struct keel_h1_chunked *st);

/*
 * Decodes the chunked body in in[0..len). Returns:
 *   0                    *data, *data_len is a non-empty run of body bytes inside `in` (no copy);
 *                        call again with in + *consumed.
 *   KEEL_EAGAIN          more input is needed. in[*consumed..len) was not used (it is non-empty
 *                        only inside the trailer section, which is parsed whole): pass it again,
 *                        followed by the next bytes.
 *   KEEL_H1_CHUNKED_END  the last chunk and the trailer section were consumed; in + *consumed is
 *                        the next message. st->trailers holds the trailer field lines.
 *   KEEL_H1_E_*          malformed body; every later call returns the same code.
 * *data_len is 0 unless 0 is returned.
 */
int keel_h1_chunked_feed(struct keel_h1_chunked *st, const char *in, size_t len, size_t *consumed, const char **data,
                         size_t *data_len);

/* Parses a trailer section (st->trailers after KEEL_H1_CHUNKED_END) into out->headers and
 * out->nheaders; other fields of *out are untouched. Slices point into section. Returns 0 or a
 * KEEL_H1_E_* code. */
int keel_h1_parse_trailers(struct keel_str section, struct keel_http_head *out);

/*
 * Writers. Each appends to out and returns 0, KEEL_ENOMEM, KEEL_ETOOBIG (out->max reached) or
 * KEEL_EINVAL (a method, target, name or value that is not valid on the wire: CR, LF and NUL are
 * never written); on failure out is unchanged. They write exactly the fields given: the caller
 * adds the framing (Content-Length or Transfer-Encoding: chunked) and Connection fields it chose.
 */

/* "METHOD target HTTP/1.x" and the fields. The target is h->target when it is set, otherwise
 * h->path with "?" h->query when the query is not empty. HTTP/1.0 when h->version is KEEL_HTTP_10,
 * HTTP/1.1 otherwise. headers/n is the field list to send (NULL: h->headers). */
int keel_h1_write_request_head(struct keel_buf *out, const struct keel_http_head *h,
                               const struct keel_http_header *headers, size_t n);
/* "HTTP/1.x status reason" and the fields; status must be 100-599; an empty h->reason is replaced
 * by keel_h1_reason(status). */
int keel_h1_write_response_head(struct keel_buf *out, const struct keel_http_head *h,
                                const struct keel_http_header *headers, size_t n);
/* One chunk: hex size, CRLF, data, CRLF. len 0 writes nothing (a zero-size chunk ends the body). */
int keel_h1_write_chunk(struct keel_buf *out, const void *data, size_t len);
/* The last chunk "0" CRLF, the trailer fields (may be NULL/0), and the final CRLF. */
int keel_h1_write_last_chunk(struct keel_buf *out, const struct keel_http_header *trailers, size_t n);

/* Whether p[0..n) is a valid authority (uri-host [":" port], RFC 9110 section 4.2.3 and RFC 3986): no userinfo,
 * a port of at most 65535; the same rule the request parser applies to Host. For other codecs (HTTP/2). */
bool keel_h1_authority_valid(const char *p, size_t n);

/* Standard reason phrase for a status ("Not Found"), or "" for an unregistered one. */
const char *keel_h1_reason(int status);

#endif

/*
 * sni.h - the server name (SNI) of a TLS ClientHello, read from the first
 * bytes of a connection without terminating TLS.
 *
 * TLS passthrough routes a connection by the host name the client asks for
 * (VirtualService tls[].match[].sniHosts) and forwards the bytes untouched, so
 * the proxy only looks at the ClientHello: the TLS records at the start of
 * the connection (RFC 8446 5.1; a ClientHello may be fragmented over several
 * handshake records), the ClientHello message (4.1.2) and its server_name
 * extension (RFC 6066 3). The caller keeps the bytes and replays them
 * upstream; nothing is consumed.
 *
 * The parser reads untrusted bytes and is strict: every length is checked
 * against the structure that contains it and against the bytes given; any
 * inconsistency is KEEL_EPROTO, never a guess. It waits (KEEL_EAGAIN) until
 * the whole ClientHello is there before it looks inside, so a result other
 * than KEEL_EAGAIN never changes when more bytes arrive: the answer for a
 * prefix is KEEL_EAGAIN or the answer for the whole input. It allocates
 * nothing and keeps no state (tests/fuzz/sni_fuzz.c checks all of this).
 */
#ifndef KEEL_PROXY_SNI_H
#define KEEL_PROXY_SNI_H

#include <stddef.h>
#include <stdint.h>

/* The ClientHello must be complete within this many bytes of the connection (record headers included);
 * longer ones are KEEL_ETOOBIG. Envoy's TLS inspector has the same 16 KiB default. */
#define KEEL_SNI_MAX_INPUT 16384
/* Longest host name accepted (RFC 1035), and the longest label. */
#define KEEL_SNI_MAX_NAME 253
#define KEEL_SNI_MAX_LABEL 63

/* Looks for the server name in the first n bytes of a connection.
 *   0              found: out holds the host name, lower-cased and NUL-terminated (*out_len its length);
 *   KEEL_ENOTFOUND a complete, well-formed ClientHello without a server_name extension;
 *   KEEL_EAGAIN    a prefix of something that may still become a ClientHello: read more;
 *   KEEL_EPROTO    not TLS, not a ClientHello, malformed, or a server name that is not a valid host name
 *                  (characters other than letters, digits, '-' and '_', empty or over-long labels, a trailing dot);
 *   KEEL_ETOOBIG   the ClientHello does not fit in KEEL_SNI_MAX_INPUT bytes.
 * out must hold KEEL_SNI_MAX_NAME + 1 bytes; it and *out_len are only written on success. */
int keel_sni_parse(const uint8_t *p, size_t n, char *out, size_t *out_len);

#endif

/*
 * sni_test.c - tests for proxy/sni: real ClientHellos captured from
 * `openssl s_client` (TLS 1.3 with and without -servername, TLS 1.2), each
 * truncated at every byte and re-cut into records of every size from 1 to 64
 * bytes; hostile lengths at every level (record, handshake, session id,
 * cipher suites, extensions, server_name list, host name); host name rules
 * (case, wildcards, empty labels, trailing dot, NUL, label and name length);
 * duplicate server_name extensions; the 16 KiB limit on both sides of the
 * edge; non-TLS input refused on the first byte; and a replay of the fuzz
 * corpus through the fuzz target's own invariant checks.
 */
#include "proxy/sni.h"

#include "base/err.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The fuzz target's invariant checks and its ClientHello builder (sni_build_hello). Its corpus is replayed
 * by the ctest fuzz-replay/sni (tests/fuzz/replay_main.c) in every build. */
#include "../../fuzz/sni_fuzz.c"

/* Captured with a listening socket and `openssl s_client -connect 127.0.0.1:P [-servername a.example.com |
 * -noservername] [-tls1_2]` (OpenSSL 3.0): the first flight, one handshake record. */
static const char hello_tls13_sni[] = /* -servername a.example.com, 319 bytes */
    "160301013a010001360303a76fbb42da6eb9264e48cfd4b2b844d39be0401132758881bc531e3f5b9dac0a208d0ccc0a"
    "b4ca229b715c4c00e5b44b426fc36e46d88db150d4261130b3e296eb003e130213031301c02cc030009fcca9cca8ccaa"
    "c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff010000af"
    "00000012001000000d612e6578616d706c652e636f6d000b000403000102000a00160014001d0017001e001900180100"
    "0101010201030104002300000016000000170000000d002a0028040305030603080708080809080a080b080408050806"
    "040105010601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d00204e"
    "02c8dcf7096fff4d8d7a488fc68b7353eb3118feb7520cbf96f7aee5915127";
static const char hello_tls13_nosni[] = /* -noservername, 297 bytes */
    "16030101240100012003033ae148c81fe2e3dffde9cb30aa10164a9d47b0f5a99b1f4bffe38c0934da8ae02080fbd6e5"
    "9d80568f7c9e30940be15dcdebb7e29909c36ad0efb2117c0ccdfc0e003e130213031301c02cc030009fcca9cca8ccaa"
    "c02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c0035002f00ff01000099"
    "000b000403000102000a00160014001d0017001e0019001801000101010201030104002300000016000000170000000d"
    "002a0028040305030603080708080809080a080b080408050806040105010601030303010302040205020602002b0009"
    "080304030303020301002d00020101003300260024001d00201c3564d1e39506b10063a49c8ea239e3761d2a6ec46cec"
    "f3b1eb0fd1368cda2e";
static const char hello_tls12_sni[] = /* -servername b.example.com -tls1_2, 210 bytes */
    "16030100cd010000c90303ff99347cfb033f11bff16746996c09ddd17aa31074c43f556e37ae1ec250907d000038c02c"
    "c030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d003c"
    "0035002f00ff0100006800000012001000000d622e6578616d706c652e636f6d000b000403000102000a000c000a001d"
    "0017001e00190018002300000016000000170000000d002a0028040305030603080708080809080a080b080408050806"
    "040105010601030303010302040205020602";

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

static char name[KEEL_SNI_MAX_NAME + 1];
static size_t name_len;

/* Parses an exact-size heap copy (ASan sees any read past the end). */
static int parse(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    assert_non_null(c);
    if (n)
        memcpy(c, p, n);
    name[0] = '\0';
    name_len = 0;
    int rc = keel_sni_parse(c, n, name, &name_len);
    free(c);
    return rc;
}

/* Re-cuts a single-record ClientHello into records of `frag` bytes. */
static size_t refragment(const uint8_t *in, size_t n, size_t frag, uint8_t *out, size_t cap)
{
    size_t len = (size_t)in[3] << 8 | in[4];
    assert_int_equal(len + 5, n);
    size_t o = 0;
    for (size_t off = 0; off < len; off += frag) {
        size_t k = len - off < frag ? len - off : frag;
        assert_true(o + 5 + k <= cap);
        out[o++] = 22;
        out[o++] = 3;
        out[o++] = 1;
        out[o++] = (uint8_t)(k >> 8);
        out[o++] = (uint8_t)k;
        memcpy(out + o, in + 5 + off, k);
        o += k;
    }
    return o;
}

/* Every prefix is KEEL_EAGAIN, the whole gives want/want_name, and so does every fragmentation. */
static void check_capture(const char *hex, int want, const char *want_name)
{
    static uint8_t buf[1024], frag[16384];
    size_t n = unhex(hex, buf, sizeof(buf));
    for (size_t k = 0; k < n; k++)
        assert_int_equal(parse(buf, k), KEEL_EAGAIN);
    assert_int_equal(parse(buf, n), want);
    if (want_name)
        assert_string_equal(name, want_name);
    for (size_t f = 1; f <= 64; f++) {
        size_t m = refragment(buf, n, f, frag, sizeof(frag));
        assert_int_equal(parse(frag, m), want);
        if (want_name) {
            assert_string_equal(name, want_name);
            assert_int_equal(name_len, strlen(want_name));
        }
        if (f == 1 || f == 7 || f == 64)
            for (size_t k = 0; k < m; k++)
                assert_int_equal(parse(frag, k), KEEL_EAGAIN);
    }
}

static void test_openssl_tls13_sni(void **state)
{
    (void)state;
    check_capture(hello_tls13_sni, 0, "a.example.com");
}

static void test_openssl_tls13_no_sni(void **state)
{
    (void)state;
    check_capture(hello_tls13_nosni, KEEL_ENOTFOUND, NULL);
}

static void test_openssl_tls12_sni(void **state)
{
    (void)state;
    check_capture(hello_tls12_sni, 0, "b.example.com");
}

static void test_trailing_bytes_ignored(void **state)
{
    (void)state;
    /* what follows the ClientHello (a ChangeCipherSpec, early data) is not looked at */
    uint8_t buf[1024];
    size_t n = unhex(hello_tls13_sni, buf, sizeof(buf));
    memcpy(buf + n, "\x14\x03\x03\x00\x01\x01", 6);
    assert_int_equal(parse(buf, n + 6), 0);
    assert_string_equal(name, "a.example.com");
    memset(buf + n, 0xff, 100);
    assert_int_equal(parse(buf, n + 100), 0);
}

static void test_not_tls(void **state)
{
    (void)state;
    assert_int_equal(parse((const uint8_t *)"G", 1), KEEL_EPROTO);
    assert_int_equal(parse((const uint8_t *)"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27), KEEL_EPROTO);
    assert_int_equal(parse((const uint8_t *)"\x80\x2e\x01\x03\x01", 5), KEEL_EPROTO);         /* SSLv2 hello */
    assert_int_equal(parse((const uint8_t *)"\x15\x03\x03\x00\x02\x02\x28", 7), KEEL_EPROTO); /* alert */
    assert_int_equal(parse((const uint8_t *)"\x16\x02", 2), KEEL_EPROTO);                     /* version 2.x */
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x05", 3), KEEL_EPROTO);                 /* version 3.5 */
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x00\x04\x02", 6), KEEL_EPROTO);     /* ServerHello */
    assert_int_equal(parse((const uint8_t *)"", 0), KEEL_EAGAIN);
    assert_int_equal(parse((const uint8_t *)"\x16", 1), KEEL_EAGAIN);
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x00", 4), KEEL_EAGAIN);
}

static void test_record_lengths(void **state)
{
    (void)state;
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x00\x00", 5), KEEL_EPROTO);     /* empty fragment */
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x40\x01\x01", 6), KEEL_EPROTO); /* 2^14 + 1 */
    /* a record that cannot fit in the limit with its header */
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x40\x00\x01", 6), KEEL_ETOOBIG);
    /* a handshake message longer than the limit */
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x00\x10\x01\x00\x40\x00", 9), KEEL_ETOOBIG);
    assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x00\x10\x01\xff\xff\xff", 9), KEEL_ETOOBIG);
    /* a second record of another type in the middle of the message */
    uint8_t buf[1024], frag[4096];
    size_t n = unhex(hello_tls12_sni, buf, sizeof(buf));
    size_t m = refragment(buf, n, 100, frag, sizeof(frag));
    frag[105] = 23;
    assert_int_equal(parse(frag, m), KEEL_EPROTO);
    /* handshake bytes after the ClientHello in the same record */
    uint8_t more[1024];
    memcpy(more, buf, n);
    more[n] = 0x0b;
    size_t len = ((size_t)buf[3] << 8 | buf[4]) + 1;
    more[3] = (uint8_t)(len >> 8);
    more[4] = (uint8_t)len;
    assert_int_equal(parse(more, n + 1), KEEL_EPROTO);
}

/* A ClientHello body with the given session id length, cipher suite bytes and extensions (NULL: none). */
static size_t make_hello(uint8_t *out, size_t sid, size_t ncs, size_t ncomp, const uint8_t *ext, size_t next)
{
    uint8_t body[20000];
    size_t b = 0;
    body[b++] = 3;
    body[b++] = 3;
    memset(body + b, 0x42, 32);
    b += 32;
    body[b++] = (uint8_t)sid;
    memset(body + b, 0x11, sid);
    b += sid;
    body[b++] = (uint8_t)(ncs >> 8);
    body[b++] = (uint8_t)ncs;
    memset(body + b, 0x13, ncs);
    b += ncs;
    body[b++] = (uint8_t)ncomp;
    memset(body + b, 0, ncomp);
    b += ncomp;
    if (ext) {
        body[b++] = (uint8_t)(next >> 8);
        body[b++] = (uint8_t)next;
        memcpy(body + b, ext, next);
        b += next;
    }
    size_t o = 0;
    size_t total = b + 4;
    assert_true(total <= 16384);
    out[o++] = 22;
    out[o++] = 3;
    out[o++] = 1;
    out[o++] = (uint8_t)(total >> 8);
    out[o++] = (uint8_t)total;
    out[o++] = 1;
    out[o++] = 0;
    out[o++] = (uint8_t)(b >> 8);
    out[o++] = (uint8_t)b;
    memcpy(out + o, body, b);
    return o + b;
}

/* A server_name extension with one entry of `type` holding `host`. */
static size_t sni_ext(uint8_t *out, int type, const char *host, size_t hn)
{
    size_t o = 0;
    out[o++] = 0;
    out[o++] = 0;
    out[o++] = (uint8_t)((hn + 5) >> 8);
    out[o++] = (uint8_t)(hn + 5);
    out[o++] = (uint8_t)((hn + 3) >> 8);
    out[o++] = (uint8_t)(hn + 3);
    out[o++] = (uint8_t)type;
    out[o++] = (uint8_t)(hn >> 8);
    out[o++] = (uint8_t)hn;
    memcpy(out + o, host, hn);
    return o + hn;
}

static uint8_t H[20000];

static int hello_with(const char *host)
{
    uint8_t ext[600];
    size_t e = sni_ext(ext, 0, host, strlen(host));
    return parse(H, make_hello(H, 0, 2, 1, ext, e));
}

static void test_body_lengths(void **state)
{
    (void)state;
    uint8_t ext[600];
    size_t e = sni_ext(ext, 0, "x.test", 6);
    assert_int_equal(parse(H, make_hello(H, 32, 2, 1, ext, e)), 0);
    assert_string_equal(name, "x.test");
    assert_int_equal(parse(H, make_hello(H, 33, 2, 1, ext, e)), KEEL_EPROTO);    /* session id > 32 */
    assert_int_equal(parse(H, make_hello(H, 0, 0, 1, ext, e)), KEEL_EPROTO);     /* no cipher suite */
    assert_int_equal(parse(H, make_hello(H, 0, 3, 1, ext, e)), KEEL_EPROTO);     /* odd */
    assert_int_equal(parse(H, make_hello(H, 0, 2, 0, ext, e)), KEEL_EPROTO);     /* no compression method */
    assert_int_equal(parse(H, make_hello(H, 0, 2, 1, NULL, 0)), KEEL_ENOTFOUND); /* no extensions block */
    assert_int_equal(parse(H, make_hello(H, 0, 2, 1, ext, 0)), KEEL_ENOTFOUND);  /* empty extensions block */

    /* the extensions length says more or less than there is */
    size_t n = make_hello(H, 0, 2, 1, ext, e);
    size_t at = 5 + 4 + 2 + 32 + 1 + 2 + 2 + 1 + 1; /* extensions length */
    H[at + 1]++;
    assert_int_equal(parse(H, n), KEEL_EPROTO);
    H[at + 1] -= 2;
    assert_int_equal(parse(H, n), KEEL_EPROTO);
    H[at + 1]++;
    assert_int_equal(parse(H, n), 0);
    /* one extension's length runs past the block */
    H[at + 2 + 3]++;
    assert_int_equal(parse(H, n), KEEL_EPROTO);
    H[at + 2 + 3]--;
    /* the server name list length disagrees with the extension */
    H[at + 2 + 5]++;
    assert_int_equal(parse(H, n), KEEL_EPROTO);
    H[at + 2 + 5]--;
    /* the host name length runs past the list, or stops short of it */
    H[at + 2 + 8]++;
    assert_int_equal(parse(H, n), KEEL_EPROTO);
    H[at + 2 + 8] -= 2;
    assert_int_equal(parse(H, n), KEEL_EPROTO);
    H[at + 2 + 8]++;
    assert_int_equal(parse(H, n), 0);
    /* lengths of 0xffff everywhere */
    for (size_t i = at; i + 1 < n; i++) {
        uint8_t a = H[i], b = H[i + 1];
        H[i] = H[i + 1] = 0xff;
        int rc = parse(H, n);
        assert_true(rc == KEEL_EPROTO || rc == KEEL_ENOTFOUND || rc == 0);
        H[i] = a;
        H[i + 1] = b;
    }
    /* the handshake length says less than the record holds, or more */
    H[8]--;
    assert_int_equal(parse(H, n), KEEL_EPROTO);
    H[8] += 2;
    assert_int_equal(parse(H, n), KEEL_EAGAIN);
    H[8]--;
    /* version 2.0 in the hello */
    H[9] = 2;
    assert_int_equal(parse(H, n), KEEL_EPROTO);
}

static void test_server_name_list(void **state)
{
    (void)state;
    uint8_t ext[600];
    size_t e = sni_ext(ext, 1, "x.test", 6); /* unknown name type */
    assert_int_equal(parse(H, make_hello(H, 0, 2, 1, ext, e)), KEEL_EPROTO);
    /* two entries in the list */
    uint8_t two[64] = {0, 0, 0, 14, 0, 12, 0, 0, 3, 'a', '.', 'b', 0, 0, 3, 'c', '.', 'd'};
    assert_int_equal(parse(H, make_hello(H, 0, 2, 1, two, 18)), KEEL_EPROTO);
    /* an empty extension (a server's echo, not a client's) and an empty list */
    uint8_t empty[8] = {0, 0, 0, 0};
    assert_int_equal(parse(H, make_hello(H, 0, 2, 1, empty, 4)), KEEL_EPROTO);
    uint8_t empty_list[8] = {0, 0, 0, 2, 0, 0};
    assert_int_equal(parse(H, make_hello(H, 0, 2, 1, empty_list, 6)), KEEL_EPROTO);
    /* an empty host name */
    e = sni_ext(ext, 0, "", 0);
    assert_int_equal(parse(H, make_hello(H, 0, 2, 1, ext, e)), KEEL_EPROTO);
    /* two server_name extensions, even with the same name */
    size_t one = sni_ext(ext, 0, "a.test", 6);
    memcpy(ext + one, ext, one);
    assert_int_equal(parse(H, make_hello(H, 0, 2, 1, ext, 2 * one)), KEEL_EPROTO);
    /* other extensions before and after are skipped */
    uint8_t mix[600] = {0xff, 0x01, 0, 1, 0, 0x00, 0x17, 0, 0};
    size_t m = 9 + sni_ext(mix + 9, 0, "m.test", 6);
    memcpy(mix + m, "\x00\x2b\x00\x03\x02\x03\x04", 7);
    assert_int_equal(parse(H, make_hello(H, 0, 2, 1, mix, m + 7)), 0);
    assert_string_equal(name, "m.test");
}

static void test_host_names(void **state)
{
    (void)state;
    assert_int_equal(hello_with("A.Example.COM"), 0);
    assert_string_equal(name, "a.example.com");
    assert_int_equal(name_len, 13);
    assert_int_equal(hello_with("localhost"), 0);
    assert_int_equal(hello_with("my_svc-1.ns.svc.cluster.local"), 0);
    assert_int_equal(hello_with("10.0.0.1"), 0); /* not allowed by RFC 6066, sent by some clients: harmless */
    assert_int_equal(hello_with("*.example.com"), KEEL_EPROTO);
    assert_int_equal(hello_with("*"), KEEL_EPROTO);
    assert_int_equal(hello_with("a..b"), KEEL_EPROTO);
    assert_int_equal(hello_with(".a.b"), KEEL_EPROTO);
    assert_int_equal(hello_with("a.b."), KEEL_EPROTO);
    assert_int_equal(hello_with("a b"), KEEL_EPROTO);
    assert_int_equal(hello_with("a/b"), KEEL_EPROTO);
    assert_int_equal(hello_with("a:443"), KEEL_EPROTO);
    assert_int_equal(hello_with("\xc3\xa9.test"), KEEL_EPROTO);
    uint8_t ext[600];
    size_t e = sni_ext(ext, 0, "a\0b.test", 8);
    assert_int_equal(parse(H, make_hello(H, 0, 2, 1, ext, e)), KEEL_EPROTO);

    char host[400];
    memset(host, 'a', 63);
    strcpy(host + 63, ".test");
    assert_int_equal(hello_with(host), 0);
    memset(host, 'a', 64);
    strcpy(host + 64, ".test");
    assert_int_equal(hello_with(host), KEEL_EPROTO);
    /* 253 bytes is the longest name: 4 labels of 62 + 3 dots + "x" */
    size_t o = 0;
    for (int i = 0; i < 4; i++) {
        memset(host + o, 'b', 62);
        o += 62;
        host[o++] = '.';
    }
    host[o++] = 'x';
    host[o] = '\0';
    assert_int_equal(strlen(host), 253);
    assert_int_equal(hello_with(host), 0);
    assert_int_equal(name_len, 253);
    strcpy(host + o, "y");
    assert_int_equal(hello_with(host), KEEL_EPROTO);
}

static void test_size_limit(void **state)
{
    (void)state;
    /* a padding extension makes the ClientHello exactly KEEL_SNI_MAX_INPUT bytes on the wire, then one more */
    uint8_t ext[17000];
    size_t e = sni_ext(ext, 0, "big.test", 8);
    size_t fixed = 5 + 4 + 2 + 32 + 1 + 2 + 2 + 1 + 1 + 2 + e + 4; /* everything but the padding bytes */
    size_t pad = KEEL_SNI_MAX_INPUT - fixed;
    ext[e] = 0x00;
    ext[e + 1] = 0x15; /* padding (RFC 7685) */
    ext[e + 2] = (uint8_t)(pad >> 8);
    ext[e + 3] = (uint8_t)pad;
    memset(ext + e + 4, 0, pad);
    size_t n = make_hello(H, 0, 2, 1, ext, e + 4 + pad);
    assert_int_equal(n, KEEL_SNI_MAX_INPUT);
    assert_int_equal(parse(H, n), 0);
    assert_string_equal(name, "big.test");
    pad++;
    ext[e + 2] = (uint8_t)(pad >> 8);
    ext[e + 3] = (uint8_t)pad;
    ext[e + 4 + pad - 1] = 0;
    n = make_hello(H, 0, 2, 1, ext, e + 4 + pad);
    assert_int_equal(n, KEEL_SNI_MAX_INPUT + 1);
    assert_int_equal(parse(H, n), KEEL_ETOOBIG);
    assert_int_equal(parse(H, 5), KEEL_ETOOBIG); /* known from the record header already */
    /* the same message cut into many records does not fit either */
    uint8_t small[4096], cut[8192];
    size_t s = sni_build_hello(small, sizeof(small), "frag.test", 0);
    size_t c = refragment(small, s, 1, cut, sizeof(cut));
    assert_int_equal(parse(cut, c), 0);
    assert_true(c < KEEL_SNI_MAX_INPUT);
    /* record headers count: a 3 KiB message in 1-byte records is 18 KiB on the wire */
    static uint8_t wire[40000];
    e = sni_ext(ext, 0, "many.test", 9);
    memcpy(ext + e, "\x00\x15\x0b\xb8", 4);
    memset(ext + e + 4, 0, 3000);
    n = make_hello(H, 0, 2, 1, ext, e + 4 + 3000);
    assert_int_equal(parse(H, n), 0);
    c = refragment(H, n, 1, wire, sizeof(wire));
    assert_true(c > KEEL_SNI_MAX_INPUT);
    assert_int_equal(parse(wire, c), KEEL_ETOOBIG);
    /* regression (found by sni_fuzz): past the limit, a full-size record was gathered beyond the message buffer */
    size_t o = 0;
    for (size_t i = 0; i < 2800; i++) {
        static const uint8_t head[] = {1, 0, 0x3e, 0x80, 3, 3};
        memcpy(wire + o, "\x16\x03\x01\x00\x01", 5);
        wire[o + 5] = i < sizeof(head) ? head[i] : 0x42;
        o += 6;
    }
    memcpy(wire + o, "\x16\x03\x01\x40\x00", 5);
    memset(wire + o + 5, 0, 16384);
    o += 5 + 16384;
    assert_int_equal(parse(wire, o), KEEL_ETOOBIG);
    for (size_t k = 0; k < o; k += 997)
        assert_true(parse(wire, k) == KEEL_EAGAIN || parse(wire, k) == KEEL_ETOOBIG);
}

static void test_builder_round_trip(void **state)
{
    (void)state;
    uint8_t buf[4096];
    for (size_t frag = 0; frag < 80; frag += 13) {
        size_t n = sni_build_hello(buf, sizeof(buf), "Round.Trip.Example", frag);
        assert_true(n > 0);
        assert_int_equal(parse(buf, n), 0);
        assert_string_equal(name, "round.trip.example");
        n = sni_build_hello(buf, sizeof(buf), NULL, frag);
        assert_int_equal(parse(buf, n), KEEL_ENOTFOUND);
    }
}

static void test_outputs_untouched_on_failure(void **state)
{
    (void)state;
    char out[KEEL_SNI_MAX_NAME + 1] = "keep";
    size_t len = 77;
    assert_int_equal(keel_sni_parse((const uint8_t *)"\x16\x03\x01", 3, out, &len), KEEL_EAGAIN);
    assert_int_equal(keel_sni_parse((const uint8_t *)"x", 1, out, &len), KEEL_EPROTO);
    uint8_t buf[1024];
    size_t n = unhex(hello_tls13_nosni, buf, sizeof(buf));
    assert_int_equal(keel_sni_parse(buf, n, out, &len), KEEL_ENOTFOUND);
    assert_string_equal(out, "keep");
    assert_int_equal(len, 77);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openssl_tls13_sni),
        cmocka_unit_test(test_openssl_tls13_no_sni),
        cmocka_unit_test(test_openssl_tls12_sni),
        cmocka_unit_test(test_trailing_bytes_ignored),
        cmocka_unit_test(test_not_tls),
        cmocka_unit_test(test_record_lengths),
        cmocka_unit_test(test_body_lengths),
        cmocka_unit_test(test_server_name_list),
        cmocka_unit_test(test_host_names),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_builder_round_trip),
        cmocka_unit_test(test_outputs_untouched_on_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

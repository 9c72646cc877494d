#!/usr/bin/env python3
"""gen_proxy_h2_corpus.py - write the named seeds of tests/fuzz/corpus/proxy_h2/.

    tests/fuzz/gen_proxy_h2_corpus.py [OUT_DIR]     (default: tests/fuzz/corpus/proxy_h2)

Each seed is an input of proxy_h2_fuzz.c in its structured encoding (see the
header comment there): 5 header bytes (flags, four upstream plans), then
records [type][flags][stream][len][payload]. The seeds are valid HTTP/2
conversations (a GET, a POST with DATA, concurrent streams, a reset in the
middle of a response, a WINDOW_UPDATE storm, ...) against every kind of
upstream answer, plus a few protocol errors; the fuzzer mutates from there.
Existing files of the same name are overwritten; other files are left alone.
"""
import os
import sys

# ---- the encoding (keep in step with proxy_h2_fuzz.c) ----------------------------------------------------------

# byte 0
MODE_SETTINGS, MODE_SETTINGS_WINDOW, MODE_FRAMES, MODE_RAW = 0, 1, 2, 3
SPLIT_PREFACE, CLOSE, DRAINING, WAIT = 0x04, 0x08, 0x10, 0x20
LOG_TEXT, LOG_JSON, LOG_CUSTOM = 0x40, 0x80, 0xC0

# upstream plans (enum pf_up_kind | flags)
(OK, CHUNKED, NO_CONTENT, UNTIL_CLOSE, CONTINUE, NOT_MODIFIED, BIG, HUGE_CHUNKED, GARBAGE, UP_CLOSE, HOP_HEADERS,
 UNAVAILABLE, CUT, SCRIPT, SILENT, SWITCHING) = range(16)
EARLY, KEEP, SPLIT, STALL = 0x10, 0x20, 0x40, 0x80

# record types
(HEADERS, DATA, RST_STREAM, SETTINGS, WINDOW_UPDATE, PING, GOAWAY, PRIORITY, CONTINUATION, RAW_FRAME, RAW_BYTES,
 WU_STORM, UP_SCRIPT, FLUSH, REQUEST, DATA_SIZED) = range(16)
END_STREAM, ACK, PADDED, PRIO, CONTINUED, VERBATIM = 0x01, 0x01, 0x08, 0x20, 0x80, 0x80

METHODS = ["GET", "POST", "HEAD", "CONNECT", "PUT", "DELETE", "OPTIONS", "PATCH"]
PATHS = ["/u/ok", "/exact", "/re/abc/12", "/x?debug=1", "/h/x", "/H/x", "/old/page?q=1", "/secure", "/abort",
         "/flaky", "/api/v1/x?id=7", "/nc", "/dns", "/uh", "/u", "/live/x", "/retry/1", "/", "*", "/u/%2e%2e/x",
         "/u/\xc3\xa9", "/u/a#frag", "/u?x=1&x=2", "//u"]
AUTHS = ["live.example.com", "example.com", "admin.example.com", "example.com:8080", "127.0.0.1:80", "[::1]",
         "a.live.example.com", "live.example.com:8080", "user@live.example.com", ""]
FIELDS = [":method", ":path", ":authority", ":scheme", ":protocol", ":status", "content-length", "te", "cookie",
          "x-user", "x-tier", "x-debug", "content-type", "grpc-timeout", "user-agent", "x-request-id",
          "x-forwarded-for", "host", "connection", "transfer-encoding", "upgrade", "expect", "x-forwarded-proto",
          "x-envoy-attempt-count", "accept", "grpc-encoding", "x-drop-me", "keep-alive", "proxy-connection",
          "Upper", "x-empty", "x-ws"]
# RST_STREAM / GOAWAY codes
CANCEL, PROTOCOL_ERROR = 8, 1


def sel(stream_id):
    """stream selector byte of an odd stream id (1..253), or 0 for the connection"""
    assert stream_id == 0 or (stream_id % 2 == 1 and stream_id <= 253)
    return (stream_id + 1) // 2


def header(flags=MODE_SETTINGS, plans=(OK | KEEP,) * 4):
    plans = list(plans) * 4
    return bytes([flags]) + bytes(plans[:4])


def rec(rtype, flags=0, stream=1, payload=b"", raw_sel=None):
    n = len(payload)
    length = bytes([255, n >> 8, n & 255]) if n >= 255 else bytes([n])
    s = raw_sel if raw_sel is not None else sel(stream)
    return bytes([rtype, flags, s]) + length + payload


def field(name, value, rep=0):
    """header program: a dictionary field with a literal value (rep 0 no indexing, 1 incremental, 2 never)"""
    v = value.encode() if isinstance(value, str) else value
    assert len(v) < 128
    return bytes([FIELDS.index(name) + 32 * rep, 0x80 | len(v)]) + v


def literal(name, value):
    n = name.encode()
    v = value.encode()
    return bytes([0xF0, len(n)]) + n + bytes([0x80 | len(v)]) + v


def request(method="GET", path="/live/x", auth="live.example.com", prog=b"", end=True, stream=1, flags=0):
    p = bytes([METHODS.index(method), PATHS.index(path), AUTHS.index(auth)]) + prog
    return rec(REQUEST, flags | (END_STREAM if end else 0), stream, p)


def data(body, end=True, stream=1, flags=0):
    return rec(DATA, flags | (END_STREAM if end else 0), stream, body)


def data_sized(n, end=True, stream=1):
    return rec(DATA_SIZED, END_STREAM if end else 0, stream, bytes([n >> 8, n & 255]))


def flush(wait=False, drain=False, shutdown=False, reset_upstreams=False):
    return rec(FLUSH, (1 if wait else 0) | (2 if drain else 0) | (4 if shutdown else 0) | (8 if reset_upstreams else 0), 0)


def window_update(stream, inc):
    return rec(WINDOW_UPDATE, 0, stream, inc.to_bytes(4, "big"))


def settings(*entries, ack=False):
    p = b"".join(bytes([i]) + v.to_bytes(4, "big") for i, v in entries)
    return rec(SETTINGS, ACK if ack else 0, 0, p)


def hpack_literal(name, value):
    """raw HPACK: literal without indexing, new name (lengths < 127)"""
    n, v = name.encode(), value.encode()
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def frame(ftype, flags, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


SEEDS = {
    # the basics
    "get-live": header() + request(),
    "get-direct-response": header() + request(path="/exact", auth="example.com"),
    "get-not-found-redirect-abort": header() + request(path="/old/page?q=1", auth="example.com")
    + request(path="/abort", auth="example.com", stream=3) + request(path="/nc", auth="example.com", stream=5)
    + request(path="/secure", auth="admin.example.com", stream=7) + request(path="/uh", auth="example.com", stream=9),
    "head-live": header(plans=(OK | KEEP, NOT_MODIFIED)) + request("HEAD"),
    "post-content-length": header(plans=(OK | KEEP,))
    + request("POST", prog=field("content-length", "11"), end=False) + data(b"hello world"),
    "post-chunked-upstream": header(plans=(CHUNKED | KEEP,))
    + request("POST", end=False) + data(b"part one,", end=False) + flush() + data(b" part two"),
    "post-padded-data": header() + request("POST", prog=field("content-length", "5"), end=False)
    + data(b"hello", flags=PADDED | 0x30),
    "post-body-early-answer": header(plans=(OK | EARLY,))
    + request("POST", end=False) + data_sized(16384, end=False) + flush() + data_sized(1000),
    "post-window-full": header(plans=(OK | KEEP,))
    + request("POST", end=False) + data_sized(16384, end=False) + data_sized(16384, end=False)
    + data_sized(16384, end=False) + data_sized(16383, end=False) + flush() + data_sized(100),
    "post-stalled-upstream": header(MODE_SETTINGS_WINDOW, plans=(OK | STALL,))
    + request("POST", end=False)
    + b"".join(data_sized(16000, end=False) * 4 + flush() for _ in range(8)) + data(b"end"),
    "post-content-length-mismatch": header() + request("POST", prog=field("content-length", "5"), end=False)
    + data(b"too long for five"),
    # many streams at once, every kind of answer
    "concurrent-streams": header(plans=(OK | KEEP, CHUNKED | KEEP, NO_CONTENT | KEEP, BIG | KEEP))
    + b"".join(request(path=p, stream=s) for s, p in [(1, "/live/x"), (3, "/u/ok"), (5, "/api/v1/x?id=7"),
                                                      (7, "/retry/1"), (9, "/exact"), (11, "/live/x")])
    + flush() + window_update(0, 1 << 20) + b"".join(window_update(s, 1 << 20) for s in (1, 3, 5, 7, 9, 11)),
    "sequential-keepalive-reuse": header(plans=(OK | KEEP,))
    + request() + flush() + request(stream=3) + flush() + request(stream=5),
    "rst-stream-mid-response": header(plans=(BIG | KEEP,)) + request() + flush()
    + rec(RST_STREAM, 0, 1, bytes([CANCEL])) + flush() + request(stream=3),
    "rst-stream-before-answer": header(plans=(SILENT,)) + request() + flush() + rec(RST_STREAM, 0, 1, bytes([CANCEL])),
    "window-update-storm": header(plans=(BIG | KEEP,)) + request() + flush()
    + rec(WU_STORM, 1, 1, bytes([200, 0x01, 0x00])) + flush() + window_update(1, 100000) + window_update(0, 100000),
    "huge-chunked-backpressure": header(MODE_SETTINGS_WINDOW, plans=(HUGE_CHUNKED | KEEP,)) + request() + flush()
    + flush() + window_update(1, 1 << 20) + flush() + window_update(1, 1 << 20) + flush(),
    "big-response-larger-frames": header(plans=(BIG,)) + settings((5, 65536), (4, 1 << 20)) + request() + flush()
    + window_update(0, 1 << 20),
    "upstream-garbage": header(plans=(GARBAGE,)) + request(),
    "upstream-close-retry": header(plans=(UP_CLOSE, OK | KEEP)) + request(path="/retry/1"),
    "upstream-unavailable-retry": header(plans=(UNAVAILABLE | KEEP, OK)) + request(path="/retry/1"),
    "upstream-until-close": header(plans=(UNTIL_CLOSE,)) + request(),
    "upstream-continue": header(plans=(CONTINUE | KEEP,))
    + request("POST", prog=field("expect", "100-continue") + field("content-length", "3"), end=False) + flush()
    + data(b"abc"),
    "upstream-cut-body": header(plans=(CUT,)) + request(),
    "upstream-hop-headers": header(plans=(HOP_HEADERS | KEEP,)) + request(),
    "upstream-split-response": header(plans=(CHUNKED | KEEP | SPLIT, OK | SPLIT | EARLY)) + request() + flush()
    + request(stream=3),
    "upstream-script": header(plans=(SCRIPT,))
    + rec(UP_SCRIPT, 0, 0, b"HTTP/1.1 200 OK\r\nX-Weird:  spaced  \r\nSet-Cookie: a\r\nContent-Length: 3\r\n\r\nabc")
    + request(),
    "upstream-silent-client-goes": header(CLOSE, plans=(SILENT,)) + request(),
    # open bugs (proxy_h2_fuzz.c g_bugs; tests/fuzz/README.md): the fuzzer lets them pass unless PROXY_H2_FUZZ_STRICT=1
    "regress-upstream-101": header(plans=(SWITCHING,)) + request(),
    "regress-h2-authority": header(plans=(OK | KEEP,)) + request(path="/u", auth="user@live.example.com")
    + rec(HEADERS, END_STREAM, 3, field(":method", "GET") + field(":scheme", "http") + field(":path", "/live/x")
          + field(":authority", "live.example.com:99999"))
    + rec(HEADERS, END_STREAM, 5, field(":method", "GET") + field(":scheme", "http") + field(":path", "/live/x")
          + field(":authority", "live.example.com:8080:1")),
    # upstream A answers keep-alive and resets at once; a retry (B was closed unanswered) reuses A from the pool, the
    # write fails, and the upconn is never detached: a leak (LeakSanitizer), and a use-after-free once the upstream
    # closes the leaked connection after the stream is gone (append flush(reset_upstreams=True) to see it)
    "regress-leak-upconn-reuse-flush-failure": header(plans=(SCRIPT, UP_CLOSE, OK, OK))
    + rec(UP_SCRIPT, 0, 0, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    + request(stream=1) + request("GET", "/retry/1", stream=3),
    # refused by the proxy itself (400 invalid_request_head, after an upstream connection was opened for nothing)
    "path-bytes-the-upstream-writer-refuses": header(plans=(OK | KEEP,)) + request(path="/u/\xc3\xa9")
    + request(path="/u/a#frag", stream=3) + request(path="*", stream=5),
    # gRPC-shaped traffic
    "grpc-unary": header(plans=(CHUNKED | KEEP,))
    + request("POST", prog=field("content-type", "application/grpc") + field("te", "trailers")
              + field("grpc-timeout", "1S"), end=False)
    + data(b"\x00\x00\x00\x00\x05hello", end=False) + rec(HEADERS, END_STREAM, 1, literal("grpc-status", "0")),
    # routing headers, cookies, header operations
    "header-match-cookies": header()
    + request(path="/h/x", auth="example.com", prog=field("x-user", "jason") + field("x-tier", "gold")
              + field("cookie", "a=1") + field("cookie", "b=2") + field("x-drop-me", "1", rep=1)),
    "api-weighted-retries": header(plans=(OK | KEEP,)) + b"".join(
        request(path="/api/v1/x?id=7", auth="example.com", stream=s) for s in (1, 3, 5, 7)),
    "fault-delay-wait": header(WAIT) + request(path="/flaky", auth="example.com")
    + request(path="/flaky", auth="example.com", stream=3) + flush(wait=True),
    # HPACK and framing
    "headers-continuation": header()
    + rec(HEADERS, CONTINUED | END_STREAM, 1, bytes([0xF6])) + rec(CONTINUATION, 0, 1, field("accept", "*/*")),
    "headers-priority-padded": header() + rec(HEADERS, END_STREAM | PADDED | PRIO, 1, bytes([0xF6])),
    "hpack-indexed-dynamic": header()
    + rec(HEADERS, END_STREAM, 1, bytes([0xF6]) + field("x-user", "jason", rep=1))
    + rec(HEADERS, END_STREAM, 3, bytes([0xF2, 2, 0xF2, 6]) + field(":path", "/live/x")
          + field(":authority", "live.example.com") + bytes([0xF2, 62])),
    "settings-ping-priority-goaway": header()
    + settings((1, 0), (2, 0), (3, 10), (4, 0), (5, 16384), (6, 1000), (8, 1)) + rec(PING, 0, 0, b"12345678")
    + rec(PRIORITY, 0, 3, bytes([1, 0x80, 200])) + request() + flush() + rec(GOAWAY, 0, 0, bytes([1, 0]) + b"bye"),
    "draining-goaway": header(DRAINING) + request() + request(stream=3),
    "drain-mid-stream": header(plans=(BIG | KEEP, OK | KEEP)) + request() + request(stream=3, end=False) + flush()
    + flush(drain=True) + data(b"x", stream=3) + window_update(1, 1 << 20) + window_update(0, 1 << 20) + flush(),
    "shutdown-mid-stream": header(plans=(SILENT, BIG)) + request() + request(stream=3) + flush()
    + flush(shutdown=True),
    "access-log-json": header(LOG_JSON) + request() + request(path="/exact", auth="example.com", stream=3),
    "access-log-custom": header(LOG_CUSTOM | SPLIT_PREFACE) + request("POST", end=False) + data(b"x"),
    # protocol errors
    "error-even-stream": header() + rec(HEADERS, END_STREAM, 0, bytes([0xF6]), raw_sel=0x81),
    "error-uppercase-connection-field": header() + request(prog=field("Upper", "x"))
    + request(prog=field("connection", "close"), stream=3),
    "error-no-authority-connect": header() + request(auth="example.com", prog=b"", stream=1)
    + rec(HEADERS, END_STREAM, 3, field(":method", "GET") + field(":scheme", "http") + field(":path", "/u/ok"))
    + request("CONNECT", stream=5),
    "error-no-settings-first": header(MODE_FRAMES) + request(),
    "raw-frames": header(MODE_RAW)
    + frame(4, 0, 0, b"")
    + frame(1, 0x05, 1, hpack_literal(":method", "GET") + hpack_literal(":scheme", "http")
            + hpack_literal(":path", "/live/x") + hpack_literal(":authority", "live.example.com")),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "proxy_h2")
    os.makedirs(out, exist_ok=True)
    for name, blob in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(blob)
    print("wrote %d seeds to %s" % (len(SEEDS), out))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""grpc_peer.py - a gRPC server or client for grpc_test.py, on Debian's python3-grpcio.

Runs under /usr/bin/python3 (where the Debian package installs grpc), so the
test itself may run under any Python. No generated code: the service uses
grpc's generic handlers with raw bytes as messages.

  grpc_peer.py server PORT           serves /keel.Echo/{Unary,Fail,Stream,Big,Upload} on 127.0.0.1:PORT
                                     until stdin closes; prints "ready" once listening
  grpc_peer.py client TARGET         runs the calls through TARGET (host:port) and prints one JSON line of
                                     outcomes
"""
import json
import sys
from concurrent import futures

import grpc

SERVICE = "keel.Echo"


def ident(b):
    return b


def server(port):
    def unary(req, ctx):
        md = dict(ctx.invocation_metadata())
        ctx.set_trailing_metadata((("x-trailer", "t1"),))
        return b"echo:" + req + b"|" + md.get("x-tag", "").encode()

    def fail(req, ctx):
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + req.decode(errors="replace"))

    def stream(req, ctx):
        for i in range(int(req.decode())):
            yield b"msg-%d" % i

    def big(req, ctx):
        return bytes(range(256)) * (int(req.decode()) // 256)

    def upload(reqs, ctx):
        total, n = 0, 0
        for r in reqs:
            total += len(r)
            n += 1
        return b"%d messages, %d bytes" % (n, total)

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, ident, ident),
        "Fail": grpc.unary_unary_rpc_method_handler(fail, ident, ident),
        "Stream": grpc.unary_stream_rpc_method_handler(stream, ident, ident),
        "Big": grpc.unary_unary_rpc_method_handler(big, ident, ident),
        "Upload": grpc.stream_unary_rpc_method_handler(upload, ident, ident),
    }
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                      handlers=[grpc.method_handlers_generic_handler(SERVICE, handlers)],
                      options=[("grpc.max_send_message_length", 8 << 20)])
    srv.add_insecure_port("127.0.0.1:%d" % port)
    srv.start()
    print("ready", flush=True)
    sys.stdin.read()
    srv.stop(0)


def client(target):
    out = {}
    opts = [("grpc.max_receive_message_length", 8 << 20), ("grpc.enable_retries", 0)]
    with grpc.insecure_channel(target, options=opts) as ch:
        def call(kind, method):
            return getattr(ch, kind)("/%s/%s" % (SERVICE, method), request_serializer=ident,
                                     response_deserializer=ident)
        try:
            resp, c = call("unary_unary", "Unary").with_call(b"hello", metadata=(("x-tag", "blue"),), timeout=10)
            out["unary"] = resp.decode()
            out["unary_code"] = c.code().name
            out["unary_trailer"] = dict(c.trailing_metadata()).get("x-trailer")
        except grpc.RpcError as e:
            out["unary"] = "error %s %s" % (e.code().name, e.details())
        try:
            call("unary_unary", "Fail")(b"x42", timeout=10)
            out["fail"] = "no error"
        except grpc.RpcError as e:
            out["fail"] = "%s %s" % (e.code().name, e.details())
        try:
            msgs = list(call("unary_stream", "Stream")(b"100", timeout=10))
            out["stream"] = [len(msgs), msgs[0].decode() if msgs else "", msgs[-1].decode() if msgs else ""]
        except grpc.RpcError as e:
            out["stream"] = "error %s %s" % (e.code().name, e.details())
        try:
            data = call("unary_unary", "Big")(b"%d" % (1 << 20), timeout=20)
            out["big"] = [len(data), data == bytes(range(256)) * 4096]
        except grpc.RpcError as e:
            out["big"] = "error %s %s" % (e.code().name, e.details())
        try:
            r = call("stream_unary", "Upload")(iter([b"x" * 10000] * 50), timeout=20)
            out["upload"] = r.decode()
        except grpc.RpcError as e:
            out["upload"] = "error %s %s" % (e.code().name, e.details())
        try:
            call("unary_unary", "Nope")(b"", timeout=10)
            out["unimplemented"] = "no error"
        except grpc.RpcError as e:
            out["unimplemented"] = e.code().name
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2])

#!/usr/bin/env python3
"""gen_configs.py - write every config bench/proxy_bench.sh runs, into one folder.

    gen_configs.py --dir DIR --ports k=v,... [--services N]

Ports (all on 127.0.0.1): up, up_h2 (the upstream nginx, HTTP/1.1 and h2c),
hap, hap_h2, ngx, ngx_h2, keel, keel_admin (the proxies), and hap_1k, ngx_1k,
keel_1k, keel_1k_admin (the same proxies with N services).

Writes:
  upstream.conf        nginx, 1 worker: `return 200` with a 100-byte body
  haproxy.cfg          nbthread 1, HTTP/1.1 + h2c listeners, http-reuse always
  nginx-proxy.conf     worker_processes 1, HTTP/1.1 + h2c listeners, upstream keepalive
  keel/mesh.yaml       Gateway + VirtualService + ServiceEntry (the proxy_test.py shape)
  haproxy-1k.cfg, hosts-1k.map, nginx-proxy-1k.conf, keel-1k/mesh.yaml
                       N services, each its own host name (svc-I.bench.local) routed to
                       its own backend / upstream / ServiceEntry (all on the same upstream)

Every proxy keeps HTTP/1.1 keep-alive connections to the upstream and logs no
requests, so all of them do the same job: parse, route, forward, relay.
"""
import argparse
import os

BODY = "x" * 99 + "\n"  # 100-byte response body


def nginx_common(d, name):
    """Header of an nginx config that runs from DIR as any user, in the foreground."""
    user = "user root root;\n" if os.geteuid() == 0 else ""
    tmp = os.path.join(d, "tmp-" + name)
    return f"""{user}worker_processes 1;
daemon off;
pid {d}/{name}.pid;
error_log {d}/{name}.error.log warn;
events {{ worker_connections 8192; multi_accept off; }}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
"""


def upstream_conf(d, p):
    return nginx_common(d, "upstream") + f"""    server {{
        listen 127.0.0.1:{p['up']} backlog=4096;
        listen 127.0.0.1:{p['up_h2']} http2 backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "{BODY[:-1]}\\n";
        }}
    }}
}}
"""


PROXY_LOCATION = """proxy_http_version 1.1;
            proxy_set_header Connection "";"""


def nginx_proxy_conf(d, p):
    return nginx_common(d, "nginx-proxy") + f"""    upstream up {{
        server 127.0.0.1:{p['up']};
        keepalive 256;
        keepalive_requests 10000000;
        keepalive_timeout 120s;
    }}
    server {{
        listen 127.0.0.1:{p['ngx']} backlog=4096;
        listen 127.0.0.1:{p['ngx_h2']} http2 backlog=4096;
        location / {{
            proxy_pass http://up;
            {PROXY_LOCATION}
        }}
    }}
}}
"""


def nginx_proxy_1k_conf(d, p, n):
    out = [nginx_common(d, "nginx-proxy-1k"),
           "    server_names_hash_max_size 16384;\n    server_names_hash_bucket_size 128;\n"]
    for i in range(n):
        opts = " backlog=4096" if i == 0 else ""  # listen options go on one server only
        out.append(f"""    upstream svc{i} {{
        server 127.0.0.1:{p['up']};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{p['ngx_1k']}{opts};
        server_name svc-{i}.bench.local;
        location / {{
            proxy_pass http://svc{i};
            proxy_read_timeout 10s;
            {PROXY_LOCATION}
        }}
    }}
""")
    out.append("}\n")
    return "".join(out)


HAPROXY_HEAD = """global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s
"""


def haproxy_cfg(p):
    return HAPROXY_HEAD + f"""frontend fe
    bind 127.0.0.1:{p['hap']} backlog 4096
    bind 127.0.0.1:{p['hap_h2']} proto h2 backlog 4096
    default_backend up
backend up
    http-reuse always
    server up 127.0.0.1:{p['up']}
"""


def haproxy_1k_cfg(d, p, n):
    out = [HAPROXY_HEAD, f"""frontend fe
    bind 127.0.0.1:{p['hap_1k']} backlog 4096
    use_backend %[req.hdr(host),lower,map_str({d}/hosts-1k.map)]
"""]
    for i in range(n):
        out.append(f"""backend svc{i}
    http-reuse always
    timeout server 10s
    server up 127.0.0.1:{p['up']}
""")
    return "".join(out)


def keel_head(gw_port):
    return f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bench, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw_port}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: ["*"]
"""


def keel_conf(p):
    return keel_head(p["keel"]) + f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bench, namespace: istio-system}}
spec:
  hosts: ["*"]
  gateways: [bench]
  http:
  - route: [{{destination: {{host: upstream.bench.local}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: upstream, namespace: istio-system}}
spec:
  hosts: [upstream.bench.local]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {p['up']}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"""


def keel_1k_conf(p, n):
    out = [keel_head(p["keel_1k"])]
    for i in range(n):
        out.append(f"""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc-{i}, namespace: istio-system}}
spec:
  hosts: [svc-{i}.bench.local]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {p['up']}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-{i}, namespace: istio-system}}
spec:
  hosts: [svc-{i}.bench.local]
  gateways: [bench]
  http:
  - name: default
    timeout: 10s
    route: [{{destination: {{host: svc-{i}.bench.local, port: {{number: 80}}}}}}]
""")
    return "".join(out)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--ports", required=True, help="k=v,... (see the module doc)")
    ap.add_argument("--services", type=int, default=1000)
    a = ap.parse_args()
    d = os.path.abspath(a.dir)
    p = dict(kv.split("=", 1) for kv in a.ports.split(","))
    n = a.services
    for name in ("upstream", "nginx-proxy", "nginx-proxy-1k"):
        os.makedirs(os.path.join(d, "tmp-" + name), exist_ok=True)
    write(os.path.join(d, "upstream.conf"), upstream_conf(d, p))
    write(os.path.join(d, "haproxy.cfg"), haproxy_cfg(p))
    write(os.path.join(d, "nginx-proxy.conf"), nginx_proxy_conf(d, p))
    write(os.path.join(d, "keel", "mesh.yaml"), keel_conf(p))
    write(os.path.join(d, "haproxy-1k.cfg"), haproxy_1k_cfg(d, p, n))
    write(os.path.join(d, "hosts-1k.map"), "".join("svc-%d.bench.local svc%d\n" % (i, i) for i in range(n)))
    write(os.path.join(d, "nginx-proxy-1k.conf"), nginx_proxy_1k_conf(d, p, n))
    write(os.path.join(d, "keel-1k", "mesh.yaml"), keel_1k_conf(p, n))


if __name__ == "__main__":
    main()

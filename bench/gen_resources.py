#!/usr/bin/env python3
"""gen_resources.py - write a YAML stream of realistic Istio resources for benchmarks.

    gen_resources.py [-n COUNT] [--seed N] [-o FILE]

The mix follows what a mid-sized mesh holds: 30% VirtualService, 25%
DestinationRule, 15% ServiceEntry, 10% Gateway, 20% AuthorizationPolicy,
spread over 50 namespaces, with the sizes seen in practice (a VirtualService
has 1-4 HTTP routes with matches, weights, retries and timeouts; a
DestinationRule has a traffic policy and 1-3 subsets; ...). Every resource is
meant to be valid, so the benchmark measures the full decode + validate path
rather than early exits. The output is deterministic for a given seed.
"""
import argparse
import random
import sys

NAMESPACES = ["ns-%02d" % i for i in range(50)]
APPS = ["reviews", "ratings", "details", "productpage", "cart", "checkout", "payments", "search", "catalog",
        "inventory", "shipping", "users", "auth", "orders", "recommendations", "ads", "email", "currency",
        "frontend", "gateway-api"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


def svc(r, ns):
    app = r.choice(APPS)
    return app, "%s.%s.svc.cluster.local" % (app, ns)


def virtual_service(r, i, ns):
    app, host = svc(r, ns)
    lines = [
        "apiVersion: networking.istio.io/v1",
        "kind: VirtualService",
        "metadata:",
        "  name: %s-vs-%d" % (app, i),
        "  namespace: %s" % ns,
        "  labels:",
        "    app: %s" % app,
        "    team: team-%d" % r.randrange(12),
        "spec:",
        "  hosts:",
        "  - %s" % host,
    ]
    if r.random() < 0.3:
        lines += ["  gateways:", "  - istio-system/public-gateway", "  - mesh"]
    lines.append("  http:")
    for k in range(r.randint(1, 4)):
        lines.append("  - name: route-%d" % k)
        if k < 3:
            lines += [
                "    match:",
                "    - uri:",
                "        prefix: /api/v%d/%s/r%d" % (r.randint(1, 3), app, k),
                "      method:",
                "        exact: %s" % r.choice(METHODS),
            ]
            if r.random() < 0.4:
                lines += ["      headers:", "        x-canary:", "          exact: \"true\""]
        w = r.randint(10, 90)
        lines += [
            "    route:",
            "    - destination:",
            "        host: %s" % host,
            "        subset: v1",
            "        port:",
            "          number: 8080",
            "      weight: %d" % w,
            "    - destination:",
            "        host: %s" % host,
            "        subset: v2",
            "        port:",
            "          number: 8080",
            "      weight: %d" % (100 - w),
            "    timeout: %ds" % r.choice([5, 10, 15, 30]),
            "    retries:",
            "      attempts: %d" % r.randint(1, 5),
            "      perTryTimeout: %dms" % r.choice([500, 1000, 2000]),
            "      retryOn: gateway-error,connect-failure,refused-stream",
        ]
        if r.random() < 0.2:
            lines += ["    headers:", "      request:", "        set:", "          x-route: route-%d" % k]
        if r.random() < 0.1:
            lines += ["    fault:", "      delay:", "        percentage:", "          value: 0.5",
                      "        fixedDelay: 2s"]
    return lines


def destination_rule(r, i, ns):
    app, host = svc(r, ns)
    lines = [
        "apiVersion: networking.istio.io/v1",
        "kind: DestinationRule",
        "metadata:",
        "  name: %s-dr-%d" % (app, i),
        "  namespace: %s" % ns,
        "spec:",
        "  host: %s" % host,
        "  trafficPolicy:",
        "    loadBalancer:",
        "      simple: %s" % r.choice(["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"]),
        "    connectionPool:",
        "      tcp:",
        "        maxConnections: %d" % r.choice([100, 500, 1000]),
        "        connectTimeout: 30ms",
        "      http:",
        "        http1MaxPendingRequests: %d" % r.choice([64, 128, 1024]),
        "        maxRequestsPerConnection: 10",
        "    outlierDetection:",
        "      consecutive5xxErrors: %d" % r.randint(3, 10),
        "      interval: 30s",
        "      baseEjectionTime: 1m",
        "      maxEjectionPercent: 50",
        "    tls:",
        "      mode: ISTIO_MUTUAL",
        "  subsets:",
    ]
    for v in range(1, r.randint(1, 3) + 1):
        lines += ["  - name: v%d" % v, "    labels:", "      version: v%d" % v]
        if r.random() < 0.3:
            lines += ["    trafficPolicy:", "      loadBalancer:", "        simple: ROUND_ROBIN"]
    return lines


def service_entry(r, i, ns):
    host = "api-%d.partner-%d.example.com" % (i, r.randrange(100))
    lines = [
        "apiVersion: networking.istio.io/v1",
        "kind: ServiceEntry",
        "metadata:",
        "  name: external-%d" % i,
        "  namespace: %s" % ns,
        "spec:",
        "  hosts:",
        "  - %s" % host,
        "  location: MESH_EXTERNAL",
        "  ports:",
        "  - number: 443",
        "    name: https",
        "    protocol: TLS",
        "  - number: 80",
        "    name: http",
        "    protocol: HTTP",
    ]
    if r.random() < 0.4:
        lines += ["  resolution: STATIC", "  endpoints:"]
        for e in range(r.randint(1, 3)):
            lines += ["  - address: 10.%d.%d.%d" % (r.randrange(256), r.randrange(256), r.randint(1, 254)),
                      "    labels:", "      zone: zone-%d" % e]
    else:
        lines.append("  resolution: DNS")
    return lines


def gateway(r, i, ns):
    lines = [
        "apiVersion: networking.istio.io/v1",
        "kind: Gateway",
        "metadata:",
        "  name: gw-%d" % i,
        "  namespace: %s" % ns,
        "spec:",
        "  selector:",
        "    istio: ingressgateway",
        "  servers:",
        "  - port:",
        "      number: 80",
        "      name: http",
        "      protocol: HTTP",
        "    hosts:",
        "    - \"*.site-%d.example.com\"" % i,
        "    tls:",
        "      httpsRedirect: true",
        "  - port:",
        "      number: 443",
        "      name: https",
        "      protocol: HTTPS",
        "    hosts:",
        "    - \"*.site-%d.example.com\"" % i,
        "    tls:",
        "      mode: SIMPLE",
        "      credentialName: site-%d-cert" % i,
        "      minProtocolVersion: TLSV1_2",
    ]
    return lines


def authorization_policy(r, i, ns):
    app = r.choice(APPS)
    action = r.choice(["ALLOW", "ALLOW", "ALLOW", "DENY"])
    lines = [
        "apiVersion: security.istio.io/v1",
        "kind: AuthorizationPolicy",
        "metadata:",
        "  name: %s-authz-%d" % (app, i),
        "  namespace: %s" % ns,
        "spec:",
        "  selector:",
        "    matchLabels:",
        "      app: %s" % app,
        "  action: %s" % action,
        "  rules:",
    ]
    for k in range(r.randint(1, 3)):
        src = r.choice(NAMESPACES)
        lines += [
            "  - from:",
            "    - source:",
            "        principals:",
            "        - cluster.local/ns/%s/sa/%s" % (src, r.choice(APPS)),
            "        namespaces:",
            "        - %s" % src,
            "    to:",
            "    - operation:",
            "        methods:",
            "        - %s" % r.choice(METHODS),
            "        - GET",
            "        paths:",
            "        - /api/v%d/*" % (k + 1),
        ]
        if action == "DENY":
            lines += ["        ports:", "        - \"8080\""]
        if r.random() < 0.3:
            lines += ["    when:", "    - key: request.headers[x-tenant]", "      values:",
                      "      - tenant-%d" % r.randrange(20)]
    return lines


MIX = [(virtual_service, 30), (destination_rule, 25), (service_entry, 15), (gateway, 10),
       (authorization_policy, 20)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--count", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--output", default="-")
    args = ap.parse_args()
    r = random.Random(args.seed)
    makers = [m for m, w in MIX for _ in range(w)]
    out = sys.stdout if args.output == "-" else open(args.output, "w")
    counts = {}
    for i in range(args.count):
        maker = makers[i % len(makers)]
        ns = NAMESPACES[i % len(NAMESPACES)]
        if i:
            out.write("---\n")
        out.write("\n".join(maker(r, i, ns)))
        out.write("\n")
        counts[maker.__name__] = counts.get(maker.__name__, 0) + 1
    if out is not sys.stdout:
        out.close()
    print("gen_resources: %d resources: %s" % (args.count, ", ".join("%s %d" % kv for kv in sorted(counts.items()))),
          file=sys.stderr)


if __name__ == "__main__":
    main()

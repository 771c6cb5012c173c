#!/usr/bin/env python3
"""serve_load.py -- an open-loop (Poisson) HTTP load generator for `mha serve`.

Requests arrive at exponential gaps of mean 1/RATE for DURATION seconds,
whatever the server does (open loop): a request's latency runs from its
scheduled arrival to the end of its answer, so time spent waiting for a free
connection counts. CONNECTIONS keep-alive connections (one thread each, the
Python standard library's http.client) carry them. Every request has an id;
the report checks each was answered exactly once.

  serve_load.py --url http://127.0.0.1:8080/run --body x.npy --rate 2000 \
                --duration 10 [--connections 64] [--seed 1] [--json out.json]

Prints one line: offered and achieved rate, answers by status code, and the
latency p50 / p99 / p99.9 of the 200 answers (ms). Exit 1 if a request went
unanswered or was answered twice, or no request got a 200.
Loopback only by design: the URL must name 127.0.0.1, ::1 or localhost.
"""
import argparse
import http.client
import json
import math
import random
import sys
import threading
import time
import urllib.parse


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list (q in [0, 100])."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--body", required=True, help=".npy file sent as each request's body")
    ap.add_argument("--rate", type=float, required=True, help="arrivals per second")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    ap.add_argument("--json", help="write the summary there too")
    a = ap.parse_args()

    url = urllib.parse.urlsplit(a.url)
    if url.hostname not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("serve_load.py: loopback only (127.0.0.1, ::1, localhost), not %s" % url.hostname)
    body = open(a.body, "rb").read()
    rng = random.Random(a.seed)
    arrivals = []
    t = 0.0
    while True:
        t += rng.expovariate(a.rate)
        if t >= a.duration:
            break
        arrivals.append(t)
    n = len(arrivals)
    answers = [0] * n  # times each id was answered
    latency = [None] * n
    codes = {}
    lock = threading.Lock()
    next_id = [0]
    start = time.monotonic() + 0.05

    def worker():
        conn = None
        while True:
            with lock:
                i = next_id[0]
                next_id[0] += 1
            if i >= n:
                break
            due = start + arrivals[i]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            code = 0
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(url.hostname, url.port or 80,
                                                      timeout=a.timeout)
                conn.request("POST", url.path or "/run", body=body,
                             headers={"Content-Type": "application/x-npy",
                                      "X-Request-Id": str(i)})
                resp = conn.getresponse()
                resp.read()
                code = resp.status
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            done = time.monotonic()
            with lock:
                answers[i] += 1 if code else 0
                codes[code] = codes.get(code, 0) + 1
                if code == 200:
                    latency[i] = (done - due) * 1e3
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(max(1, a.connections))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    end = time.monotonic()
    ok = sorted(x for x in latency if x is not None)
    missing = sum(1 for c in answers if c == 0)
    twice = sum(1 for c in answers if c > 1)
    summary = {
        "offered_rps": a.rate,
        "requests": n,
        "achieved_rps": len(ok) / max(end - start, 1e-9),
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "unanswered": missing,
        "answered_twice": twice,
        "p50_ms": percentile(ok, 50),
        "p99_ms": percentile(ok, 99),
        "p99.9_ms": percentile(ok, 99.9),
    }
    print("offered %.0f/s, %d requests: %.0f answered 200/s; codes %s; unanswered %d, twice %d; "
          "latency p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms"
          % (a.rate, n, summary["achieved_rps"], summary["codes"], missing, twice,
             summary["p50_ms"], summary["p99_ms"], summary["p99.9_ms"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 1 if missing or twice or not ok else 0


if __name__ == "__main__":
    sys.exit(main())

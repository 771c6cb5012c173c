#!/usr/bin/env python3
"""queue_bound.py -- what rate a request queue can sustain at a p99 bound.

A simulation of Poisson arrivals served by SERVERS batch servers (a server
free takes every request waiting, up to --cap, as one batch; a batch of B
requests takes A + C * B ms). It prints the highest rate (requests/s, to
--step, by bisection) whose p99 latency (arrival to the end of its batch) stays
within --p99-ms, and that rate as a share of --peak-rps (the rate the FMA
peak allows, if given). docs/SERVING.md quotes it for MiniLM S 16:

  tools/queue_bound.py --servers 1 --c 1.4953 --peak-rps 669   # at the peak, both cores
  tools/queue_bound.py --servers 2 --a 0.8 --c 3.7 --peak-rps 669  # today's costs, a core each

--costs gives a batch's time by its size instead, as measured (serve-cpu's
one-run rows: ms a request times the batch), the last one growing by its
per-request cost beyond:

  tools/queue_bound.py --servers 2 --costs 2.75,4.9,7.2,9.2 --peak-rps 1220

It also prints the fluid bound: SERVERS times the requests a ms of the
cheapest batch that fits the bound (b / its time, over the b whose time is
at most --p99-ms), the rate no queue of any policy can pass at those costs
(every core busy all the time, no request ever waiting). `serve-cpu
--ceiling` measures the costs (tools/serve_ceiling.sh runs both).

--need PCT (with --peak-rps) asks the other way round: what a request would
have to cost for the best of the --cap batch caps to sustain PCT % of the
peak's rate at the bound; every batch's time is scaled by one factor (the
shape of the costs kept), found by bisection, and the cheapest batch's cost
a request at that factor is printed (the fluid bound's need beside it):

  tools/queue_bound.py --servers 2 --c 0.78 --peak-rps 2881 --cap 1 2 4 --need 90
"""
import argparse
import random


def batch_ms(a, c, costs, b):
    """A batch of b requests: A + C b, or the measured costs[b - 1] (beyond
    the list: its last entry's cost a request, times b)."""
    if not costs:
        return a + c * b
    if b <= len(costs):
        return costs[b - 1]
    return costs[-1] / len(costs) * b


def scaled(a, c, costs, f):
    """Every batch's time times f."""
    return a * f, c * f, [v * f for v in costs] if costs else None


def p99(lam_per_ms, a, c, cap, servers, n, seed, costs=None):
    rnd = random.Random(seed)
    t, arrivals = 0.0, []
    for _ in range(n):
        t += rnd.expovariate(lam_per_ms)
        arrivals.append(t)
    free = [0.0] * servers
    lat, i = [], 0
    while i < n:
        s = min(range(servers), key=lambda k: free[k])
        start = max(free[s], arrivals[i])
        j = i + 1
        while j < n and j - i < cap and arrivals[j] <= start:
            j += 1
        end = start + batch_ms(a, c, costs, j - i)
        lat.extend(end - arrivals[k] for k in range(i, j))
        free[s] = end
        i = j
    lat.sort()
    return lat[int(0.99 * len(lat))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--a", type=float, default=0.0, help="ms a batch costs beyond its requests")
    ap.add_argument("--c", type=float, default=0.0, help="ms a request costs in a batch")
    ap.add_argument("--costs", default="", help="ms of a batch of 1, 2, ... requests (measured), instead of --a / --c")
    ap.add_argument("--cap", type=int, nargs="*", default=[1, 2, 4, 16], help="max batch sizes")
    ap.add_argument("--p99-ms", type=float, default=10.0)
    ap.add_argument("--step", type=int, default=0, help="resolution of the rate (default: 1/200 of the fluid bound, at least 5)")
    ap.add_argument("--requests", type=int, default=40000)
    ap.add_argument("--peak-rps", type=float, default=0.0)
    ap.add_argument("--need", type=float, default=0.0,
                    help="%% of --peak-rps to reach: what a request would need to cost")
    o = ap.parse_args()
    costs = [float(v) for v in o.costs.split(",") if v] if o.costs else None
    if not costs and o.c <= 0:
        ap.error("--c or --costs is required")
    if o.need > 0:
        if o.peak_rps <= 0:
            ap.error("--need wants --peak-rps")
        need(o, costs)
        return
    share = lambda r: " (%.0f %% of %.0f)" % (100.0 * r / o.peak_rps, o.peak_rps) if o.peak_rps else ""
    fits = [(1000.0 * b / batch_ms(o.a, o.c, costs, b), b) for b in range(1, max(o.cap) + 1)
            if batch_ms(o.a, o.c, costs, b) <= o.p99_ms]
    # the cheapest a request; of equal ones the smallest batch
    fluid, fluid_b = max(fits, key=lambda f: (round(f[0], 9), -f[1])) if fits else (0.0, 0)
    fluid *= o.servers
    step = o.step or max(5, int(fluid / 200))
    top = 0
    for cap in o.cap:
        # bisection: the p99 grows with the rate (the same arrival seed)
        meets = lambda r: p99(r / 1000.0, o.a, o.c, cap, o.servers, o.requests, 1, costs) <= o.p99_ms
        best, bad = 0, int(fluid) + step
        while bad - best > step:
            mid = (best + bad) // 2
            if meets(mid):
                best = mid
            else:
                bad = mid
        top = max(top, best)
        print("servers %d, batch <= %d: %d requests/s at p99 <= %g ms%s" % (o.servers, cap, best, o.p99_ms, share(best)))
    print("servers %d, the best batch cap: %d requests/s%s" % (o.servers, top, share(top)))
    print("servers %d, fluid bound (batches of %d, every server busy, no wait): %.0f requests/s%s" % (
        o.servers, fluid_b, fluid, share(fluid)))


def need(o, costs):
    """--need: the largest factor f on every batch's time at which some cap
    sustains o.need % of o.peak_rps at the bound (bisection on f: the p99
    at a fixed rate grows with the costs, the same arrival seed)."""
    rate = o.need / 100.0 * o.peak_rps
    def meets(f):
        a, c, fc = scaled(o.a, o.c, costs, f)
        return any(p99(rate / 1000.0, a, c, cap, o.servers, o.requests, 1, fc) <= o.p99_ms for cap in o.cap)

    cheapest = min(batch_ms(o.a, o.c, costs, b) / b for b in range(1, max(o.cap) + 1))
    lo, hi = 0.0, 2.0
    while meets(hi) and hi < 64:
        lo, hi = hi, hi * 2
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if meets(mid):
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-4 * hi:
            break
    print("servers %d, %.0f %% of %.0f = %.0f requests/s at p99 <= %g ms (batch <= %s): every batch %.3f x as"
          " costly, the cheapest %.4f ms of a server's time a request (now %.4f); the fluid bound needs %.4f" % (
              o.servers, o.need, o.peak_rps, rate, o.p99_ms, max(o.cap), lo, lo * cheapest, cheapest,
              o.servers * 1000.0 / rate))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""serve_issue_table.py -- issue 17's table from `tools/serve_table.sh --issue`'s rows.

  serve_issue_table.py ROWS P99_MS

ROWS: serve_table.sh's rows file (configuration, field, value, load a line,
tab-separated; a configuration measured more than once: the median). It
prints the issue's ratios beside each number:

- the queue's defaults at the p99 bound: the rate as a share of what the
  two-core FMA peak allows (bfloat16 also of the bfloat16 peak's);
- 1, 2 and 8 clients without the queue: the default runtime (threads 0)
  against the best num_threads (x of it), at the bound and saturated, and
  the CPU time a request against one client's lowest;
- HTTP open loop, batching off and on: the rate, its latencies and its share
  of the peak's rate; 2x overload: the accepted p99 against the bound and
  what was refused;
- 2x overload through the C API (`mha bench --scenario server
  --max-latency-ms`, the bound as the queue's latency budget, and
  --max-queue-ms half of it, as the HTTP row): the accepted p99 against the
  bound and what was refused.
"""
import statistics
import sys


def main():
    rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
    bound = float(sys.argv[2])
    vals, loads = {}, []
    for c, f, v, ld in rows:
        vals.setdefault((c, f), []).append(float(v))
        loads.append(float(ld))

    def med(c, f):
        v = vals.get((c, f))
        return statistics.median(v) if v else float("nan")

    def ratio(a, b):
        return a / b if b and b == b and a == a else float("nan")

    print("Issue 17's rows (`tools/serve_table.sh --issue`: each rate the median of 3 trials;"
          " 1-minute load %.1f-%.1f)\n" % (min(loads, default=0), max(loads, default=0)))
    print("| the queue's defaults (max batch 16), p99 <= %g ms | requests/s | p99 ms |"
          " %% of the FMA peak's rate | %% of the bf16 peak's | CPU ms / request |" % bound)
    print("|---|---|---|---|---|---|")
    for prec, pre in (("float32", ""), ("bfloat16", "bf16 ")):
        for name in ("layer S32", "layer S8", "minilm S16"):
            c = pre + name + " batch16"
            if (c, "rate") not in vals:
                continue
            print("| %s %s | %.0f | %.2f | **%.0f %%** | %.0f %% | %.3f |" % (
                name, prec, med(c, "rate"), med(c, "p99"), med(c, "pct"), med(c, "pct16"),
                med(c, "cpu")))

    print("\n| clients (layer S 32, no queue) | at the bound: threads 1 / default, requests/s |"
          " default x best | saturated: threads 1 / default | default x best |"
          " CPU ms a request saturated, default | x one client's lowest |")
    print("|---|---|---|---|---|---|---|")
    one = min(med("saturated clients1 threads%d" % th, "cpu") for th in (1, 0))
    for n in (1, 2, 8):
        b1, b0 = med("clients%d threads1" % n, "rate"), med("clients%d threads0" % n, "rate")
        s1 = med("saturated clients%d threads1" % n, "sat_rate")
        s0 = med("saturated clients%d threads0" % n, "sat_rate")
        cpu = med("saturated clients%d threads0" % n, "cpu")
        print("| %d | %.0f / %.0f | %.2fx | %.0f / %.0f | %.2fx | %.3f | %.2fx |" % (
            n, b1, b0, ratio(b0, max(b1, b0)), s1, s0, ratio(s0, max(s1, s0)), cpu, ratio(cpu, one)))

    # the HTTP rows as a share of the S 32 layer's peak rate (its FLOPs and
    # the peak of the queue's row)
    flops, peak = med("layer S32 batch16", "flops"), med("layer S32 batch16", "peak")
    peak_rps = ratio(peak * 1e9, flops)
    print("\n| HTTP, `mha serve` + serve-load (layer S 32) | offered/s | answered 200/s |"
          " % of the FMA peak's rate | p50 / p99 / p99.9 ms | refused (503), their p50 ms |"
          " accepted p99 x the bound | unanswered, twice | server CPU ms / answer |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c, what in (("http S32 batch1", "batching off, the highest rate at the bound"),
                    ("http S32 batch16", "batching on, the highest rate at the bound"),
                    ("http S32 overload2x", "2x the batched rate, --max-queue-ms %g" % (bound / 2))):
        if (c, "offered") not in vals:
            continue
        print("| %s | %.0f | %.0f | %.0f %% | %.2f / %.2f / %.2f | %.0f, %.2f | %.2fx | %.0f, %.0f | %.3f |" % (
            what, med(c, "offered"), med(c, "achieved_rps"), 100 * ratio(med(c, "achieved_rps"), peak_rps),
            med(c, "p50_ms"), med(c, "p99_ms"), med(c, "p99.9_ms"), med(c, "refused"),
            med(c, "refused_p50_ms"), ratio(med(c, "p99_ms"), bound), max(vals[(c, "unanswered")]),
            max(vals[(c, "answered_twice")]), med(c, "cpu")))

    c = "overload2x C layer S32"
    if (c, "offered") in vals:
        print("\n| overload through the C API (layer S 32, max batch 16) | offered/s | answered/s |"
              " accepted p99 ms | x the bound | refused | CPU ms / answer |")
        print("|---|---|---|---|---|---|---|")
        print("| 2x the queue's rate at the bound, --max-latency-ms %g --max-queue-ms %g | %.0f | %.0f |"
              " %.2f | %.2fx | %.0f of %.0f | %.3f |" % (
                  bound, bound / 2, med(c, "offered"), med(c, "achieved_rps"), med(c, "accepted_p99_ms"),
                  ratio(med(c, "accepted_p99_ms"), bound), med(c, "refused"), med(c, "requests"),
                  med(c, "cpu_ms_per_request")))


if __name__ == "__main__":
    main()

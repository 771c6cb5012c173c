#!/usr/bin/python3
"""Where a multi-threaded run's time goes, from the thread pool's trace.

A build configured with -DMHA_POOL_TRACE=ON records, in each pool, every
unit (its job, phase, index, thread and CPU, start and end), every wait of
a thread at a phase's end, each helper's stay in a job and each job; the
pool writes them when it is destroyed, appended to the file named by
MHA_POOL_TRACE_FILE (one "# pool" header per pool). This script groups the
jobs by their units per phase (one kind of step) and prints medians over
the jobs of each kind, in microseconds: the job's span, how late the first
helper attached, and per phase its span, each thread's busy time (units
summed) and unit count, each thread's idle time before the phase's end,
the gap to the next phase and the units' median time.

  MHA_POOL_TRACE_FILE=/tmp/t.txt build/bin/lib_ab MODEL lib.so lib.so ...
  tools/pool_trace.py /tmp/t.txt [--pool N]

--pool N reads the N-th pool of the file only (1 = the first destroyed).
"""
import argparse
import bisect
import statistics
from collections import defaultdict


def med(v):
    return statistics.median(v) if v else float("nan")


def read(path, only_pool):
    """Events per job: (pool, job address, start) -> kind -> list."""
    events, pools = [], 0
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                pools += 1
                continue
            if only_pool and pools != only_pool:
                continue
            kind, job, ph, unit, w, t0, t1 = line.split()[:7]
            events.append((pools, int(job), kind, int(ph), int(unit), int(w), int(t0), int(t1)))
    spans = defaultdict(list)
    for e in events:
        if e[2] == "J":
            spans[(e[0], e[1])].append((e[6], e[7]))
    for v in spans.values():
        v.sort()
    jobs = defaultdict(lambda: {"N": {}, "U": [], "A": [], "J": None, "E": None})
    for pool, addr, kind, ph, unit, w, t0, t1 in events:
        v = spans.get((pool, addr))
        if not v:
            continue
        i = bisect.bisect_right(v, (t0, 1 << 62)) - 1
        if i < 0 or t0 > v[i][1]:
            continue  # an event outside its job's span (a job address reused)
        j = jobs[(pool, addr, v[i][0])]
        if kind == "N":
            j["N"][ph] = unit
        elif kind == "U":
            j["U"].append((ph, unit, w, t0, t1))
        elif kind == "A":
            j["A"].append((w, t0, t1))
        elif kind == "J":
            j["J"] = (t0, t1, unit)  # unit: the threads the job could use
        elif kind == "E":
            j["E"] = (t0, t1)
    return jobs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--pool", type=int, default=0)
    args = ap.parse_args()
    kinds = defaultdict(list)
    for j in read(args.trace, args.pool).values():
        if j["J"] is not None:
            kinds[(j["J"][2],) + tuple(j["N"][i] for i in sorted(j["N"]))].append(j)
    for sig, js in sorted(kinds.items(), key=lambda kv: -sum(j["J"][1] - j["J"][0] for j in kv[1])):
        threads = sig[0]
        span = [(j["J"][1] - j["J"][0]) / 1e3 for j in js]
        attach = [(min(a[1] for a in j["A"]) - j["J"][0]) / 1e3 for j in js if j["A"]]
        print(f"jobs of {threads} threads, units {list(sig[1:])}: {len(js)}, span {med(span):.1f} us "
              f"(all {sum(span) / 1e3:.2f} ms), first helper attached +{med(attach):.2f}")
        for ph in range(len(sig) - 1):
            rows = defaultdict(list)
            for j in js:
                us = [u for u in j["U"] if u[0] == ph]
                if not us:
                    continue
                t0, t1 = min(u[3] for u in us), max(u[4] for u in us)
                rows["span"].append((t1 - t0) / 1e3)
                for w in range(threads):
                    mine = [u for u in us if u[2] == w]
                    rows[f"busy{w}"].append(sum(u[4] - u[3] for u in mine) / 1e3)
                    rows[f"n{w}"].append(len(mine))
                    rows[f"idle{w}"].append((t1 - max(u[4] for u in mine)) / 1e3 if mine else (t1 - t0) / 1e3)
                later = [u[3] for u in j["U"] if u[0] > ph]
                if later:
                    rows["gap"].append((min(later) - t1) / 1e3)
                rows["unit"].append(med([u[4] - u[3] for u in us]) / 1e3)
            if not rows:
                continue
            busy = " + ".join(f"{med(rows[f'busy{w}']):.1f} ({med(rows[f'n{w}']):.0f})" for w in range(threads))
            idle = " / ".join(f"{med(rows[f'idle{w}']):.1f}" for w in range(threads))
            line = f"  phase {ph} ({sig[1 + ph]} units): span {med(rows['span']):.1f}, busy {busy}, idle at the end {idle}"
            if rows["gap"]:
                line += f", gap to the next {med(rows['gap']):.2f}"
            print(line + f", unit median {med(rows['unit']):.1f}")


if __name__ == "__main__":
    main()

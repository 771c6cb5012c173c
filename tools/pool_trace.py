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

--cross: which cache lines each thread reads that another thread wrote
(the units' reads and writes recorded by pool_trace_touch: GEMM tiles'
rows of A, residual and C, attention units' heads of Q, K, V and the
output, norm rows), per kind of job and phase, in MB per job (medians): a
line read once by a thread other than its last writer is counted once,
then both hold it until the next write.
"""
import argparse
import bisect
import statistics
from collections import defaultdict


def med(v):
    return statistics.median(v) if v else float("nan")


def lines(path, only_pool):
    """(pool number, fields) of each event line, of pool only_pool when set."""
    pools = 0
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                pools += 1
            elif not only_pool or pools == only_pool:
                yield pools, line.split()


def read(path, only_pool):
    """Events per job: (pool, job address, start) -> kind -> list."""
    events = []
    for pool, v in lines(path, only_pool):
        kind, job, ph, unit, w, t0, t1 = v[:7]
        events.append((pool, int(job), kind, int(ph), int(unit), int(w), int(t0), int(t1)))
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


def cross(path, only_pool):
    """Lines read from another thread's writes, per kind of job and phase."""
    import numpy as np

    pools = defaultdict(list)
    for n, v in lines(path, only_pool):
        if v[0] in "RT" and len(v) >= 14:
            pools[n].append((int(v[5]), v[0] == "T", int(v[1]), int(v[2]), int(v[4]), *map(int, v[8:14])))
        elif v[0] == "N":
            pools[n].append((int(v[5]), None, int(v[1]), int(v[2]), int(v[3]), 0, 0, 0, 0, 0, 0))
    shared = 100
    out = defaultdict(lambda: defaultdict(list))
    for events in pools.values():
        events.sort(key=lambda e: e[0])
        pages = {}
        sig_of, per_job = {}, defaultdict(lambda: defaultdict(lambda: [0, 0]))
        cur = {}
        for t, write, job, ph, w, base, ld, r0, r1, c0, c1 in events:
            if write is None:  # a job's phase sizes: its signature, a new instance
                if ph == 0:
                    cur[job] = (job, t)
                    sig_of[cur[job]] = []
                sig_of[cur[job]].append(w)
                continue
            key = cur.get(job)
            if key is None:
                continue
            acc = per_job[key][ph]
            for r in range(r0, r1):
                a0 = (base + r * ld + c0) >> 6
                a1 = (base + r * ld + c1 + 63) >> 6
                while a0 < a1:
                    pg, off = a0 >> 12, a0 & 4095
                    end = min(a1 - (pg << 12), 4096)
                    arr = pages.get(pg)
                    if arr is None:
                        arr = pages[pg] = np.full(4096, -1, dtype=np.int16)
                    seg = arr[off:end]
                    if write:
                        seg[:] = w
                    else:
                        other = (seg >= 0) & (seg != w) & (seg != shared)
                        acc[0] += int(other.sum())
                        acc[1] += end - off
                        seg[other] = shared
                    a0 = (pg << 12) + end
        for key, phs in per_job.items():
            sig = tuple(sig_of.get(key, []))
            for ph, (x, tot) in phs.items():
                out[sig][ph].append((x, tot))
    for sig, phs in sorted(out.items(), key=lambda kv: str(kv[0])):
        for ph, v in sorted(phs.items()):
            x = [a * 64 / 1e6 for a, _ in v]
            tot = [b * 64 / 1e6 for _, b in v]
            print(f"units {list(sig)} phase {ph}: {len(v)} jobs, read {med(tot):.2f} MB a job, "
                  f"of it from another thread's writes {med(x):.3f} MB ({100 * med(x) / max(med(tot), 1e-9):.1f} %)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--pool", type=int, default=0)
    ap.add_argument("--cross", action="store_true")
    args = ap.parse_args()
    if args.cross:
        cross(args.trace, args.pool)
        return
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

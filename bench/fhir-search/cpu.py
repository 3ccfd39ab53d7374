#!/usr/bin/env python3
"""bench/fhir-search/cpu.py — server CPU per request of measure.py's query mix.

    cpu.py BASE_URL ENGINE_PID [PG_POSTMASTER_PID] [REPEAT]

For each query of measure.py's mix: one warm request, then REPEAT requests on one
keep-alive connection while the CPU time (utime + stime of /proc/PID/stat) of the engine
process — and, with PG_POSTMASTER_PID, of every child of that PostgreSQL server (its
backends; start the server privately with scripts/pg.sh so that nothing else uses it) —
is read before and after. Prints the p50 wall time and the CPU milliseconds per request of
the engine, of PostgreSQL and their sum: a figure a loaded machine stretches far less than
wall time (it counts the work, not the wait for a core).
"""
import http.client
import os
import sys
import time
import urllib.parse

sys.argv, argv = sys.argv[:1] + [sys.argv[1], "/dev/null"], sys.argv
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure  # noqa: E402  (its QUERIES; measure.main() is not run)

BASE, EPID = argv[1], int(argv[2])
PGPID = int(argv[3]) if len(argv) > 3 and argv[3] != "0" else 0
R = int(argv[4]) if len(argv) > 4 else 20
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return int(v[11]) + int(v[12])  # utime, stime (fields 14 and 15)
    except OSError:
        return 0


def children(ppid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        out.append(int(d))
            except OSError:
                pass
    return out


def pg_cpu():
    return sum(cpu_of(p) for p in children(PGPID)) if PGPID else 0


def main():
    u = urllib.parse.urlsplit(BASE)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)

    def get(path):
        t = time.perf_counter()
        conn.request("GET", u.path.rstrip("/") + "/" + path)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit("%s: %d" % (path, r.status))
        return (time.perf_counter() - t) * 1000

    print("%-30s %9s %11s %9s %9s" % ("query", "p50 ms", "engine CPU", "PG CPU", "sum ms"))
    for name, path, _ in measure.QUERIES:
        get(path)
        e0, p0, times = cpu_of(EPID), pg_cpu(), []
        for _ in range(R):
            times.append(get(path))
        e1, p1 = cpu_of(EPID), pg_cpu()
        e, p = (e1 - e0) * 1000.0 / TICK / R, (p1 - p0) * 1000.0 / TICK / R
        print("%-30s %9.2f %11.2f %9.2f %9.2f" % (name, measure.pct(times, 50), e, p, e + p), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/ehr-sync/type_pages.py — the cost of one type's pages without criteria (issue #12:
the peer side of a full sync, `Type?_count=1000` and its `next` links) at its first, middle
and last page, and of its total, per server binary, on a store that is already loaded.

  bench/ehr-sync/type_pages.py DB TYPE [REPEAT=10]

DB is what `holovitals serve --db` takes: a PostgreSQL URL (load it first, e.g. with
bench/fhir-search/replicate_pg.sh from a peer's SQLite store) or a SQLite file's directory is
not supported here (use paging.py). Per round and binary it starts `serve --db DB` in a fresh
data directory, follows every `next` link of TYPE?_count=N once (timing each page), then
fetches the first, the middle and the last page REPEAT times each on one keep-alive
connection, and the first page with `_total=accurate` and `_summary=count` REPEAT times each.
Printed per request kind: the median wall milliseconds and the CPU milliseconds per request
of the engine and of the PostgreSQL backends (children of HV_BENCH_PG_PID, the postmaster of
a private cluster: scripts/pg.sh start DIR; its pid is the first line of DIR/data/postmaster.pid),
read from /proc (utime + stime): a loaded machine stretches them far less than wall time.

Environment: HV_BENCH_BINS=A,B (alternated in each round; default HOLOVITALS_BIN),
HV_BENCH_ROUNDS=N (default 3), HV_BENCH_PAGE=N (_count, default 1000), HV_BENCH_PG_PID,
HV_BENCH_SETUP=CMD_A,CMD_B (a shell command run before each start of the binary at the same
place, e.g. to set the fhir schema's version back for an older binary and drop an index it
does not know). Standard library only.
"""

import http.client
import os
import subprocess
import sys
import tempfile
import shutil
import time
import urllib.parse
import json

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import BinEngine, cpu_seconds, median  # noqa: E402


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


def pg_cpu(pgpid):
    total = 0.0
    for p in children(pgpid) if pgpid else []:
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


class Client:
    """One keep-alive connection to the engine."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        self.prefix = base

    def get(self, url):
        if url.startswith(self.prefix):
            url = url[len(self.prefix):]
        self.conn.request("GET", url, headers={"Accept": "application/fhir+json"})
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError("%s: HTTP %d %s" % (url, r.status, body[:300]))
        return body


def walk(c, typ, count):
    """Every page's path of typ (following next links) and the seconds each took."""
    url, paths, secs = "/fhir/%s?_count=%d" % (typ, count), [], []
    n = 0
    while url:
        t0 = time.monotonic()
        body = c.get(url)
        secs.append(time.monotonic() - t0)
        paths.append(url)
        b = json.loads(body)
        n += sum(1 for e in b.get("entry", []) if e.get("search", {}).get("mode") == "match")
        url = next((l["url"] for l in b.get("link", []) if l["relation"] == "next"), None)
    return paths, secs, n


def timed(c, url, repeat, epid, pgpid):
    c.get(url)  # warm
    walls = []
    e0, p0 = cpu_seconds(epid), pg_cpu(pgpid)
    for _ in range(repeat):
        t0 = time.monotonic()
        c.get(url)
        walls.append(time.monotonic() - t0)
    e1, p1 = cpu_seconds(epid), pg_cpu(pgpid)
    return 1e3 * median(walls), 1e3 * (e1 - e0) / repeat, 1e3 * (p1 - p0) / repeat


def main():
    db, typ = sys.argv[1], sys.argv[2]
    repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    bins = [b for b in os.environ.get("HV_BENCH_BINS", "").split(",") if b] or [None]
    setup = [s for s in os.environ.get("HV_BENCH_SETUP", "").split(",")]
    rounds = int(os.environ.get("HV_BENCH_ROUNDS", "3"))
    count = int(os.environ.get("HV_BENCH_PAGE", "1000"))
    pgpid = int(os.environ.get("HV_BENCH_PG_PID", "0"))
    work = tempfile.mkdtemp(prefix="hv-bench-typepages.")
    results = {}
    try:
        for rnd in range(rounds):
            for i, b in enumerate(bins):
                if i < len(setup) and setup[i]:
                    subprocess.run(setup[i], shell=True, check=True)
                e = BinEngine(b, os.path.join(work, "e%d-%d" % (rnd, i)), args=["--db", db]).start(timeout=300)
                try:
                    c = Client(e.base)
                    paths, secs, n = walk(c, typ, count)
                    name = b or "holovitals"
                    row = {"walk": (len(paths), n, sum(secs))}
                    kinds = [("first", paths[0]), ("middle", paths[len(paths) // 2]), ("last", paths[-1]),
                             ("first+_total=accurate", paths[0] + "&_total=accurate"),
                             ("_summary=count", "/fhir/%s?_summary=count" % typ)]
                    for k, url in kinds:
                        row[k] = timed(c, url, repeat, e.proc.pid, pgpid)
                    print("%s round %d: %d pages, %d %s in %.2f s; " % (name, rnd, len(paths), n, typ, sum(secs))
                          + "; ".join("%s %.1f ms wall, CPU %.1f + %.1f ms" % ((k,) + row[k]) for k, _ in kinds),
                          flush=True)
                    results.setdefault(name, []).append(row)
                finally:
                    e.stop()
                    e.close()
        for name, rs in sorted(results.items()):
            print("median of %d: %s walk %.2f s; " % (len(rs), name, median([r["walk"][2] for r in rs]))
                  + "; ".join("%s %.1f ms wall, CPU %.1f (engine %.1f + PG %.1f) ms"
                              % (k, median([r[k][0] for r in rs]), median([r[k][1] + r[k][2] for r in rs]),
                                 median([r[k][1] for r in rs]), median([r[k][2] for r in rs]))
                              for k in rs[0] if k != "walk"), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/ehr-sync/paging.py — our own server's search paging against its own Bulk export, on
one store (issue #12: a search-based full sync cannot go faster than the peer's paging).

  bench/ehr-sync/paging.py [RESOURCES=10000]

Loads a peer like run.py (Synthea clones with fresh ids, `holovitals import`), serves it, and
per round and binary measures:
  export   GET /fhir/$export (kick-off, polling, every NDJSON file downloaded)
  paging   GET /fhir/<Type>?_count=1000 for every type, following each `next` link to the end
           (the page fetch is all that is timed; each Bundle is parsed by json.loads after
           its timing, to count its entries)
Printed per run: resources, seconds, resources/s and the server's CPU time per resource (from
/proc, user + system), then medians per binary. Standard library only; run from the build
directory after `make`.

Environment: HV_BENCH_PEER=DIR (reuse the peer's data, as run.py), HV_BENCH_BINS=A,B (servers
alternated in each round; default HOLOVITALS_BIN), HV_BENCH_ROUNDS=N (default 3),
HV_BENCH_PAGE=N (_count, default 1000), HV_BENCH_QUERY=... (extra criteria, e.g. _total=none).
PostgreSQL: HV_BENCH_DB=URL serves the peer from that database (`serve --db URL`, a fresh data
directory per run) instead of its SQLite store. Nothing is imported into it: load it first,
e.g. with bench/fhir-search/replicate_pg.sh from the SQLite peer that HV_BENCH_PEER names
(whose pop directory gives the types). HV_BENCH_PG_PID=PID (the postmaster of a private
cluster: scripts/pg.sh) adds its backends' CPU to the server's (bench/ehr-sync/type_pages.py).
HV_BENCH_SETUP=CMD_A,CMD_B: a shell command run before each start of the binary at the same
place (e.g. to set the fhir schema's version back for an older binary).
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import BinEngine, Engine, cpu_seconds, http, median, peer_export, population  # noqa: E402
from type_pages import pg_cpu  # noqa: E402


def page_all(base, typ, count, extra):
    """Follows every next link of typ's search; returns (entries, seconds spent fetching)."""
    url = "%s/fhir/%s?_count=%d%s" % (base, typ, count, ("&" + extra) if extra else "")
    n, secs = 0, 0.0
    while url:
        t0 = time.monotonic()
        req = urllib.request.Request(url, headers={"Accept": "application/fhir+json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            body = r.read()
        secs += time.monotonic() - t0
        b = json.loads(body)
        n += sum(1 for e in b.get("entry", []) if e.get("search", {}).get("mode") == "match")
        url = next((l["url"] for l in b.get("link", []) if l["relation"] == "next"), None)
    return n, secs


def main():
    want = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    keep = os.environ.get("HV_BENCH_PEER")
    bins = [b for b in os.environ.get("HV_BENCH_BINS", "").split(",") if b] or [None]
    rounds = int(os.environ.get("HV_BENCH_ROUNDS", "3"))
    count = int(os.environ.get("HV_BENCH_PAGE", "1000"))
    extra = os.environ.get("HV_BENCH_QUERY", "")
    db = os.environ.get("HV_BENCH_DB", "")
    pgpid = int(os.environ.get("HV_BENCH_PG_PID", "0"))
    setup = os.environ.get("HV_BENCH_SETUP", "").split(",")
    work = tempfile.mkdtemp(prefix="hv-bench-paging.")
    home = keep or work
    pop = os.path.join(home, "pop")
    marker = os.path.join(home, "ready-%d" % want)
    peer = None
    results = {}
    try:
        if not os.path.exists(marker) and not db:
            shutil.rmtree(pop, ignore_errors=True)
            shutil.rmtree(os.path.join(home, "peer"), ignore_errors=True)
            os.makedirs(pop)
            n = population(want, pop)
            e = BinEngine(bins[0], os.path.join(home, "peer"), config={"fhir": {"synchronous": "NORMAL"}})
            t0 = time.monotonic()
            subprocess.run([e.command()[0], "import", "--data", e.data] + sorted(glob.glob(pop + "/*.json")),
                           check=True, capture_output=True)
            print("peer: imported %d resources in %.1f s" % (n, time.monotonic() - t0), flush=True)
            with open(marker, "w") as f:
                f.write("%d\n" % n)
        types = sorted({e["resource"]["resourceType"] for f in glob.glob(pop + "/p0000*.json")
                        for e in json.load(open(f))["entry"]})
        for rnd in range(rounds):
            for i, b in enumerate(bins):
                if i < len(setup) and setup[i]:
                    subprocess.run(setup[i], shell=True, check=True)
                if db:
                    peer = BinEngine(b, os.path.join(work, "peer-%d-%d" % (rnd, i)), args=["--db", db],
                                     config={"fhir": {"synchronous": "NORMAL"}}).start(timeout=300)
                else:
                    peer = BinEngine(b, os.path.join(home, "peer"), config={"fhir": {"synchronous": "NORMAL"}}).start()
                name = b or "holovitals"

                def cpu():
                    return cpu_seconds(peer.proc.pid) + pg_cpu(pgpid)
                c0 = cpu()
                en, et = peer_export(peer)
                ecpu = cpu() - c0
                pn, pt, per = 0, 0.0, []
                c0 = cpu()
                for t in types:
                    n, s = page_all(peer.base, t, count, extra)
                    pn, pt = pn + n, pt + s
                    per.append("%s %d/%.2fs" % (t, n, s))
                pcpu = cpu() - c0
                print("%s round %d: export %d in %.2f s = %.0f res/s, %.1f us/res CPU; paging %d in %.2f s = "
                      "%.0f res/s, %.1f us/res CPU (%.3fx export)"
                      % (name, rnd, en, et, en / et, 1e6 * ecpu / en, pn, pt, pn / pt, 1e6 * pcpu / pn,
                         (pn / pt) / (en / et)), flush=True)
                print("  " + ", ".join(per), flush=True)
                results.setdefault(name, []).append((en / et, 1e6 * ecpu / en, pn / pt, 1e6 * pcpu / pn))
                peer.stop()
                peer.close()
                peer = None
        for name, rs in sorted(results.items()):
            print("median of %d: %s export %.0f res/s %.1f us/res; paging %.0f res/s %.1f us/res (%.3fx export)"
                  % (len(rs), name, median([r[0] for r in rs]), median([r[1] for r in rs]),
                     median([r[2] for r in rs]), median([r[3] for r in rs]),
                     median([r[2] / r[0] for r in rs])), flush=True)
    finally:
        if peer is not None:
            peer.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

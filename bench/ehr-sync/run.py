#!/usr/bin/env python3
"""bench/ehr-sync — EHR sync throughput against a local peer (issue #12), printed beside the
peer's own Bulk export rate (the ceiling: the sync cannot go faster than the EHR can hand out
its data).

  bench/ehr-sync/run.py [RESOURCES=100000]

Starts two `holovitals serve` (auth off): the peer, loaded with RESOURCES resources made by
cloning the Synthea bundles of the reference data with fresh ids (`holovitals import`), and
the engine under test. Measures, from POST /ehr/sync to the run's completion:
  full   search paging (_count=1000) → in-process writes into the local store (one store job per page)
  bulk   $export kick-off, polling, NDJSON download to disk, import
and the peer's export alone (kick-off to the last NDJSON file downloaded, in Python), with the
engine's CPU time and peak resident memory (VmHWM) over its life.
Standard library only; run from the build directory after `make` (HOLOVITALS_BIN overrides).

A/B and reuse (environment):
  HV_BENCH_PEER=DIR     keep the peer (population and data) in DIR and reuse it when DIR holds one
                        already made for the same RESOURCES (the import is the slow part)
  HV_BENCH_BINS=A,B     engines under test (binaries), alternated in each round (default: HOLOVITALS_BIN)
  HV_BENCH_ROUNDS=N     rounds (default 1); HV_BENCH_MODES=full,bulk (default both)
  HV_BENCH_THREADS=1    also print, per thread of the engine over each sync, its CPU and its time
                        runnable but waiting for a core (/proc/PID/task/TID/schedstat), in seconds
                        and in percent of the sync's wall time: a thread whose CPU + wait is near
                        100% is the serial bound, however loaded the machine is (the busiest
                        hv-storage is the fhir storage thread); and how long the engine took to
                        defer and to build the search indexes (ehr.defer_indexes, docs/ehr.md)
  HV_BENCH_TEXT=1       after each sync, also wait until the full-text catch-up has indexed the last
                        version (SQLite: sp_text_mark, fhir/search_special.c), which may go on after the
                        run's end, and print the time and the engine's CPU from POST to that point
The peer's export (the ceiling) is measured again before each sync, and each line prints the sync's
rate beside it; medians per binary and mode at the end.
"""

import glob
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "test", "integration"))
from harness import Engine  # noqa: E402

REF = os.environ.get("HV_REFERENCE", os.path.join(TOP, "..", "shared", "reference"))
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def population(n, out):
    """Writes Synthea-shaped transaction bundles holding about n resources; returns the count."""
    srcs = [open(f).read() for f in sorted(glob.glob(os.path.join(REF, "fhir", "synthea", "*.json")))]
    total, k = 0, 0
    while total < n:
        text = srcs[k % len(srcs)]
        ids = {}
        clone = UUID.sub(lambda m: ids.setdefault(m.group(0), str(uuid.uuid4())), text)
        path = os.path.join(out, "p%05d.json" % k)
        with open(path, "w") as f:
            f.write(clone)
        total += len(json.loads(clone)["entry"])
        k += 1
    return total


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers=dict({"Content-Type": "application/json"}, **(headers or {})))
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.status, dict(r.headers), r.read()


def peer_export(peer):
    t0 = time.monotonic()
    st, h, _ = http("GET", peer.base + "/fhir/$export", headers={"Prefer": "respond-async",
                                                                   "Accept": "application/fhir+json"})
    loc = h["Content-Location"]
    while True:
        st, h, body = http("GET", loc)
        if st == 200:
            break
        time.sleep(0.05)
    n = 0
    for o in json.loads(body)["output"]:
        _, _, data = http("GET", o["url"], headers={"Accept": "application/fhir+ndjson"})
        n += data.count(b"\n")
    return n, time.monotonic() - t0


def cpu_seconds(pid):
    """User + system CPU time of a process so far (Linux /proc): less sensitive to a loaded machine than wall time."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    """The process's peak resident set so far (Linux /proc VmHWM), in MiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def thread_cpu(pid):
    """{"name/tid": (seconds on a CPU, seconds runnable waiting for one)} of each thread of a
    process (Linux /proc/PID/task/TID/comm and schedstat)."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                name = f.read().strip()
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                run_ns, wait_ns = f.read().split()[:2]
        except OSError:
            continue
        out["%s/%s" % (name, tid)] = (int(run_ns) / 1e9, int(wait_ns) / 1e9)
    return out


def thread_line(before, after, secs):
    """The threads that used CPU between two thread_cpu snapshots, busiest first: CPU seconds,
    then CPU and run-queue wait in percent of secs."""
    used = []
    for k, (run, wait) in after.items():
        r0, w0 = before.get(k, (0.0, 0.0))
        used.append((run - r0, wait - w0, k))
    used.sort(reverse=True)
    return " ".join("%s=%.1fs(cpu %.0f%% + wait %.0f%%)" % (k, c, 100.0 * c / secs, 100.0 * w / secs)
                    for c, w, k in used if c >= 0.05)


def text_caught_up(eng):
    """True when eng's SQLite store has the full text of its last version (fhir/search_special.c)."""
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(eng.data, "fhir.db"), uri=True, timeout=30)
    try:
        (mark,) = db.execute("SELECT last_rid FROM sp_text_mark").fetchone()
        (last,) = db.execute("SELECT COALESCE(MAX(rid), 0) FROM resources").fetchone()
        return mark >= last
    finally:
        db.close()


def sync(local, cid, mode):
    t0 = time.monotonic()
    _, _, body = http("POST", "%s/ehr/sync/%s" % (local.base, cid), {"mode": mode})
    run_id = json.loads(body)["run_id"]
    while True:
        _, _, body = http("GET", "%s/ehr/sync-history?connection=%s" % (local.base, cid))
        run = [r for r in json.loads(body)["runs"] if r["run_id"] == run_id][0]
        if run["status"] != "running":
            return run, time.monotonic() - t0
        time.sleep(0.05)


class BinEngine(Engine):
    """An engine run from a given binary (A/B runs)."""

    def __init__(self, binary, *a, **kw):
        super().__init__(*a, **kw)
        self.binary = binary

    def command(self):
        cmd = super().command()
        if self.binary:
            cmd[0] = self.binary
        return cmd


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def main():
    want = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    keep = os.environ.get("HV_BENCH_PEER")
    bins = [b for b in os.environ.get("HV_BENCH_BINS", "").split(",") if b] or [None]
    rounds = int(os.environ.get("HV_BENCH_ROUNDS", "1"))
    modes = os.environ.get("HV_BENCH_MODES", "full,bulk").split(",")
    threads = os.environ.get("HV_BENCH_THREADS") == "1"
    text = os.environ.get("HV_BENCH_TEXT") == "1"
    work = tempfile.mkdtemp(prefix="hv-bench-ehr.")
    peer = local = None
    results = {}
    try:
        home = keep or work
        pop = os.path.join(home, "pop")
        marker = os.path.join(home, "ready-%d" % want)
        peer = Engine(os.path.join(home, "peer"), config={"fhir": {"synchronous": "NORMAL"}})
        if not os.path.exists(marker):
            shutil.rmtree(pop, ignore_errors=True)
            shutil.rmtree(peer.data, ignore_errors=True)
            os.makedirs(pop)
            n = population(want, pop)
            t0 = time.monotonic()
            subprocess.run([peer.command()[0], "import", "--data", peer.data] + sorted(glob.glob(pop + "/*.json")),
                           check=True, capture_output=True)
            print("peer: imported %d resources in %.1f s" % (n, time.monotonic() - t0), flush=True)
            with open(marker, "w") as f:
                f.write("%d\n" % n)
        peer.start()
        types = sorted({e["resource"]["resourceType"] for f in glob.glob(pop + "/p0000*.json")
                        for e in json.load(open(f))["entry"]})
        for rnd in range(rounds):
            for mode in modes:
                for b in bins:
                    en, et = peer_export(peer)
                    local = BinEngine(b, os.path.join(work, "local-%d-%s" % (rnd, mode)),
                                      config={"ehr": {"rate_limit": 0},
                                              "fhir": {"synchronous": "NORMAL",
                                                       "validation": os.environ.get("VALIDATION", "reject")}}).start()
                    _, _, body = http("POST", local.base + "/ehr/connect", {
                        "vendor": "fhir", "base_url": peer.base + "/fhir", "resource_types": types,
                        "schedule": "manual", "page_size": 1000})
                    cid = json.loads(body)["id"]
                    c0 = cpu_seconds(local.proc.pid)
                    t0 = thread_cpu(local.proc.pid) if threads else None
                    posted = time.monotonic()
                    run, secs = sync(local, cid, mode)
                    cpu = cpu_seconds(local.proc.pid) - c0
                    if threads:
                        print("  threads: " + thread_line(t0, thread_cpu(local.proc.pid), secs), flush=True)
                        time.sleep(0.3)  # the engine's log is flushed every 250 ms
                        ixs = ["%s %d ms" % (e["event"], e.get("ms", 0)) for e in local.log_events()
                               if e.get("event") in ("ehr.sync.indexes_deferred", "ehr.sync.indexes_built")]
                        if ixs:
                            print("  " + ", ".join(ixs), flush=True)
                    if text:
                        while not text_caught_up(local):
                            time.sleep(0.05)
                        print("  full text caught up %.2f s after POST; engine CPU %.1f s = %.0f us/resource"
                              % (time.monotonic() - posted, cpu_seconds(local.proc.pid) - c0,
                                 1e6 * (cpu_seconds(local.proc.pid) - c0) / max(run["fetched"], 1)), flush=True)
                    rss = peak_rss_mb(local.proc.pid)
                    rate, ceil = run["fetched"] / secs, en / et
                    print("%s %-4s sync: %s, fetched %d, created %d, failed %d in %.2f s = %.0f resources/s; peer "
                          "export %.0f resources/s (%.1f%%); engine CPU %.1f s = %.0f us/resource; peak RSS %.0f MiB"
                          % (b or "holovitals", mode, run["status"], run["fetched"], run["created"], run["failed"],
                             secs, rate, ceil, 100.0 * rate / ceil, cpu, 1e6 * cpu / max(run["fetched"], 1), rss),
                          flush=True)
                    results.setdefault((b or "holovitals", mode), []).append((rate, rate / ceil, 1e6 * cpu / max(run["fetched"], 1)))
                    local.close()
                    shutil.rmtree(local.workdir, ignore_errors=True)
                    local = None
        for (b, mode), rs in sorted(results.items()):
            print("median of %d: %s %-4s %.0f resources/s, %.3fx the peer's export, %.0f us/resource engine CPU"
                  % (len(rs), b, mode, median([r[0] for r in rs]), median([r[1] for r in rs]),
                     median([r[2] for r in rs])), flush=True)
    finally:
        for e in (peer, local):
            if e is not None:
                e.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

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
and the peer's export alone (kick-off to the last NDJSON file downloaded, in Python).
Standard library only; run from the build directory after `make` (HOLOVITALS_BIN overrides).
"""

import glob
import json
import os
import re
import shutil
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


def main():
    want = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    work = tempfile.mkdtemp(prefix="hv-bench-ehr.")
    peer = local = None
    try:
        pop = os.path.join(work, "pop")
        os.makedirs(pop)
        n = population(want, pop)
        peer = Engine(os.path.join(work, "peer"), config={"fhir": {"synchronous": "NORMAL"}}).start()
        t0 = time.monotonic()
        subprocess.run([peer.command()[0], "import", "--data", peer.data] + sorted(glob.glob(pop + "/*.json")),
                       check=True, capture_output=True)
        print("peer: imported %d resources in %.1f s" % (n, time.monotonic() - t0), flush=True)
        types = sorted({e["resource"]["resourceType"] for f in glob.glob(pop + "/p0000*.json")
                        for e in json.load(open(f))["entry"]})
        en, et = peer_export(peer)
        print("peer export (ceiling): %d resources in %.2f s = %.0f resources/s" % (en, et, en / et), flush=True)
        for mode in ("full", "bulk"):
            local = Engine(os.path.join(work, "local-" + mode),
                           config={"ehr": {"rate_limit": 0}, "fhir": {"synchronous": "NORMAL", "validation": os.environ.get("VALIDATION", "reject")}}).start()
            _, _, body = http("POST", local.base + "/ehr/connect", {
                "vendor": "fhir", "base_url": peer.base + "/fhir", "resource_types": types,
                "schedule": "manual", "page_size": 1000})
            cid = json.loads(body)["id"]
            c0 = cpu_seconds(local.proc.pid)
            run, secs = sync(local, cid, mode)
            cpu = cpu_seconds(local.proc.pid) - c0
            print("%-4s sync: %s, fetched %d, created %d, failed %d in %.2f s = %.0f resources/s (%.1f%% of the "
                  "peer's export); engine CPU %.1f s = %.0f us/resource"
                  % (mode, run["status"], run["fetched"], run["created"], run["failed"], secs, run["fetched"] / secs,
                     100.0 * run["fetched"] / secs / (en / et), cpu, 1e6 * cpu / max(run["fetched"], 1)), flush=True)
            local.close()
            local = None
    finally:
        for e in (peer, local):
            if e is not None:
                e.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/fhir-store/create_rows_diff.py — do two binaries write the same rows for concurrent
REST creates? (tx_rows_diff.py compares transactions, rows_diff.sh the import.) POSTs every
resource of the 13 Synthea Bundles of ../shared/reference (3,495) as its own create to a fresh
`holovitals serve` of each binary (SQLite), from 16 threads so that the creates share group
commits, names each assigned id after its Bundle and entry (b<N>e<M>, from the answers'
locations) and each version row id after the same name, and compares every row of every
sp_* table and of refs, all columns, sorted (the order of the creates differs between runs, so
the rows' own rowids are not compared). The answers' statuses must match too. Prints the row
counts per table and "rows identical", or exits 1.

    bench/fhir-store/create_rows_diff.py OLD_BIN NEW_BIN
"""
import json, os, queue, re, shutil, sqlite3, sys, tempfile, threading, urllib.error, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tx_rows_diff import TABLES, files, start  # noqa: E402


def post_all(port):
    """POSTs every entry's resource; returns {name: (status, id or None)}."""
    work = queue.Queue()
    for b, f in enumerate(files):
        for e, ent in enumerate(json.load(open(f))["entry"]):
            work.put(("b%de%d" % (b, e), ent["resource"]))
    out, lock = {}, threading.Lock()

    def worker():
        while True:
            try:
                name, res = work.get_nowait()
            except queue.Empty:
                return
            req = urllib.request.Request("http://127.0.0.1:%d/fhir/%s" % (port, res["resourceType"]),
                                         data=json.dumps(res).encode(), method="POST",
                                         headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"})
            try:
                r = urllib.request.urlopen(req)
                st, loc = r.status, r.headers["Location"]
            except urllib.error.HTTPError as err:
                st, loc = err.code, None
            with lock:
                out[name] = (st, loc.split("/fhir/")[1].split("/")[1] if loc else None)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def run(binary):
    w = tempfile.mkdtemp(prefix="hv-bench-createrows-")
    os.makedirs(w + "/ch")
    p, port = start(binary, w)
    answers = post_all(port)
    p.terminate()
    p.wait()
    ids = {i: n for n, (st, i) in answers.items() if i is not None}
    con = sqlite3.connect(w + "/data/fhir.db")
    rids = {rid: ids[i] for rid, i in con.execute("SELECT rid, id FROM resources")}
    pat = re.compile("|".join(map(re.escape, sorted(ids, key=len, reverse=True))))
    rows = {}
    for t in TABLES:
        cols = [c[1] for c in con.execute("PRAGMA table_info(%s)" % t)]
        ridcol = [c == "rid" and t != "sp_ref" for c in cols]  # sp_ref's rid is the target's id
        rows[t] = sorted(pat.sub(lambda m: ids[m.group(0)], "|".join(
            rids.get(v, str(v)) if isrid else str(v) for v, isrid in zip(r, ridcol)))
            for r in con.execute("SELECT * FROM %s" % t))
    con.close()
    shutil.rmtree(w)
    return {n: st for n, (st, i) in answers.items()}, rows


if __name__ == "__main__":
    (sa, a), (sb, b) = run(sys.argv[1]), run(sys.argv[2])
    same = sa == sb
    print("answers: %d, %s" % (len(sa), "same statuses" if same else "STATUSES DIFFER"))
    for t in TABLES:
        print("%-11s %6d %6d %s" % (t, len(a[t]), len(b[t]), "identical" if a[t] == b[t] else "DIFFER"))
        same &= a[t] == b[t]
    print("rows identical" if same else "rows differ")
    sys.exit(0 if same else 1)

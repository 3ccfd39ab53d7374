#!/usr/bin/env python3
"""bench/fhir-store/tx_rows_diff.py — do two binaries write the same rows for REST
transactions? (rows_diff.sh compares `holovitals import`, whose entries keep their ids.)
POSTs the 13 Synthea transaction Bundles of ../shared/reference (3,495 creates with
server-assigned ids) to a fresh `holovitals serve` of each binary (SQLite), names each
assigned id after its Bundle and entry (b<N>e<M>, from the answers' locations), and compares
every row of every sp_* table and of refs, all columns (the version row ids too: both
servers write the versions in the same order), sorted. Prints the row counts per table and
"rows identical", or exits 1.

    bench/fhir-store/tx_rows_diff.py OLD_BIN NEW_BIN
"""
import glob, json, os, random, re, shutil, sqlite3, subprocess, sys, tempfile, time, urllib.request

TABLES = ["sp_date", "sp_geo", "sp_num", "sp_ref", "sp_reftok", "sp_str", "sp_tok", "sp_tokdate", "sp_tokqty", "sp_uri", "refs"]
REF = os.environ.get("HV_REFERENCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                                      "shared", "reference"))
files = sorted(glob.glob(os.path.join(REF, "fhir", "synthea", "*.json")))
if len(files) != 13:
    sys.exit("the 13 Synthea Bundles are missing under %s" % REF)

def start(binary, w):
    """A server on free ports (another engine's may hold a random pick: tried again)."""
    env = dict(os.environ, HOLOVITALS_FHIR_VALIDATION="reject")
    for _ in range(5):
        port = random.randint(43000, 45000)
        p = subprocess.Popen([binary, "serve", "--data", w + "/data", "--http", "127.0.0.1:%d" % port, "--mllp",
                              "127.0.0.1:%d" % (port + 300), "--channels", w + "/ch", "--auth", "off",
                              "--log-level", "warn"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            if p.poll() is not None:
                break
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/health" % port)
                return p, port
            except OSError:
                time.sleep(0.1)
        p.kill()
        p.wait()
        shutil.rmtree(w + "/data", ignore_errors=True)
    shutil.rmtree(w, ignore_errors=True)
    sys.exit("%s serve did not start" % binary)


def run(binary):
    w = tempfile.mkdtemp(prefix="hv-bench-txrows-")
    os.makedirs(w + "/ch")
    p, port = start(binary, w)
    ids = {}
    for b, f in enumerate(files):
        req = urllib.request.Request("http://127.0.0.1:%d/fhir" % port, data=open(f, "rb").read(),
                                     headers={"Content-Type": "application/fhir+json"}, method="POST")
        out = json.load(urllib.request.urlopen(req))
        for e, ent in enumerate(out["entry"]):
            ids[ent["response"]["location"].split("/")[1]] = "b%de%d" % (b, e)
    p.terminate()
    p.wait()
    con = sqlite3.connect(w + "/data/fhir.db")
    pat = re.compile("|".join(map(re.escape, sorted(ids, key=len, reverse=True))))
    rows = {}
    for t in TABLES:
        rows[t] = sorted(pat.sub(lambda m: ids[m.group(0)], "|".join(map(str, r))) for r in con.execute("SELECT * FROM %s" % t))
    con.close()
    shutil.rmtree(w)
    return rows

if __name__ == "__main__":  # create_rows_diff.py imports start, files and TABLES
    a, b = run(sys.argv[1]), run(sys.argv[2])
    same = True
    for t in TABLES:
        print("%-11s %6d %6d %s" % (t, len(a[t]), len(b[t]), "identical" if a[t] == b[t] else "DIFFER"))
        same &= a[t] == b[t]
    print("rows identical" if same else "rows differ")
    sys.exit(0 if same else 1)
